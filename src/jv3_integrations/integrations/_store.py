"""What the Qdrant, Milvus and Pinecone stores share: ids, records, hits, and the ingest loop.

Each store implements a handful of I/O hooks (ensure the collection, upsert one batch, delete,
search a batch of query vectors, count) over its host's own client. Everything else lives here,
once: input validation (before any write), deterministic ids, late chunking, the streaming
ingest loop (embed one batch, upsert it, next) with its progress bar, and the sync/async
mirrors of the public methods.
"""

from __future__ import annotations

import abc
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core._errors import ConfigurationError, InputError, InputTypeError
from ..core._late_chunking import aembed_chunks_many, embed_chunks_many
from ..core._load import load_provider
from ..core._progress import progress, report_to
from ..core._provider import EmbeddingProvider, validate_dimensions, validate_texts
from ..core._query import validate_queries
from ..core._sparse import TermEncoder
from ..core._types import Task
from ..core._validate import check_int
from ..core._vecmath import truncate
from ._groups import pack_groups

__all__ = ["DOC_FIELDS", "MODES", "TEXT_KEY", "Hit", "Record", "point_id"]

logger = logging.getLogger(__name__)

#: Namespace of every deterministic id this package makes (uuid5).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/jv3-integrations/ids")
#: Payload/metadata key holding the passage text.
TEXT_KEY = "text"
#: Metadata keys that late-chunked documents add to every chunk.
DOC_FIELDS = ("doc_id", "chunk_index", "start", "end")
#: Search modes: fused dense + keyword, dense only, keyword (BM25) only.
MODES = ("hybrid", "dense", "keyword")

Vectors = npt.NDArray[np.float32]


def point_id(key: str) -> str:
    """The store id for a caller id or text: the UUID itself if ``key`` is one, else uuid5.

    Re-running an ingestion with the same ids (or, without ids, the same texts) therefore
    overwrites points instead of adding duplicates, and ``delete`` accepts either the ids
    ``add_texts`` returned or the caller's own ids.
    """
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(ID_NAMESPACE, key))


