"""What ``jv3 index`` and ``jv3 search`` do, over the package's public store adapters.

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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core import (
    JINA_EMBEDDINGS_V3,
    APIConnectionError,
    Chunk,
    ConfigurationError,
    EmbeddingProvider,
    InputError,
    Jv3Error,
    MissingDependencyError,
    SentenceChunker,
    Task,
    TokenChunker,
    default_provider_spec,
    load_provider,
)
from ..core._progress import progress, report_to
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
from .output import DisplayHit
from .state import FileEntry, IndexSettings, StateFile, redact_spec, store_lock
from .uri import StoreURI, parse_store_uri

__all__ = [
    "IndexOptions",
    "IndexReport",
    "SearchOptions",
    "open_store",
    "parse_chunker",
    "run_index",
    "run_search",
]

logger = logging.getLogger(__name__)

DEFAULT_CHUNKER = "sentences"
DEFAULT_SENTENCE_CHARS = 1000
MAX_CHUNK_CHARS = 4000
FILES_PER_BATCH = 16

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


class CappedChunker:
    """Cut any chunk longer than ``max_chars`` at whitespace (a run-on "sentence", a log file).

    Keeps every chunk within what stores hold (Milvus VARCHAR, Pinecone metadata) and what the
    model reads in one pass; the pieces still tile the document.
    """

    def __init__(self, inner: Any, max_chars: int = MAX_CHUNK_CHARS) -> None:
        self.inner = inner
        self.max_chars = max_chars

    def chunk(self, document: str) -> list[Chunk]:
        out: list[Chunk] = []
        for c in self.inner.chunk(document):
            if len(c.text) <= self.max_chars:
                out.append(c)
                continue
            start = c.start
            while start < c.end:
                end = min(c.end, start + self.max_chars)
                if end < c.end:
                    space = document.rfind(" ", start + self.max_chars // 2, end)
                    end = space + 1 if space != -1 else end
                piece = Chunk(document[start:end], start, end)
                if out and out[-1].end == start and not piece.text.strip():
                    last = out.pop()  # a blank piece joins the one before it
                    piece = Chunk(document[last.start : end], last.start, end)
                out.append(piece)
                start = end
        return out


def _absolute_local(spec: str) -> str:
    """``local:./dir`` as an absolute path, so ``jv3 search`` works from any folder."""
    if spec.startswith("local:"):
        target = Path(spec[len("local:") :].strip()).expanduser()
        if target.exists():
            return f"local:{target.resolve()}"
    return spec


_OFFICIAL_SHAPE = {"hidden_size": 1024, "num_layers": 24, "vocab_size": 250002}


def _local_model(spec: str) -> str | None:
    return spec[len("local:") :].strip() or None if spec.startswith("local:") else None


def first_download_notice(spec: str) -> str | None:
    """The line shown before a local Hub model is downloaded (what, how big, its licence).

    ``None`` when nothing will be downloaded: not a ``local:`` Hub id, already in the cache,
    downloads off (``HF_HUB_OFFLINE``) or the Hub unreachable (that error comes next).
    """
    from ..core._checkpoint import _HUB_ID, _offline_env, hub_cached, hub_reachable

    model = _local_model(spec)
    if model is None or Path(model).expanduser().exists() or not _HUB_ID.match(model):
        return None
    if _offline_env() or hub_cached(model) or not hub_reachable():
        return None
    size = " (about 1.1 GB)" if model == JINA_EMBEDDINGS_V3.hub_id else ""
    return (
        f"downloading {model}{size} from the Hugging Face Hub, once (then cached). The "
        "jina-embeddings-v3 weights are licensed CC BY-NC 4.0 (non-commercial use; "
        "commercial use needs Jina's API or a licence from Jina AI); this package's code is "
        f"Apache-2.0. See https://huggingface.co/{model}"
    )


def random_weights_notice(spec: str) -> str | None:
    """A warning for the demo when the local checkpoint is not the official model.

    The official checkpoint has 24 layers, 1024 dimensions and XLM-RoBERTa's 250,002-token
    vocabulary; a checkpoint of another shape (the tiny conformance model ...) has random
    weights, so its scores and rankings mean nothing.
    """
    from ..core._checkpoint import ModelSource

    model = _local_model(spec)
    if model is None or not Path(model).expanduser().is_dir():
        return None  # the API, a server, or the Hub id (the official model)
    try:
        cfg = ModelSource(model).config()
    except Exception:  # the provider reports a broken directory itself
        return None
    shape = {k: getattr(cfg, k) for k in _OFFICIAL_SHAPE}
    if shape == _OFFICIAL_SHAPE:
        return None
    return (
        f"the model in {model} is not the official jina-embeddings-v3 ({cfg.num_layers} "
        f"layers, {cfg.hidden_size} dimensions instead of 24 and 1024): its weights are "
        "random test weights, so the scores and rankings below are meaningless"
    )


def _check_host_resolves(spec: str) -> None:
    """Offline, fail in a second before any store opens, not after it (the API client would
    fail at the first request too, without retrying, but only once the store is up)."""
    import socket
    from urllib.parse import urlsplit

    text = spec.strip()
    if text == "api":
        if not os.environ.get("JINA_API_KEY", "").strip():
            return  # the missing key is the first thing to fix, and the provider says so
        from ..core._wire import DEFAULT_BASE_URL

        text = DEFAULT_BASE_URL
    if not text.startswith(("http://", "https://")):
        return
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return  # the proxy resolves names, not us
    host = urlsplit(text).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        raise APIConnectionError(
            f"could not reach {redact_spec(text)}: the host name {host!r} does not resolve "
            "(offline, or a typo in the URL)"
        ) from None


def make_provider(spec: str, dimensions: int | None) -> EmbeddingProvider:
    """``load_provider(spec)`` with the Matryoshka size, if any."""
    notice = first_download_notice(spec)
    if notice:
        print(f"jv3: {notice}", file=sys.stderr)
    _check_host_resolves(spec)
    if dimensions is None:
        return load_provider(spec)
    return load_provider(spec, dimensions=dimensions)


# -- stores -----------------------------------------------------------------------------------


def open_store(
    uri: StoreURI,
    collection: str,
    provider: EmbeddingProvider,
    dimensions: int,
    hybrid: bool = False,
) -> Any:
    """The package's store adapter for ``uri`` (``QdrantStore``, ``MilvusStore`` ...)."""
    try:
        if uri.kind == "qdrant":
            from qdrant_client import QdrantClient

            from ..qdrant import QdrantStore

            if uri.memory:
                client = QdrantClient(":memory:")
            elif uri.local:
                if uri.path.exists() and not uri.path.is_dir():
                    raise ConfigurationError(
                        f"qdrant:{uri.target} is a file, but Qdrant local mode keeps its index "
                        "in a folder: give a folder path (e.g. --store qdrant:./jv3-qdrant), or "
                        "--store milvus:FILE.db for Milvus Lite"
                    )
                uri.path.mkdir(parents=True, exist_ok=True)
                client = QdrantClient(path=str(uri.path))
            else:
                client = QdrantClient(url=uri.target, api_key=os.environ.get("QDRANT_API_KEY"))
            return QdrantStore(
                provider, client=client, collection=collection, dimensions=dimensions, hybrid=hybrid
            )
        if uri.kind == "milvus":
            from pymilvus import MilvusClient

            from ..milvus import MilvusStore

            if uri.local:
                uri.path.expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
                try:
                    client = MilvusClient(str(uri.path))
                except Exception as exc:
                    if "Open local milvus failed" not in str(exc):
                        raise
                    raise ConfigurationError(
                        f"cannot open the Milvus Lite store {uri.target}: another process is "
                        "using it (wait for it to finish), or it is not a Milvus Lite database"
                    ) from None
            else:
                client = MilvusClient(uri.target, token=os.environ.get("MILVUS_TOKEN", ""))
            return MilvusStore(
                provider, client=client, collection=collection, dimensions=dimensions, hybrid=hybrid
            )
        return _open_pinecone(uri, collection, provider, dimensions, hybrid)
    except MissingDependencyError:
        raise
    except ImportError:
        raise ConfigurationError(
            f"{uri.kind} support is not installed: pip install 'jv3-integrations[{uri.kind}]'"
        ) from None
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise ConfigurationError(
                f"the store {uri.display()} is open in another process (Qdrant local mode allows "
                "one at a time); wait for it to finish"
            ) from None
        raise


