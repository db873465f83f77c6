"""Milvus adapter: :class:`MilvusStore` / :class:`AsyncMilvusStore` and an embedding function.

:class:`JinaV3EmbeddingFunction` is a drop-in for pymilvus-model's ``JinaEmbeddingFunction``
(``encode_documents``, ``encode_queries``, ``__call__``, ``dim``; ``api_key``, ``task``,
``late_chunking``), a ``BaseEmbeddingFunction`` when pymilvus-model is installed (imported only
when the name is first used), without depending on it; ``dim`` comes from configuration, never
from a network call.

:class:`MilvusStore` works on a ``MilvusClient`` (default: a Milvus Lite file ``./jv3.db``).
Collection schema: ``id`` (VARCHAR primary key), ``text`` (VARCHAR), ``metadata`` (JSON) and
``vector`` (FLOAT_VECTOR, COSINE index) or, in funnel mode (``small_dimensions``), ``small`` and
``full`` vector fields: a query searches ``small`` for ``k * funnel_factor`` candidates, then
rescores them exactly with their ``full`` vectors. Searches are batched (one call for many
queries): Milvus Lite's per-call overhead is large.

Hybrid (``hybrid=True``): the ``text`` field gets an analyzer (``analyzer_params``; default the
multilingual ``standard`` tokenizer, lowercased) and Milvus' built-in BM25 function fills a
``sparse`` SPARSE_FLOAT_VECTOR field from it (BM25 index), so Milvus does all the keyword work
itself, on the very text of each (late-)chunked point. ``mode="hybrid"`` runs
``hybrid_search`` over the dense and the BM25 field (``k * funnel_factor`` candidates each)
with ``RRFRanker(rrf_k)``: score = sum of 1 / (rrf_k + rank), rank from 1. Not combinable with
funnel mode. Milvus Lite reports BM25 distances negated; keyword hits carry the BM25 score.

Async: ``AsyncMilvusClient`` reads and writes Milvus Lite collections fine, but Milvus Lite
does not implement what its ``create_collection`` waits on (index creation fails with
UNIMPLEMENTED). Create the collection once with :meth:`MilvusStore.create` (or on a Milvus
server), then use :class:`AsyncMilvusStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigurationError, missing_extra
from ._store import TEXT_KEY, AsyncStore, Hit, Record, SyncStore, Vectors

try:
    from pymilvus import AsyncMilvusClient, MilvusClient
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("milvus", "pymilvus") from exc

from ._milvus_common import BM25_FUNCTION as BM25_FUNCTION
from ._milvus_common import DEFAULT_ANALYZER as DEFAULT_ANALYZER
from ._milvus_common import FULL, SMALL, VECTOR, _MilvusCommon
from ._milvus_common import SPARSE as SPARSE
from .milvus_embedding import embedding_function_class

__all__ = ["AsyncMilvusStore", "JinaV3EmbeddingFunction", "MilvusStore", "embedding_function_class"]

if TYPE_CHECKING:
    from .milvus_embedding import JinaV3EmbeddingFunction
else:

    def __getattr__(name: str) -> Any:
        if name == "JinaV3EmbeddingFunction":
            return embedding_function_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MilvusStore(_MilvusCommon, SyncStore):
    """jina-embeddings-v3 retrieval on a Milvus collection (Milvus Lite by default).

    Args:
        provider: An :class:`EmbeddingProvider` or a ``load_provider`` spec.
        client: Your ``MilvusClient`` (yours to close). Default: the store opens
            ``MilvusClient(uri, token=token)`` on first use, and :meth:`close` closes it.
        uri: Used only when ``client`` is omitted: a Milvus Lite file (its parent folder is
            created; one process at a time) or a server URI (``http://host:19530``, Zilliz
            Cloud), as ``MilvusClient`` takes it.
        token: With a server ``uri``: its token (``"user:password"`` or a Zilliz API key).
        collection: Collection name.
        dimensions: Vector size (default: the provider's).
        small_dimensions: Funnel search: a ``small`` field of this size next to ``full``.
        funnel_factor: Funnel mode: candidates fetched on ``small`` per hit.
        index_type: Milvus index type of the vector fields (metric is always COSINE).
            Default ``"FLAT"``: exact search (brute force), right for the sizes a Milvus Lite
            file holds. ``"AUTOINDEX"`` or ``"HNSW"`` are approximate (Milvus Lite builds an
            HNSW graph with faiss-cpu) and miss some true top hits; use them only on a large
            collection on a Milvus server, where exact search costs too much.
        hybrid: Add Milvus' BM25 function on ``text`` and search with ``mode="hybrid"``
            (default) or ``"keyword"``; see the module docstring.
        analyzer_params: Hybrid: the Milvus analyzer of ``text`` (default
            :data:`DEFAULT_ANALYZER`; e.g. ``{"tokenizer": "jieba"}`` for Chinese).
        rrf_k: Hybrid: the constant of ``RRFRanker``.
        batch_size: Passages per embedding call and upsert.
        progress_bar: Show a progress bar while indexing.

    Example:
        >>> from jv3_integrations.milvus import MilvusStore
        >>> store = MilvusStore("local:./tiny-v3", uri="./data/jv3.db")  # doctest: +SKIP
        >>> store.add_texts(["Berlin is the capital of Germany."])  # doctest: +SKIP
        >>> store.search("capital of Germany", k=1)  # doctest: +SKIP
    """

    default_batch_size = 256

    _client_type = MilvusClient
    _twin = "AsyncMilvusStore"
    _client: MilvusClient | None

    @property
    def client(self) -> MilvusClient:
        """The ``MilvusClient``; the store's own (Milvus Lite starts) opens on first use."""
        if self._client is None:
            self._client = self._open()
        return self._client

    def _close_client(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            client.close()

    def create(self) -> None:
        """Create the collection, or verify fields, dimensions and COSINE metric of an existing one.

        Raises:
            ConfigurationError: the existing collection does not match this store.
        """
        if self._ready:
            return
        if self.client.has_collection(self.collection):
            description = self.client.describe_collection(self.collection)
            indexes = {
                name: self.client.describe_index(self.collection, name)
                for name in self.client.list_indexes(self.collection)
            }
            self._verify(description, indexes)
            self.client.load_collection(self.collection)
        else:
            self.client.create_collection(
                self.collection,
                schema=self._schema(),
                index_params=self._index_params(),
                properties=self.store_facts(),
            )
        self._ready = True

    def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None:
        self.client.upsert(self.collection, self._rows(records, full, small))

    def _delete_ids(self, ids: list[str]) -> None:
        self.client.delete(self.collection, ids=ids)

    def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        self.client.delete(self.collection, filter=self._stale_filter(counts))

    def _search(self, full: Vectors, small: Vectors | None, k: int, filter: Any) -> list[list[Hit]]:
        if small is None:
            return self._hits(self.client.search(**self._search_args(full, k, filter, VECTOR)))
        first = self.client.search(
            **self._search_args(small, k * self.funnel_factor, filter, SMALL)
        )
        candidates = self._candidates(first)
        union = sorted({i for row in candidates for i in row})
        rows = (
            self.client.query(
                self.collection, ids=union, output_fields=[TEXT_KEY, "metadata", FULL]
            )
            if union
            else []
        )
        return self._funnel(candidates, list(rows), full, k)

    def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        if full is None:
            return self._hits(
                self.client.search(**self._keyword_args(queries, k, filter)), bm25=True
            )
        return self._hits(self.client.hybrid_search(**self._hybrid_args(queries, full, k, filter)))

    def count(self) -> int:
        """Number of entities in the collection (0 if it does not exist yet)."""
        if not self.client.has_collection(self.collection):
            return 0
        return self._count(
            self.client.query(self.collection, filter="", output_fields=["count(*)"])
        )


class AsyncMilvusStore(_MilvusCommon, AsyncStore):
    """:class:`MilvusStore` for asyncio, over an ``AsyncMilvusClient`` (same arguments:
    ``client=`` or ``uri=``, the default client opening on first use).

    On Milvus Lite, create the collection first with :meth:`MilvusStore.create` (Lite does not
    implement what the async ``create_collection`` waits on); verifying, writing and searching
    then work asynchronously.
    """

    default_batch_size = 256

    _client_type = AsyncMilvusClient
    _twin = "MilvusStore"
    _client: AsyncMilvusClient | None

    @property
    def client(self) -> AsyncMilvusClient:
        """The ``AsyncMilvusClient``; the store's own (``uri``) opens on first use."""
        if self._client is None:
            self._client = self._open()
        return self._client

    async def _close_client(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def create(self) -> None:
        """Async twin of :meth:`MilvusStore.create` (see the class note on Milvus Lite).

        Raises:
            ConfigurationError: the existing collection does not match this store, or the
                server cannot create it asynchronously (Milvus Lite).
        """
        if self._ready:
            return
        if await self.client.has_collection(self.collection):
            description = await self.client.describe_collection(self.collection)
            indexes = {
                name: await self.client.describe_index(self.collection, name)
                for name in await self.client.list_indexes(self.collection)
            }
            self._verify(description, indexes)
            await self.client.load_collection(self.collection)
        else:
            try:
                await self.client.create_collection(
                    self.collection,
                    schema=self._schema(),
                    index_params=self._index_params(),
                    properties=self.store_facts(),
                )
            except Exception as exc:
                if "UNIMPLEMENTED" not in str(exc) and "not implemented" not in str(exc):
                    raise
                raise ConfigurationError(
                    f"this Milvus server (Milvus Lite?) cannot create collection "
                    f"{self.collection!r} asynchronously; create it once with "
                    "MilvusStore(...).create() on the same URI, then use AsyncMilvusStore"
                ) from exc
        self._ready = True

    async def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None:
        await self.client.upsert(self.collection, self._rows(records, full, small))

    async def _delete_ids(self, ids: list[str]) -> None:
        await self.client.delete(self.collection, ids=ids)

    async def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        await self.client.delete(self.collection, filter=self._stale_filter(counts))

    async def _search(
        self, full: Vectors, small: Vectors | None, k: int, filter: Any
    ) -> list[list[Hit]]:
        if small is None:
            return self._hits(
                await self.client.search(**self._search_args(full, k, filter, VECTOR))
            )
        args = self._search_args(small, k * self.funnel_factor, filter, SMALL)
        candidates = self._candidates(await self.client.search(**args))
        union = sorted({i for row in candidates for i in row})
        rows = (
            await self.client.query(
                self.collection, ids=union, output_fields=[TEXT_KEY, "metadata", FULL]
            )
            if union
            else []
        )
        return self._funnel(candidates, list(rows), full, k)

    async def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        if full is None:
            result = await self.client.search(**self._keyword_args(queries, k, filter))
            return self._hits(result, bm25=True)
        args = self._hybrid_args(queries, full, k, filter)
        return self._hits(await self.client.hybrid_search(**args))

    async def count(self) -> int:
        """Async twin of :meth:`MilvusStore.count`."""
        if not await self.client.has_collection(self.collection):
            return 0
        result = await self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return self._count(result)
