"""The per-file work of ``jv3 index``: which files changed, embedding them in batches, and
deleting the chunks of empty or removed files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..core import EmbeddingProvider, Task
from ..core._tokenize import sections
from .files import (
    Discovery,
    PdfSupportMissingError,
    UnreadableFileError,
    display_path,
    read_document,
)
from .index_progress import estimate_tokens
from .index_types import IndexReport
from .state import FileEntry
from .warn import Warn

logger = logging.getLogger(__name__)


FILES_PER_BATCH = 16
#: A batch also ends at about this many (estimated) tokens.
BATCH_TOKENS = 16_384


def remove_gone(
    store: Any, gone: list[str], files: dict[str, FileEntry], report: IndexReport
) -> None:
    """Delete the chunks of files that disappeared from an indexed folder."""
    for key in gone:
        entry = files.pop(key)
        if entry.ids:
            store.delete(entry.ids)
        report.chunks_deleted += len(entry.ids)
        report.removed += 1


def classify(
    found: Discovery,
    files: dict[str, FileEntry],
    rechunk: bool,
    report: IndexReport,
    warn: Warn,
) -> tuple[list[tuple[str, str, str]], set[str]]:
    """Read every file; return those to embed ``(key, text, digest)`` and every key seen.

    Unreadable files are skipped with a warning and counted; their old chunks (if any) stay.
    """
    to_embed: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    no_pdf: list[str] = []
    for path in found.files:
        key = str(path)
        seen.add(key)
        try:
            text, digest = read_document(path)
        except PdfSupportMissingError as exc:
            report.skipped += 1
            no_pdf.append(key)
            pdf_reason = str(exc)
            continue
        except UnreadableFileError as exc:
            report.skipped += 1
            msg = f"skipped {display_path(key)}: {exc}"
            report.warnings.append(msg)
            warn(msg)
            continue
        report.files += 1
        old = files.get(key)
        if old is not None and old.hash == digest and not rechunk:
            report.unchanged += 1
            continue
        if old is None:
            report.new += 1
        else:
            report.changed += 1
        to_embed.append((key, text, digest))
    if no_pdf:  # one line for all of them, not one per file
        first = display_path(no_pdf[0])
        more = f" and {len(no_pdf) - 1} more" if len(no_pdf) > 1 else ""
        msg = f"skipped {first}{more}: {pdf_reason}"
        report.warnings.append(msg)
        warn(msg)
    return to_embed, seen


def drop_empty(
    store: Any,
    batch: list[tuple[str, str, str]],
    files: dict[str, FileEntry],
    report: IndexReport,
) -> list[tuple[str, str, str]]:
    """Empty files only lose their old chunks; returns the others (to embed)."""
    docs: list[tuple[str, str, str]] = []
    for key, text, digest in batch:
        if text.strip():
            docs.append((key, text, digest))
            continue
        old = files.get(key)
        if old is not None and old.ids:
            store.delete(old.ids)
            report.chunks_deleted += len(old.ids)
        files[key] = FileEntry(hash=digest, ids=[], tokens=0)
        report.empty += 1
    return docs


def batches(docs: list[tuple[str, str, str]]) -> Iterator[list[tuple[str, str, str]]]:
    """Up to :data:`FILES_PER_BATCH` files and about :data:`BATCH_TOKENS` tokens a batch (one
    file may be larger): small files share model passes, progress moves within a few files."""
    batch: list[tuple[str, str, str]] = []
    tokens = 0
    for doc in docs:
        size = estimate_tokens(doc[1])
        if batch and (len(batch) >= FILES_PER_BATCH or tokens + size > BATCH_TOKENS):
            yield batch
            batch, tokens = [], 0
        batch.append(doc)
        tokens += size
    if batch:
        yield batch


def embed_batch(
    store: Any,
    batch: list[tuple[str, str, str]],
    chunker: Any,
    late: bool,
    provider: EmbeddingProvider,
    files: dict[str, FileEntry],
    report: IndexReport,
) -> None:
    docs = drop_empty(store, batch, files, report)
    if not docs:
        return
    per_doc = store.add_documents(
        [text for _, text, _ in docs],
        ids=[key for key, _, _ in docs],
        metadatas=[{"path": key, "hash": digest} for key, _, digest in docs],
        late_chunking=late,
        chunker=chunker,
    )
    for (key, text, digest), new_ids in zip(docs, per_doc, strict=True):
        old = files.get(key)
        if old is not None:
            report.chunks_deleted += len(set(old.ids) - set(new_ids))
        tokens, estimated = 0, True
        try:  # token counts are informative only; never fail indexing on them
            # in sections cut before whitespace (their counts add up): a 10 MB file is never
            # tokenized in one piece
            first, *rest = sections(text)
            head = provider.count_tokens([first], task=Task.RETRIEVAL_PASSAGE)
            tail = provider.count_tokens(rest)
            tokens = head.total + tail.total - 2 * len(rest)
            estimated = not (head.exact and tail.exact)
        except Exception:
            logger.debug("count_tokens failed", exc_info=True)
        report.tokens += tokens
        report.tokens_estimated = report.tokens_estimated or estimated
        files[key] = FileEntry(hash=digest, ids=list(new_ids), tokens=tokens)
        report.files_embedded += 1
        report.chunks_embedded += len(new_ids)
