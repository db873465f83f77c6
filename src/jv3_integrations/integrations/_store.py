"""The store contract: what the Qdrant, Milvus and Pinecone stores share.

:class:`SyncStore` and :class:`AsyncStore` are the public surface (embed-and-write, ``write``,
search, delete, count, close, ``with``, traits) over :class:`StoreCore` (the I/O-free half:
configuration, planning, checks) and :mod:`._records` (ids, records, hits). Each store
implements a handful of I/O hooks (ensure the collection, upsert one batch, delete, search a
batch of query vectors, count) over its host's own client; the streaming ingest loop (embed
one batch, upsert it, next) with its progress bar lives here, once, in its sync/async mirrors.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from ..core._errors import ConfigurationError, InputError, InputTypeError
from ..core._late_chunking import aembed_chunks_many, embed_chunks_many
from ..core._progress import progress, report_to
from ..core._provider import validate_texts
from ..core._query import validate_queries
from ..core._types import Task
from ..core._validate import check_int
from ._groups import pack_groups
from ._records import (
    DOC_FIELDS,
    MODES,
    TEXT_KEY,
    Hit,
    Record,
    StoreTraits,
    Vectors,
    _check_metadata,
    _chunk_count,
    chunk_point_id,
    point_id,
    rescore,
    simple_filter,
)
from ._store_core import StoreCore

__all__ = [
    "DOC_FIELDS",
    "MODES",
    "TEXT_KEY",
    "AsyncStore",
    "Hit",
    "Record",
    "StoreCore",
    "StoreTraits",
    "SyncStore",
    "Vectors",
    "_check_metadata",
    "chunk_point_id",
    "point_id",
    "rescore",
    "simple_filter",
]

logger = logging.getLogger(__name__)


#: Documents per delete call of ``delete(keep_chunks=...)`` (one filter per document).
_KEEP_PER_CALL = 256


class SyncStore(StoreCore, abc.ABC):
    """The contract of the synchronous stores (Qdrant, Milvus, Pinecone), over I/O hooks.

    Public: :meth:`add_texts`, :meth:`add_documents` (embed and write), :meth:`write` (write
    what was embedded elsewhere, e.g. on Ray), :meth:`search`, :meth:`search_many`,
    :meth:`delete`, :meth:`count`, :meth:`create`, :meth:`close` (and ``with store:``), and
    :attr:`traits`. Constructors do no I/O: the client opens on first use.

    Example:
        >>> with QdrantStore("local:tests/data/tiny-v3", path="./index") as store:  # doctest: +SKIP
        ...     ids = store.add_documents(["Berlin is the capital of Germany."], ids=["berlin"])
        ...     hits = store.search("capital of Germany", k=1)
    """

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

    def _close_client(self) -> None:
        """Close the client if the store opened it (a client you passed stays yours)."""

    def close(self) -> None:
        """Close what the store opened (its client; a Qdrant folder lock, Milvus Lite).

        A client passed as ``client=`` is yours to close. Using the store again reopens.
        """
        try:
            self._close_client()
        finally:
            self._ready = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        late_chunking: bool | None = None,
        chunker: Any = None,
        batch_size: int | None = None,
    ) -> list[list[str]]:
        """Chunk documents, embed their chunks (late chunking where offered) and store them.

        Each chunk is stored with ``doc_id``, ``chunk_index`` and its character span
        (``start``, ``end``) in its metadata and a deterministic id (uuid5 of document id and
        chunk index). Re-adding a document replaces its chunks: a shorter new version leaves
        no stale chunk behind.

        Args:
            documents: The full documents.
            ids: One id per document (default: derived from its text).
            metadatas: One dict per document, copied onto each of its chunks.
            late_chunking: Encode each document once and pool each chunk's span (True), or
                embed chunks independently (False); default: True where the provider's model
                offers late chunking (jina-embeddings-v3 and v4), else False (v5).
            chunker: A :class:`~jv3_integrations.core.Chunker` (default ``SentenceChunker()``).
            batch_size: About this many chunks per upsert (whole documents per batch; one
                document is never split across batches).

        Returns:
            The stored chunk ids of each document, in input order (``ids[d][j]`` is chunk
            ``j`` of ``documents[d]``).
        """
        late_chunking = self._resolve_late(late_chunking)
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
        return [[r.id for r in p.chunks] for p in plans]

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

    def write(self, records: Sequence[Record], vectors: npt.ArrayLike) -> None:
        """Upsert points embedded elsewhere: ``records[i]`` with ``vectors[i]``.

        Ids go through :func:`point_id` (a UUID stays itself), so writing the same records
        again overwrites them. The collection is created (or verified) first.

        Args:
            records: The points (id, text, metadata).
            vectors: One row of ``dimensions`` floats per record (unit length, as the
                provider returns them).

        Raises:
            InputTypeError, InputError: a bad record, a row count that differs, NaN.
            ConfigurationError: vectors of another size than the store's.
        """
        checked, array = self._plan_write(records, vectors)
        if checked:
            self.create()
            self._upsert(checked, *self._split(array))

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        keep_chunks: Mapping[str, int] | None = None,
    ) -> None:
        """Delete points by id, and/or the chunks documents no longer have.

        Args:
            ids: The ids :meth:`add_texts` / :meth:`add_documents` returned (or your own).
            keep_chunks: ``{document id: n}``: delete that document's chunks from index
                ``n`` on (a shorter new version written with :meth:`write`; ``0`` deletes
                them all).
        """
        keys = validate_texts(ids) if ids is not None else []
        keep = self._check_keep(keep_chunks)
        if not keys and not keep:
            return
        self.create()
        if keys:
            self._delete_ids([point_id(i) for i in keys])
        items = list(keep.items())
        for start in range(0, len(items), _KEEP_PER_CALL):
            self._delete_stale_chunks(dict(items[start : start + _KEEP_PER_CALL]))


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

    async def _close_client(self) -> None:
        """Close the client if the store opened it (a client you passed stays yours)."""

    async def aclose(self) -> None:
        """Async twin of :meth:`SyncStore.close` (``aclose``, as the providers and httpx)."""
        try:
            await self._close_client()
        finally:
            self._ready = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

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
        late_chunking: bool | None = None,
        chunker: Any = None,
        batch_size: int | None = None,
    ) -> list[list[str]]:
        """Async twin of :meth:`SyncStore.add_documents`."""
        late_chunking = self._resolve_late(late_chunking)
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
        return [[r.id for r in p.chunks] for p in plans]

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

    async def write(self, records: Sequence[Record], vectors: npt.ArrayLike) -> None:
        """Async twin of :meth:`SyncStore.write`."""
        checked, array = self._plan_write(records, vectors)
        if checked:
            await self.create()
            await self._upsert(checked, *self._split(array))

    async def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        keep_chunks: Mapping[str, int] | None = None,
    ) -> None:
        """Async twin of :meth:`SyncStore.delete`."""
        keys = validate_texts(ids) if ids is not None else []
        keep = self._check_keep(keep_chunks)
        if not keys and not keep:
            return
        await self.create()
        if keys:
            await self._delete_ids([point_id(i) for i in keys])
        items = list(keep.items())
        for start in range(0, len(items), _KEEP_PER_CALL):
            await self._delete_stale_chunks(dict(items[start : start + _KEEP_PER_CALL]))