def chunk_point_id(doc_id: str, index: int) -> str:
    """Deterministic id of chunk ``index`` of document ``doc_id``."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{doc_id}\x1f{index}"))


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: The point/vector id in the store.
        score: Higher is better: cosine similarity to the query (dense search), the BM25
            score (``mode="keyword"``) or the store's fused score (``mode="hybrid"``).
        text: The stored passage text.
        metadata: The stored metadata (for late-chunked documents also ``doc_id``,
            ``chunk_index``, ``start``, ``end``: the chunk's character span in its document).
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One point to write: id, text and metadata (vectors come per batch)."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _DocPlan:
    doc_id: str
    chunks: list[Record]


def _chunk_count(plan: _DocPlan) -> int:
    return len(plan.chunks)


_FACT_PREFIX = "jv3_"


def _tag_value(text: str) -> str:
    """``text`` as printable ASCII of at most 120 characters (Pinecone's tag values)."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else "?" for c in ascii_text)[:120]


def _check_metadata(meta: object, where: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputTypeError(f"{where} must be a dict (or None), not {type(meta).__name__}")
    out = dict(meta)
    for key in out:
        if not isinstance(key, str):
            raise InputTypeError(f"{where} has a non-str key {key!r}; metadata keys are strings")
    if TEXT_KEY in out:
        raise InputError(
            f"{where} has the key {TEXT_KEY!r}, which holds the passage text; rename it"
        )
    return out


def _check_parallel(name: str, values: object, n: int) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise InputTypeError(f"{name} must be a list with one entry per text, or None")
    out = list(values)
    if len(out) != n:
        raise InputError(f"{name} has {len(out)} entries for {n} texts; give one per text")
    return out


def _check_ids(ids: object, n: int, what: str) -> list[str] | None:
    out = _check_parallel("ids", ids, n)
    if out is None:
        return None
    seen: set[str] = set()
    for i, v in enumerate(out):
        if not isinstance(v, str) or not v:
            raise InputTypeError(f"ids[{i}] must be a non-empty str, not {v!r}")
        if v in seen:
            raise InputError(f"ids[{i}] = {v!r} appears twice; each {what} needs its own id")
        seen.add(v)
    return out


class StoreCore:
    """Shared configuration and the I/O-free parts of every store (sync and async)."""

    #: Default number of passages embedded and upserted per batch.
    default_batch_size = 64

    def __init__(
        self,
        *,
        provider: EmbeddingProvider | str | None,
        dimensions: int | None,
        small_dimensions: int | None = None,
        batch_size: int | None = None,
        progress_bar: bool = False,
        hybrid: bool = False,
    ) -> None:
        self.provider: EmbeddingProvider = load_provider(provider)
        max_dims = self.provider.max_dimensions
        dims = self.provider.dimensions if dimensions is None else dimensions
        try:
            self.dimensions: int = validate_dimensions(dims, max_dims)
        except InputError as exc:
            raise ConfigurationError(str(exc)) from None
        self.small_dimensions: int | None = None
        if small_dimensions is not None:
            try:
                small = validate_dimensions(small_dimensions, self.dimensions)
            except InputError:
                raise ConfigurationError(
                    f"small_dimensions must be in 1..{self.dimensions} (the full dimensions), "
                    f"got {small_dimensions!r}"
                ) from None
            self.small_dimensions = small
        self.batch_size = check_int(
            "batch_size",
            self.default_batch_size if batch_size is None else batch_size,
            error=InputError,
        )
        self.progress_bar = bool(progress_bar)
        self.hybrid = bool(hybrid)
        #: Client-side keyword term vectors (Qdrant, Pinecone); None where the host analyses
        #: the text itself (Milvus) or without hybrid.
        self.term_encoder: TermEncoder | None = None

    def _init_terms(self, term_encoder: TermEncoder | None) -> None:
        """Stores that send term vectors: the encoder (default: the provider's tokenizer)."""
        if term_encoder is not None and not isinstance(term_encoder, TermEncoder):
            raise ConfigurationError(
                f"term_encoder must be a TermEncoder, not {type(term_encoder).__name__}"
            )
        if term_encoder is not None and not self.hybrid:
            raise ConfigurationError("term_encoder is used only with hybrid=True; set it too")
        if self.hybrid:
            self.term_encoder = term_encoder or TermEncoder(provider=self.provider)

    def _load_terms(self) -> None:
        """Load the tokenizer before the first write or query (so a missing one fails early)."""
        if self.term_encoder is not None:
            self.term_encoder.load()

    def _resolve_mode(self, mode: object) -> str:
        """The search mode: ``hybrid`` by default on a hybrid store, else ``dense``."""
        if mode is None:
            return "hybrid" if self.hybrid else "dense"
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "dense" and not self.hybrid:
            raise ConfigurationError(
                f"mode={mode!r} needs keyword vectors, but this store was created without "
                "hybrid=True; recreate it with hybrid=True (and re-index), or use mode='dense'"
            )
        return str(mode)

    # -- planning (pure) -----------------------------------------------------------------

    def _plan_texts(self, texts: Sequence[str], metadatas: object, ids: object) -> list[Record]:
        items = validate_texts(texts)
        metas = _check_parallel("metadatas", metadatas, len(items))
        caller_ids = _check_ids(ids, len(items), "text")
        records = []
        for i, text in enumerate(items):
            meta = _check_metadata(metas[i] if metas is not None else None, f"metadatas[{i}]")
            key = caller_ids[i] if caller_ids is not None else text
            records.append(Record(point_id(key), text, meta))
        self._check_records(records)
        return records

    def _plan_documents(
        self,
        documents: Sequence[str],
        ids: object,
        metadatas: object,
        chunker: Any,
    ) -> list[_DocPlan]:
        docs = validate_texts(documents)
        metas = _check_parallel("metadatas", metadatas, len(docs))
        caller_ids = _check_ids(ids, len(docs), "document")
        if chunker is None:
            from ..core._chunkers import SentenceChunker

            chunker = SentenceChunker()
        if not callable(getattr(chunker, "chunk", None)):
            raise InputTypeError("chunker must have a chunk(document) -> list[Chunk] method")
        plans = []
        seen: set[str] = set()
        for d, doc in enumerate(docs):
            if not doc.strip():
                raise InputError(f"documents[{d}] is empty; there is nothing to index")
            meta = _check_metadata(metas[d] if metas is not None else None, f"metadatas[{d}]")
            for key in DOC_FIELDS:
                if key in meta:
                    raise InputError(
                        f"metadatas[{d}] has the key {key!r}, which add_documents sets itself"
                    )
            doc_id = caller_ids[d] if caller_ids is not None else point_id(doc)
            if doc_id in seen:
                raise InputError(f"documents[{d}] repeats an earlier document (id {doc_id!r})")
            seen.add(doc_id)
            chunks = [c for c in chunker.chunk(doc) if c.text]
            if not chunks:
                raise InputError(f"documents[{d}] gave no chunks; check the chunker")
            records = [
                Record(
                    chunk_point_id(doc_id, j),
                    c.text,
                    {**meta, "doc_id": doc_id, "chunk_index": j, "start": c.start, "end": c.end},
                )
                for j, c in enumerate(chunks)
            ]
            plans.append(_DocPlan(doc_id, records))
        self._check_records([r for p in plans for r in p.chunks])
        return plans

    def _check_records(self, records: list[Record]) -> None:
        """Store-specific checks of everything about to be written (before any write)."""

    def _split(self, vectors: Vectors) -> tuple[Vectors, Vectors | None]:
        """Full vectors and, in two-stage mode, their truncated renormalized prefix."""
        if self.small_dimensions is None:
            return vectors, None
        return vectors, truncate(vectors, self.small_dimensions)

    @staticmethod
    def _check_k(k: object) -> int:
        return check_int("k", k, error=InputError)

    def _embed_kwargs(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}

    # -- how the store was built (kept in the collection's own metadata) -----------------

    def store_facts(self) -> dict[str, str]:
        """What this store writes into the collection's metadata when it creates it.

        ``jv3_model`` (the provider's model name), ``jv3_dimensions``, and where they apply
        ``jv3_small_dimensions`` and ``jv3_quantization``. Keys and values fit every host's
        rules (Pinecone tags: ``[A-Za-z0-9_-]`` keys, printable ASCII values of at most 120
        characters).
        """
        facts = {
            "jv3_model": _tag_value(self.provider.model_name),
            "jv3_dimensions": str(self.dimensions),
        }
        if self.small_dimensions is not None:
            facts["jv3_small_dimensions"] = str(self.small_dimensions)
        facts.update(self._extra_facts())
        return facts

    def _extra_facts(self) -> dict[str, str]:
        return {}

    def _check_facts(self, found: Mapping[str, Any] | None, where: str) -> None:
        """Refuse a collection built with another model, size or layout (before any I/O on it).

        A collection without our keys (made before they were recorded, or by another tool)
        is accepted: its vector size and metric are still verified by the store.

        Raises:
            ConfigurationError: naming the collection's value and this store's.
        """
        theirs = {k: str(v) for k, v in (found or {}).items() if k.startswith(_FACT_PREFIX)}
        if not theirs:
            return
        mine = self.store_facts()
        for key in sorted(set(theirs) | set(mine)):
            built, now = theirs.get(key, "none"), mine.get(key, "none")
            if built != now:
                what = key[len(_FACT_PREFIX) :]
                raise ConfigurationError(
                    f"{where} was built with {what}={built!r}, but this store uses "
                    f"{what}={now!r}; open it with the same provider and settings "
                    f"({what}={built!r}), or use another collection"
                )


class SyncStore(StoreCore, abc.ABC):
    """Public methods of the synchronous stores, over the I/O hooks below."""

    # -- hooks ---------------------------------------------------------------------------

    @abc.abstractmethod
    def create(self) -> None:
        """Create the collection/index, or verify an existing one; idempotent."""

    @abc.abstractmethod
    def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None: ...

    @abc.abstractmethod
    def _delete_ids(self, ids: list[str]) -> None: ...

    @abc.abstractmethod
    def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        """Delete chunks of each document whose index is >= its new chunk count."""

    @abc.abstractmethod
    def _search(
        self, full: Vectors, small: Vectors | None, k: int, filter: Any
    ) -> list[list[Hit]]: ...

    @abc.abstractmethod
    def count(self) -> int:
        """Number of points in the collection."""

    def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        """Keyword (``full is None``) or fused search; stores with ``hybrid`` implement it."""
        raise ConfigurationError(f"{type(self).__name__} has no hybrid search")

    # -- public --------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
    ) -> list[str]:
        """Embed passages (``retrieval.passage``) and upsert them, one batch at a time.

        Args:
            texts: The passages.
            metadatas: One dict per text (or None); stored next to the text.
            ids: One id per text; default: derived from the text. Either way the stored id is
                deterministic (uuid5), so re-running an ingestion overwrites, never duplicates.
            batch_size: Passages per embedding call and upsert (default: the store's).

        Returns:
            The stored ids, in input order.

        Raises:
            InputTypeError, InputError: bad texts, metadatas or ids (before any write).
            ConfigurationError: the existing collection has another dimension or metric.
        """
        records = self._plan_texts(texts, metadatas, ids)
        size = (
            self.batch_size
            if batch_size is None
            else check_int("batch_size", batch_size, error=InputError)
        )
        if not records:
            return []
        self.create()
        with progress(len(records), "Indexing", enabled=self.progress_bar, unit="passage") as bar:
            for start in range(0, len(records), size):
                batch = records[start : start + size]
                emb = self.provider.embed_documents([r.text for r in batch], **self._embed_kwargs())
                self._upsert(batch, *self._split(emb.vectors))
                bar.update(len(batch))
        return [r.id for r in records]

    def add_documents(
        self,
        documents: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        late_chunking: bool = True,
        chunker: Any = None,
        batch_size: int | None = None,
    ) -> list[str]:
        """Chunk documents, embed their chunks (late chunking by default) and store them.

        Each chunk is stored with ``doc_id``, ``chunk_index`` and its character span
        (``start``, ``end``) in its metadata and a deterministic id (uuid5 of document id and
        chunk index). Re-adding a document replaces its chunks: a shorter new version leaves
        no stale chunk behind.

        Args:
            documents: The full documents.
            ids: One id per document (default: derived from its text).
            metadatas: One dict per document, copied onto each of its chunks.
            late_chunking: Encode each document once and pool each chunk's span (True), or
                embed chunks independently (False).
            chunker: A :class:`~jv3_integrations.core.Chunker` (default ``SentenceChunker()``).
            batch_size: About this many chunks per upsert (whole documents per batch; one
                document is never split across batches).

        Returns:
            The stored chunk ids, document by document, chunk by chunk.
        """
        plans = self._plan_documents(documents, ids, metadatas, chunker)
        size = (
            self.batch_size
            if batch_size is None
            else check_int("batch_size", batch_size, error=InputError)
        )
        if not plans:
            return []
        self.create()
        total = sum(len(p.chunks) for p in plans)
        # late chunking: tokens done, reported from inside long documents as windows finish
        with (
            progress(
                None if late_chunking else total,
                "Indexing",
                enabled=self.progress_bar,
                unit="tok" if late_chunking else "chunk",
            ) as bar,
            report_to(bar),
        ):
            for group in pack_groups(plans, _chunk_count, size):
                records = [r for p in group for r in p.chunks]
                if late_chunking:
                    per_doc = embed_chunks_many(
                        self.provider,
                        [[r.text for r in p.chunks] for p in group],
                        task=Task.RETRIEVAL_PASSAGE,
                        dimensions=self.dimensions,
                    )
                    vectors = np.asarray(
                        [c.vector for chunks in per_doc for c in chunks], dtype=np.float32
                    )
                else:
                    vectors = self.provider.embed_documents(
                        [r.text for r in records], **self._embed_kwargs()
                    ).vectors
                for a in range(0, len(records), size):  # a long document: `size` per upsert
                    self._upsert(records[a : a + size], *self._split(vectors[a : a + size]))
                self._delete_stale_chunks({p.doc_id: len(p.chunks) for p in group})
                if not late_chunking:
                    bar.update(len(records))
        return [r.id for p in plans for r in p.chunks]

    def search(
        self, query: str, k: int = 10, filter: Any = None, *, mode: str | None = None
    ) -> list[Hit]:
        """The ``k`` passages closest to ``query`` (embedded with ``retrieval.query``).

        Args:
            query: The query text.
            k: How many hits to return.
            filter: The host's own filter, or a dict ``{key: value}`` (equality; a list value
                means "any of") on metadata. It applies to the dense and the keyword side.
            mode: ``"dense"`` (vectors), ``"keyword"`` (BM25 on the same chunks) or
                ``"hybrid"`` (both, fused); default ``"hybrid"`` on a store created with
                ``hybrid=True``, else ``"dense"``.

        Returns:
            Hits, best first (higher is better): cosine similarity (dense), BM25 score
            (keyword) or the store's fused score (hybrid).

        Raises:
            ConfigurationError: ``mode`` other than dense on a store without ``hybrid=True``.
        """
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a str, not {type(query).__name__}")
        return self.search_many([query], k=k, filter=filter, mode=mode)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Any = None,
        *,
        mode: str | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for many queries: one embedding call and one batched store call.

        Keyword mode makes no embedding call; hybrid mode makes one, like dense mode.
        """
        items = validate_queries(queries)
        k = self._check_k(k)
        resolved = self._resolve_mode(mode)
        if not items:
            return []
        self.create()
        if resolved == "keyword":
            return self._search_hybrid(items, None, None, k, filter, resolved)
        emb = self.provider.embed_queries(items, **self._embed_kwargs())
        full, small = self._split(emb.vectors)
        if resolved == "hybrid":
            return self._search_hybrid(items, full, small, k, filter, resolved)
        return self._search(full, small, k, filter)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete points by the ids :meth:`add_texts` returned (or the caller's own ids)."""
        keys = validate_texts(ids)
        if keys:
            self.create()
            self._delete_ids([point_id(i) for i in keys])


class AsyncStore(StoreCore, abc.ABC):
    """Public methods of the asyncio stores; same names and results as :class:`SyncStore`."""

    @abc.abstractmethod
    async def create(self) -> None:
        """Create the collection/index, or verify an existing one; idempotent."""

    @abc.abstractmethod
    async def _upsert(
        self, records: list[Record], full: Vectors, small: Vectors | None
    ) -> None: ...

    @abc.abstractmethod
    async def _delete_ids(self, ids: list[str]) -> None: ...

    @abc.abstractmethod
    async def _delete_stale_chunks(self, counts: dict[str, int]) -> None: ...

    @abc.abstractmethod
    async def _search(
        self, full: Vectors, small: Vectors | None, k: int, filter: Any
    ) -> list[list[Hit]]: ...

    @abc.abstractmethod
    async def count(self) -> int:
        """Number of points in the collection."""

    async def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        """Async twin of :meth:`SyncStore._search_hybrid`."""
        raise ConfigurationError(f"{type(self).__name__} has no hybrid search")

    async def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
    ) -> list[str]:
        """Async twin of :meth:`SyncStore.add_texts`."""
        records = self._plan_texts(texts, metadatas, ids)
        size = (
            self.batch_size
            if batch_size is None
            else check_int("batch_size", batch_size, error=InputError)
        )
        if not records:
            return []
        await self.create()
        with progress(len(records), "Indexing", enabled=self.progress_bar, unit="passage") as bar:
            for start in range(0, len(records), size):
                batch = records[start : start + size]
                emb = await self.provider.aembed_documents(
                    [r.text for r in batch], **self._embed_kwargs()
                )
                await self._upsert(batch, *self._split(emb.vectors))
                bar.update(len(batch))
        return [r.id for r in records]

    async def add_documents(
        self,
        documents: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        late_chunking: bool = True,
        chunker: Any = None,
        batch_size: int | None = None,
    ) -> list[str]:
        """Async twin of :meth:`SyncStore.add_documents`."""
        plans = self._plan_documents(documents, ids, metadatas, chunker)
        size = (
            self.batch_size
            if batch_size is None
            else check_int("batch_size", batch_size, error=InputError)
        )
        if not plans:
            return []
        await self.create()
        total = sum(len(p.chunks) for p in plans)
        # late chunking: tokens done, reported from inside long documents as windows finish
        with (
            progress(
                None if late_chunking else total,
                "Indexing",
                enabled=self.progress_bar,
                unit="tok" if late_chunking else "chunk",
            ) as bar,
            report_to(bar),
        ):
            for group in pack_groups(plans, _chunk_count, size):
                records = [r for p in group for r in p.chunks]
                if late_chunking:
                    per_doc = await aembed_chunks_many(
                        self.provider,
                        [[r.text for r in p.chunks] for p in group],
                        task=Task.RETRIEVAL_PASSAGE,
                        dimensions=self.dimensions,
                    )
                    vectors = np.asarray(
                        [c.vector for chunks in per_doc for c in chunks], dtype=np.float32
                    )
                else:
                    vectors = (
                        await self.provider.aembed_documents(
                            [r.text for r in records], **self._embed_kwargs()
                        )
                    ).vectors
                for a in range(0, len(records), size):  # a long document: `size` per upsert
                    await self._upsert(records[a : a + size], *self._split(vectors[a : a + size]))
                await self._delete_stale_chunks({p.doc_id: len(p.chunks) for p in group})
                if not late_chunking:
                    bar.update(len(records))
        return [r.id for p in plans for r in p.chunks]

    async def search(
        self, query: str, k: int = 10, filter: Any = None, *, mode: str | None = None
    ) -> list[Hit]:
        """Async twin of :meth:`SyncStore.search`."""
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a str, not {type(query).__name__}")
        return (await self.search_many([query], k=k, filter=filter, mode=mode))[0]

    async def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Any = None,
        *,
        mode: str | None = None,
    ) -> list[list[Hit]]:
        """Async twin of :meth:`SyncStore.search_many`."""
        items = validate_queries(queries)
        k = self._check_k(k)
        resolved = self._resolve_mode(mode)
        if not items:
            return []
        await self.create()
        if resolved == "keyword":
            return await self._search_hybrid(items, None, None, k, filter, resolved)
        emb = await self.provider.aembed_queries(items, **self._embed_kwargs())
        full, small = self._split(emb.vectors)
        if resolved == "hybrid":
            return await self._search_hybrid(items, full, small, k, filter, resolved)
        return await self._search(full, small, k, filter)

    async def delete(self, ids: Sequence[str]) -> None:
        """Async twin of :meth:`SyncStore.delete`."""
        keys = validate_texts(ids)
        if keys:
            await self.create()
            await self._delete_ids([point_id(i) for i in keys])


def simple_filter(filter: Any) -> dict[str, Any] | None:
    """A plain ``{key: value}`` dict (our portable filter), validated; None if not one."""
    if not isinstance(filter, dict):
        return None
    for key, value in filter.items():
        if not isinstance(key, str) or key.startswith("$"):
            return None
        if isinstance(value, dict):
            return None
        if not isinstance(value, (str, int, float, bool, list, tuple)):
            raise InputTypeError(
                f"filter[{key!r}] must be a str, number, bool or a list of them, "
                f"not {type(value).__name__}"
            )
    return filter


def rescore(
    candidates: list[str], full_vectors: Mapping[str, Vectors], query: Vectors
) -> list[tuple[str, float]]:
    """Exact cosine rescoring of candidate ids with their full (unit) vectors, best first."""
    ids = [c for c in candidates if c in full_vectors]
    if not ids:
        return []
    mat = np.asarray([full_vectors[i] for i in ids], dtype=np.float32)
    scores = mat @ np.asarray(query, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    return [(ids[i], float(scores[i])) for i in order]
