"""What ``jv3 index`` does, over the package's public store adapters (``jv3 search``: search.py).

Indexing is incremental: each file's content hash is kept in the index state (see
:mod:`.state`); unchanged files are skipped, changed files re-embedded (their document id is
their absolute path, so the store replaces their chunks and drops stale ones), and files that
disappeared from an indexed folder have their chunks deleted.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core import (
    CappedChunker,
    ConfigurationError,
    EmbeddingProvider,
    Jv3Error,
    MissingDependencyError,
    SentenceChunker,
    Task,
    TokenChunker,
    default_provider_spec,
)
from ..core._models import MODELS
from ..core._progress import report_to
from ..core._provider import check_late_chunking
from ..core._spec import ProviderSpec
from ..core._tokenize import sections
from ..core._validate import check_int
from .files import (
    Discovery,
    PdfSupportMissingError,
    UnreadableFileError,
    discover,
    is_under,
    nothing_to_index,
    read_document,
)
from .generation import (
    StaleStoreError,
    check_generation,
    drop_stale_collection,
    mark_generation,
)
from .index_progress import IndexProgress, bytes_per_token, estimate_tokens
from .providers import _absolute_local, make_provider
from .state import FileEntry, IndexSettings, StateFile, redact_spec, store_lock
from .uri import StoreURI, parse_store_uri

__all__ = [
    "IndexInterrupted",
    "IndexOptions",
    "IndexReport",
    "open_store",
    "parse_chunker",
    "run_index",
]

logger = logging.getLogger(__name__)

DEFAULT_CHUNKER = "sentences"
DEFAULT_SENTENCE_CHARS = 1000
FILES_PER_BATCH = 16
#: A batch also ends at about this many (estimated) tokens.
BATCH_TOKENS = 16_384

Warn = Callable[[str], None]


# -- settings ---------------------------------------------------------------------------------


def parse_chunker(spec: str) -> str:
    """Normalize a ``--chunker`` value: ``sentences[:MAX_CHARS]`` or ``tokens:N``.

    Raises:
        ConfigurationError: anything else.
    """
    text = spec.strip().lower()
    name, _, arg = text.partition(":")
    if name in {"sentences", "sentence"}:
        size = DEFAULT_SENTENCE_CHARS if not arg else _positive(arg, spec)
        return f"sentences:{size}"
    if name in {"tokens", "token"} and arg:
        return f"tokens:{_positive(arg, spec)}"
    raise ConfigurationError(
        f"unknown chunker {spec!r}; use 'sentences' (sentences grouped up to "
        f"{DEFAULT_SENTENCE_CHARS} characters), 'sentences:MAX_CHARS' or 'tokens:N'"
    )


def _positive(arg: str, spec: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        value = 0
    return check_int(f"chunker {spec!r}: the size", value)


def build_chunker(spec: str, provider: EmbeddingProvider) -> Any:
    """The chunker object for a normalized ``--chunker`` spec (chunks capped in size)."""
    name, _, arg = spec.partition(":")
    if name == "tokens":
        return CappedChunker(TokenChunker(provider, tokens=int(arg)))
    return CappedChunker(SentenceChunker(max_chars=int(arg)))


# -- stores -----------------------------------------------------------------------------------


def open_store(
    uri: StoreURI,
    collection: str,
    provider: EmbeddingProvider,
    dimensions: int,
    hybrid: bool = False,
) -> Any:
    """The package's store for ``uri``, opened from its URL or path and the host's key.

    Keys come from the environment, as each host's own client reads them: ``QDRANT_API_KEY``,
    ``MILVUS_TOKEN``, ``PINECONE_API_KEY`` (and ``PINECONE_HOST`` for another control plane).
    Nothing is opened yet: the store opens its client on first use.
    """
    common: dict[str, Any] = {"dimensions": dimensions, "hybrid": hybrid}
    try:
        if uri.kind == "qdrant":
            from ..qdrant import QdrantStore

            if uri.memory:
                return QdrantStore(provider, collection=collection, **common)
            if uri.local:
                if uri.path.exists() and not uri.path.is_dir():
                    raise ConfigurationError(
                        f"qdrant:{uri.target} is a file, but Qdrant local mode keeps its index "
                        "in a folder: give a folder path (e.g. --store qdrant:./jv3-qdrant), or "
                        "--store milvus:FILE.db for Milvus Lite"
                    )
                return QdrantStore(provider, path=str(uri.path), collection=collection, **common)
            key = os.environ.get("QDRANT_API_KEY", "").strip() or None
            return QdrantStore(
                provider, url=uri.target, api_key=key, collection=collection, **common
            )
        if uri.kind == "milvus":
            from ..milvus import MilvusStore

            if uri.local:
                return MilvusStore(provider, uri=str(uri.path), collection=collection, **common)
            token = os.environ.get("MILVUS_TOKEN", "").strip() or None
            return MilvusStore(
                provider, uri=uri.target, token=token, collection=collection, **common
            )
        return _open_pinecone(uri, collection, provider, common)
    except MissingDependencyError:
        raise
    except ImportError:
        raise ConfigurationError(
            f"{uri.kind} support is not installed: pip install 'jv3-integrations[{uri.kind}]'"
        ) from None


def _open_pinecone(
    uri: StoreURI, collection: str, provider: EmbeddingProvider, common: dict[str, Any]
) -> Any:
    from ..pinecone import PineconeStore

    key = os.environ.get("PINECONE_API_KEY", "").strip()
    if not key:
        raise ConfigurationError(
            "pinecone: stores need PINECONE_API_KEY in the environment (and PINECONE_HOST for "
            "a non-default control-plane endpoint)"
        )
    host = os.environ.get("PINECONE_HOST") or os.environ.get("PINECONE_CONTROLLER_HOST")
    return PineconeStore(
        provider,
        api_key=key,
        host=host or None,
        collection=uri.target,
        namespace=collection,
        **common,
    )


def close_store(store: Any) -> None:
    """Close the store (releases Qdrant's folder lock / Milvus Lite's server)."""
    if store is None:
        return
    try:
        store.close()
    except Exception:  # closing must never mask the real result
        logger.debug("closing the store failed", exc_info=True)


# -- index ------------------------------------------------------------------------------------


@dataclass
class IndexOptions:
    """``jv3 index`` arguments (``None``: keep what the index was built with, else default)."""

    paths: Sequence[str]
    store: str
    collection: str = "jv3"
    provider: str | None = None
    #: ``--model`` (API and servers; None: as the index was built, else the provider's).
    model: str | None = None
    dimensions: int | None = None
    late_chunking: bool | None = None
    chunker: str | None = None
    #: Also index keyword (BM25) vectors (``None``: as the index was built; default off).
    hybrid: bool | None = None
    progress: bool = True
    #: A provider already built from ``provider`` (reused across commands, e.g. by the demo).
    provider_instance: EmbeddingProvider | None = None
    #: Also index files inside hidden folders and hidden files (``--include-hidden``).
    include_hidden: bool = False
    #: Forget the collection's state (even an unreadable one) and embed every file again.
    rebuild: bool = False
    #: Where files are chunked and embedded: None here, in-process; a ``RayEngine`` on Ray.
    engine: Any = None
    #: Seconds between progress lines when stderr is not a terminal (None: the default,
    #: ``JV3_PROGRESS_INTERVAL`` or 10 s).
    progress_interval: float | None = None


class IndexInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``jv3 index``; what was embedded before it is saved and kept.

    Running the same command again embeds only the files not saved yet. ``report`` is the run
    so far, ``saved`` the files stored and recorded, ``planned`` those there were to embed.
    """

    def __init__(self, report: IndexReport, *, saved: int, planned: int) -> None:
        super().__init__(f"saved {saved} of {planned} files; run the same command to continue")
        self.report = report
        self.saved = saved
        self.planned = planned