def _open_pinecone(
    uri: StoreURI, collection: str, provider: EmbeddingProvider, dimensions: int, hybrid: bool
) -> Any:
    from ..pinecone import PineconeStore

    key = os.environ.get("PINECONE_API_KEY", "").strip()
    if not key:
        raise ConfigurationError(
            "pinecone: stores need PINECONE_API_KEY in the environment (and PINECONE_HOST for "
            "a non-default control-plane endpoint)"
        )
    from pinecone import Pinecone

    host = os.environ.get("PINECONE_HOST") or os.environ.get("PINECONE_CONTROLLER_HOST")
    client = Pinecone(api_key=key, host=host) if host else Pinecone(api_key=key)
    return PineconeStore(
        provider,
        client=client,
        collection=uri.target,
        namespace=collection,
        dimensions=dimensions,
        hybrid=hybrid,
    )


def close_store(store: Any) -> None:
    """Close the store's client (releases Qdrant's folder lock / Milvus Lite's server)."""
    try:
        close = getattr(store.client, "close", None)
        if callable(close):
            close()
    except Exception:  # closing must never mask the real result
        logger.debug("closing the store client failed", exc_info=True)


# -- index ------------------------------------------------------------------------------------


@dataclass
class IndexOptions:
    """``jv3 index`` arguments (``None``: keep what the index was built with, else default)."""

    paths: Sequence[str]
    store: str
    collection: str = "jv3"
    provider: str | None = None
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