@dataclass
class IndexReport:
    """What one ``jv3 index`` run did (printed as the summary line or as JSON)."""

    store: str
    collection: str
    files: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    empty: int = 0
    files_embedded: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    tokens: int = 0
    tokens_estimated: bool = False
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: What the folder walk passed over, by reason (hidden folder/file, unsupported type).
    ignored: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.new} new", f"{self.changed} changed", f"{self.unchanged} unchanged"]
        if self.removed:
            parts.append(f"{self.removed} removed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.empty:
            parts.append(f"{self.empty} empty")
        tokens = f"{'~' if self.tokens_estimated else ''}{self.tokens:,} tokens"
        line = (
            f"Indexed {_plural(self.files, 'file')} ({', '.join(parts)}): "
            f"{_plural(self.chunks_embedded, 'chunk')} embedded, {self.chunks_deleted} deleted, "
            f"{self.chunks_total} in the index; "
            f"{tokens}; {self.seconds:.1f} s -> {self.store} [{self.collection}]"
        )
        if self.ignored:
            reasons = ", ".join(_plural(n, why) for why, n in sorted(self.ignored.items()))
            hint = " (--include-hidden indexes hidden ones)" if "hidden" in reasons else ""
            line += f"; not indexed: {reasons}{hint}"
        return line


def _plural(n: int, noun: str) -> str:
    """``1 file``, ``2 files``, ``0 files``: plural only when not exactly one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _resolve_settings(
    opts: IndexOptions, prior: IndexSettings | None, store: str, collection: str
) -> tuple[str, int | None, str, bool]:
    spec = opts.provider or (prior.provider if prior else None) or default_provider_spec()
    dims = opts.dimensions if opts.dimensions is not None else (prior.dimensions if prior else None)
    if prior is not None and dims != prior.dimensions:
        raise ConfigurationError(
            f"store dimension mismatch: collection {collection!r} in {store} holds "
            f"{prior.dimensions}-dimensional vectors, not {dims}; use --dimensions "
            f"{prior.dimensions}, or another --collection or --store"
        )
    chunker = parse_chunker(opts.chunker) if opts.chunker else None
    chunker = chunker or (prior.chunker if prior else parse_chunker(DEFAULT_CHUNKER))
    late = opts.late_chunking
    if late is None:
        late = prior.late_chunking if prior else True
    return spec, dims, chunker, late


def _resolve_model(
    wanted: str | None, prior: IndexSettings | None, spec: str, store: str, collection: str
) -> str | None:
    """``--model``, else the API model the index was built with (None: the provider's)."""
    if prior is None:
        return wanted
    if wanted is not None and wanted != prior.model:
        raise ConfigurationError(
            f"collection {collection!r} in {store} was built with model {prior.model!r}, not "
            f"{wanted!r}; index without --model, or into another --collection"
        )
    local = ProviderSpec.parse(spec).is_local  # a local model's name is its folder's
    return prior.model if prior.model in MODELS and not local else wanted


def _resolve_hybrid(
    wanted: bool | None, prior: IndexSettings | None, store: str, collection: str
) -> bool:
    if prior is None:
        return bool(wanted)
    if wanted is not None and wanted != prior.hybrid:
        built = "with" if prior.hybrid else "without"
        raise ConfigurationError(
            f"collection {collection!r} in {store} was built {built} --hybrid; a collection "
            "cannot change that: use another --collection (or --store) to index "
            f"{'without' if prior.hybrid else 'with'} it"
        )
    return prior.hybrid


def run_index(opts: IndexOptions, warn: Warn) -> IndexReport:
    """Index ``opts.paths`` into the store; see the module docstring for what is re-embedded.

    The store's lock is taken before the state is read and held until its last write: a
    second run on the same store waits for this one, then sees what it wrote.
    """
    uri = parse_store_uri(opts.store)
    with store_lock(
        uri.state_path(),
        on_wait=lambda: warn("another `jv3 index` is writing to this store; waiting for it"),
    ):
        return _run_index_locked(opts, uri, warn)


def _provider_and_settings(
    opts: IndexOptions,
    prior: IndexSettings | None,
    spec: str,
    dims: int | None,
    chunker_spec: str,
    late: bool,
    report: IndexReport,
) -> tuple[EmbeddingProvider, IndexSettings]:
    """The provider of this run and the settings it records (checked against the prior ones)."""
    model = _resolve_model(opts.model, prior, spec, report.store, opts.collection)
    provider = opts.provider_instance or make_provider(spec, dims, model)
    if opts.late_chunking is None and prior is None:  # default: where the model offers it
        late = provider.supports_late_chunking
    if late:
        check_late_chunking(provider, "--late-chunking", "--no-late-chunking")
    settings = IndexSettings(
        model=provider.model_name,
        provider=redact_spec(_absolute_local(spec)),
        dimensions=provider.dimensions,
        chunker=chunker_spec,
        late_chunking=late,
        hybrid=_resolve_hybrid(opts.hybrid, prior, report.store, opts.collection),
    )
    if prior is not None and prior.model != settings.model:
        raise ConfigurationError(
            f"collection {opts.collection!r} in {report.store} was built with model "
            f"{prior.model!r} (provider {prior.provider}); this provider gives "
            f"{settings.model!r}. Use --provider {prior.provider}, or another --collection"
        )
    return provider, settings


def _run_index_locked(opts: IndexOptions, uri: StoreURI, warn: Warn) -> IndexReport:
    t0 = time.perf_counter()
    state = _open_state(uri, rebuild=opts.rebuild)
    coll = state.collection(opts.collection)
    if opts.rebuild:
        coll.files.clear()
        coll.settings = None
    prior = coll.settings
    report = IndexReport(store=uri.display(), collection=opts.collection)

    found: Discovery = discover(opts.paths, include_hidden=opts.include_hidden)
    if found.missing:
        raise ConfigurationError(f"no such file or folder: {', '.join(found.missing)}")
    report.ignored = dict(found.ignored)

    spec, dims, chunker_spec, late = _resolve_settings(opts, prior, report.store, opts.collection)
    # options are checked (above) before an empty walk returns: a bad option is still an error
    if not found.files:  # say so; with nothing indexed before, create no empty store either
        report.warnings.append(nothing_to_index(opts.paths, found))
        warn(report.warnings[-1])
        if not coll.files:
            return report
    provider, settings = _provider_and_settings(opts, prior, spec, dims, chunker_spec, late, report)
    late = settings.late_chunking
    rechunk = prior is not None and prior.chunking_key() != settings.chunking_key()
    if rechunk:
        warn("chunker or late-chunking setting changed: re-embedding every file")
    report.settings = settings.to_json()
    chunker = build_chunker(chunker_spec, provider)

    store = _open_for_index(opts, uri, provider, settings, warn)
    try:
        if any(e.ids for e in coll.files.values()) and int(store.count()) == 0:
            warn(
                f"the index state lists {len(coll.files)} files but the store is empty "
                "(deleted?): embedding everything again"
            )
            coll.files.clear()
        else:
            store = _check_stale(store, opts, uri, coll.generation, provider, settings)
        coll.settings = settings
        to_embed, seen = _classify(found, coll.files, rechunk, report, warn)
        gone = [k for k in coll.files if k not in seen and is_under(Path(k), found.roots)]
        if to_embed or gone or opts.rebuild:  # marked before the first write (see generation)
            coll.generation = mark_generation(store, coll.generation)
        if opts.engine is not None:  # e.g. Ray: embeds every file and updates their entries
            opts.engine.embed_files(
                store,
                drop_empty(store, to_embed, coll.files, report),
                chunker=chunker,
                spec=_absolute_local(spec),
                dimensions=dims,
                chunker_spec=chunker_spec,
                late=late,
                provider=provider,
                files=coll.files,
                report=report,
                show_progress=opts.progress,
            )
            to_embed = []
        planned = len(to_embed)
        docs = drop_empty(store, to_embed, coll.files, report)
        saved_before = report.files_embedded
        ratio = bytes_per_token(provider, [text for _, text, _ in docs]) if opts.progress else 4.0
        shown = IndexProgress(
            [estimate_tokens(text, ratio) for _, text, _ in docs],
            enabled=opts.progress,
            interval=opts.progress_interval,
        )
        try:
            # late chunking reports the tokens of each window as it finishes (long documents)
            with report_to(shown) if shown.enabled else nullcontext():
                for batch in _batches(docs):
                    shown.start_batch([estimate_tokens(text, ratio) for _, text, _ in batch])
                    _embed_batch(store, batch, chunker, late, provider, coll.files, report)
                    state.save()
                    shown.end_batch()
        except KeyboardInterrupt:
            shown.close()
            saved = report.empty + report.files_embedded - saved_before
            raise IndexInterrupted(report, saved=saved, planned=planned) from None
        shown.close()
        _remove(store, gone, coll.files, report)
        state.save()
        report.chunks_total = int(store.count())
    finally:
        state.save()
        close_store(store)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _open_state(uri: StoreURI, *, rebuild: bool) -> StateFile:
    """The store's index state; an unreadable one starts over only with ``--rebuild``."""
    try:
        return StateFile(uri.state_path())
    except ConfigurationError:
        if not rebuild:
            raise
        return StateFile(uri.state_path(), fresh=True)


def _open_for_index(
    opts: IndexOptions,
    uri: StoreURI,
    provider: EmbeddingProvider,
    settings: IndexSettings,
    warn: Warn,
) -> Any:
    """The store, created or verified (its dimension is checked before anything is written);
    with ``--rebuild``, a damaged local store is set aside and a new one started."""
    store: Any = None
    try:
        store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
        store.create()
        return store
    except Jv3Error:
        raise
    except Exception:
        if not (opts.rebuild and uri.local and not uri.memory):
            raise
        close_store(store)
        _set_aside(uri.path, warn)
        store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
        store.create()
        return store


def _check_stale(
    store: Any,
    opts: IndexOptions,
    uri: StoreURI,
    recorded: int | None,
    provider: EmbeddingProvider,
    settings: IndexSettings,
) -> Any:
    """Refuse a store older than its state; with ``--rebuild`` its collection is dropped (it
    may hold chunks of old file versions that no state lists) and made again."""
    try:
        check_generation(store, recorded, f"{uri.display()} [{opts.collection}]")
        return store
    except StaleStoreError:
        if not opts.rebuild:
            raise
    drop_stale_collection(store)
    close_store(store)
    store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
    store.create()
    return store


def _remove(store: Any, gone: list[str], files: dict[str, FileEntry], report: IndexReport) -> None:
    """Delete the chunks of files that disappeared from an indexed folder."""
    for key in gone:
        entry = files.pop(key)
        if entry.ids:
            store.delete(entry.ids)
        report.chunks_deleted += len(entry.ids)
        report.removed += 1


def _classify(
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
            msg = f"skipped {_display(key)}: {exc}"
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
        first = _display(no_pdf[0])
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


def _batches(docs: list[tuple[str, str, str]]) -> Iterator[list[tuple[str, str, str]]]:
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


def _embed_batch(
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


def _display(key: str) -> str:
    """A path as the user should see it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(key) if Path(key).is_relative_to(Path.cwd()) else key
    except ValueError:
        return key


def _set_aside(path: Path, warn: Warn) -> None:
    """Move a damaged local store out of the way (kept, never deleted) for ``--rebuild``."""
    if not path.exists():
        return
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    warn(f"the store could not be opened; moved it to {aside} and building a new one")


def stderr_warn(message: str) -> None:
    """Print a warning line on stderr."""
    print(f"jv3: warning: {message}", file=sys.stderr)