def _run_index_locked(opts: IndexOptions, uri: StoreURI, warn: Warn) -> IndexReport:
    t0 = time.perf_counter()
    path = uri.state_path()
    try:
        state = StateFile(path)
    except ConfigurationError:
        if not opts.rebuild:
            raise
        state = StateFile(path, fresh=True)  # unreadable: --rebuild starts over
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
    if not found.files:  # say so; with nothing indexed before, create no empty store either
        report.warnings.append(nothing_to_index(opts.paths, found))
        warn(report.warnings[-1])
        if not coll.files:
            return report

    spec, dims, chunker_spec, late = _resolve_settings(opts, prior, report.store, opts.collection)
    provider = opts.provider_instance or make_provider(spec, dims)
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
    rechunk = prior is not None and prior.chunking_key() != settings.chunking_key()
    if rechunk:
        warn("chunker or late-chunking setting changed: re-embedding every file")
    report.settings = settings.to_json()
    chunker = build_chunker(chunker_spec, provider)

    store: Any = None
    try:
        store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
        store.create()  # checks the store's own dimension before anything is written
    except Jv3Error:
        raise
    except Exception:
        if not (opts.rebuild and uri.local and not uri.memory):
            raise
        if store is not None:
            close_store(store)
        _set_aside(uri.path, warn)  # --rebuild of a damaged local store: start a new one
        store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
        store.create()
    try:
        if any(e.ids for e in coll.files.values()) and int(store.count()) == 0:
            warn(
                f"the index state lists {len(coll.files)} files but the store is empty "
                "(deleted?): embedding everything again"
            )
            coll.files.clear()
        coll.settings = settings
        to_embed, seen = _classify(found, coll.files, rechunk, report, warn)
        gone = [k for k in coll.files if k not in seen and is_under(Path(k), found.roots)]
        if opts.engine is not None:  # e.g. Ray: embeds every file and updates their entries
            opts.engine.embed_files(
                store,
                to_embed,
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
        with (
            progress(len(to_embed), "Embedding", enabled=opts.progress, unit="file") as bar,
            # tokens inside the files (late chunking reports them as each window finishes)
            progress(None, "Tokens", enabled=opts.progress and late, unit="tok") as tokens,
            report_to(tokens),
        ):
            for start in range(0, len(to_embed), FILES_PER_BATCH):
                batch = to_embed[start : start + FILES_PER_BATCH]
                _embed_batch(store, batch, chunker, late, provider, coll.files, report)
                state.save()
                bar.update(len(batch))
        for key in gone:
            entry = coll.files.pop(key)
            if entry.ids:
                store.delete(entry.ids)
            report.chunks_deleted += len(entry.ids)
            report.removed += 1
        state.save()
        report.chunks_total = int(store.count())
    finally:
        state.save()
        close_store(store)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


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


def _embed_batch(
    store: Any,
    batch: list[tuple[str, str, str]],
    chunker: Any,
    late: bool,
    provider: EmbeddingProvider,
    files: dict[str, FileEntry],
    report: IndexReport,
) -> None:
    docs: list[tuple[str, str, str]] = []
    for key, text, digest in batch:
        if not text.strip():
            old = files.get(key)
            if old is not None and old.ids:
                store.delete(old.ids)
                report.chunks_deleted += len(old.ids)
            files[key] = FileEntry(hash=digest, ids=[], tokens=0)
            report.empty += 1
            continue
        docs.append((key, text, digest))
    if not docs:
        return
    ids = store.add_documents(
        [text for _, text, _ in docs],
        ids=[key for key, _, _ in docs],
        metadatas=[{"path": key, "hash": digest} for key, _, digest in docs],
        late_chunking=late,
        chunker=chunker,
    )
    # add_documents returns the chunk ids document by document; split them per file by
    # their doc_id order (each document's ids are consecutive).
    per_doc = _split_ids(store, docs, ids, chunker)
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


def _split_ids(
    store: Any, docs: list[tuple[str, str, str]], ids: list[str], chunker: Any
) -> list[list[str]]:
    counts = [len([c for c in chunker.chunk(text) if c.text]) for _, text, _ in docs]
    if sum(counts) != len(ids):
        raise InputError(
            f"the store returned {len(ids)} chunk ids for {sum(counts)} chunks; cannot track them"
        )
    out: list[list[str]] = []
    pos = 0
    for n in counts:
        out.append(ids[pos : pos + n])
        pos += n
    return out


def _display(key: str) -> str:
    """A path as the user should see it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(key) if Path(key).is_relative_to(Path.cwd()) else key
    except ValueError:
        return key


# -- search -----------------------------------------------------------------------------------


@dataclass
class SearchOptions:
    """``jv3 search`` arguments (several queries are embedded in one call)."""

    queries: Sequence[str]
    store: str
    collection: str = "jv3"
    provider: str | None = None
    k: int = 5
    provider_instance: EmbeddingProvider | None = None
    #: ``hybrid``, ``dense`` or ``keyword``; None: hybrid if the index was built with it.
    mode: str | None = None


def run_search(opts: SearchOptions, warn: Warn) -> list[list[DisplayHit]]:
    """Embed the queries (``retrieval.query``) with the index's settings and search the store.

    Returns:
        One ranked hit list per query.
    """
    if not opts.queries or any(not q.strip() for q in opts.queries):
        raise InputError("the query is empty; give the words to search for")
    if opts.k < 1:
        raise InputError(f"--k must be a positive integer, got {opts.k}")
    uri = parse_store_uri(opts.store)
    state = StateFile(uri.state_path())
    settings = (
        state.collection(opts.collection).settings
        if state.has_collection(opts.collection)
        else None
    )
    if settings is None and uri.local and (uri.memory or not uri.path.exists()):
        raise ConfigurationError(
            f"nothing is indexed in {uri.display()} [{opts.collection}]; run "
            "`jv3 index PATH...` first (or pass the --store you indexed into)"
        )
    spec = opts.provider or (settings.provider if settings else None) or default_provider_spec()
    provider = opts.provider_instance or make_provider(
        spec, settings.dimensions if settings else None
    )
    if settings is not None and provider.model_name != settings.model:
        raise ConfigurationError(
            f"collection {opts.collection!r} in {uri.display()} was built with model "
            f"{settings.model!r}; provider {redact_spec(spec)} gives {provider.model_name!r}. "
            f"Use --provider {settings.provider}"
        )
    dims = settings.dimensions if settings else provider.dimensions
    hybrid = settings.hybrid if settings else False
    if opts.mode not in (None, "dense") and not hybrid:
        raise ConfigurationError(
            f"--mode {opts.mode} needs keyword vectors, but {uri.display()} [{opts.collection}] "
            "was indexed without --hybrid; index with `jv3 index --hybrid` into a new "
            "--collection, or search with --mode dense"
        )
    indexed = [e for e in state.collection(opts.collection).files.values() if e.ids]
    with _unreadable_store_is_said(uri, opts.collection, len(indexed)):
        store = open_store(uri, opts.collection, provider, dims, hybrid)
    try:
        with _unreadable_store_is_said(uri, opts.collection, len(indexed)):
            count = int(store.count())
        if settings is None and count == 0:
            raise ConfigurationError(
                f"nothing is indexed in {uri.display()} [{opts.collection}]; run "
                "`jv3 index PATH...` first"
            )
        if indexed and count == 0:
            raise ConfigurationError(
                f"the index state lists {len(indexed)} indexed files for {uri.display()} "
                f"[{opts.collection}] but the store holds no chunks (missing, emptied or "
                "corrupt); rebuild it with `jv3 index --rebuild PATH...`"
            )
        raw = store.search_many(list(opts.queries), k=opts.k, mode=opts.mode)
    finally:
        close_store(store)
    return [[_hit(h) for h in row] for row in raw]


@contextmanager
def _unreadable_store_is_said(uri: StoreURI, collection: str, indexed: int) -> Iterator[None]:
    """A local store that fails to open or count while the state lists files is damaged."""
    try:
        yield
    except Jv3Error:
        raise
    except Exception as exc:
        if not indexed or not uri.local or uri.memory:
            raise
        reason = " ".join(str(exc).split())[:200]
        raise ConfigurationError(
            f"the store {uri.display()} [{collection}] cannot be read though the index state "
            f"lists {indexed} indexed files (corrupt? {type(exc).__name__}: {reason}); rebuild "
            "it with `jv3 index --rebuild PATH...`"
        ) from None


def _set_aside(path: Path, warn: Warn) -> None:
    """Move a damaged local store out of the way (kept, never deleted) for ``--rebuild``."""
    if not path.exists():
        return
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    warn(f"the store could not be opened; moved it to {aside} and building a new one")


def _hit(h: Any) -> DisplayHit:
    meta = dict(h.metadata)
    path = str(meta.get("path") or meta.get("doc_id") or "")
    start, end = meta.get("start"), meta.get("end")
    return DisplayHit(
        score=float(h.score),
        file=_display(path) if path else "?",
        text=h.text,
        start=int(start) if isinstance(start, int) else None,
        end=int(end) if isinstance(end, int) else None,
        id=str(h.id),
    )


def stderr_warn(message: str) -> None:
    """Print a warning line on stderr."""
    print(f"jv3: warning: {message}", file=sys.stderr)
