"""Pinecone adapter: :class:`PineconeStore` / :class:`AsyncPineconeStore` over pinecone SDK 10.

Creates a serverless index with the store's dimension and cosine metric (or verifies an
existing one), upserts passages in batches with their text in the metadata, queries with a
filter and namespace, deletes, and reads the vector count from the index stats.

Pinecone's data plane has no multi-vector query: :meth:`PineconeStore.search_many` makes one
embedding call and then one query per vector (:class:`AsyncPineconeStore` runs them
concurrently).

Hybrid (``hybrid=True``): sparse-dense records in a ``dotproduct`` index (Pinecone's
requirement for sparse values; our unit vectors make its dense part the cosine). The sparse
values are the same BM25-saturated term vectors of the model's tokenizer as Qdrant's
(:class:`~jv3_integrations.core._sparse.TermEncoder`). A hybrid query sends
``alpha * dense`` and ``(1 - alpha) * sparse`` (Pinecone's convex combination), so score =
``alpha * cosine + (1 - alpha) * keyword``; ``mode="keyword"`` sends the sparse vector alone.
Pinecone computes no IDF: keyword scores are sums of saturated term frequencies.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..core._errors import ConfigurationError, InputError, missing_extra
from ..core._provider import EmbeddingProvider
from ..core._sparse import TermEncoder, TermVector
from ._store import (
    TEXT_KEY,
    AsyncStore,
    Hit,
    Record,
    StoreCore,
    SyncStore,
    Vectors,
    simple_filter,
)

try:
    from pinecone import AsyncIndex, AsyncPinecone, Index, Pinecone, ServerlessSpec
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("pinecone", "pinecone") from exc

__all__ = ["MAX_METADATA_BYTES", "AsyncPineconeStore", "PineconeStore"]

#: Pinecone's limit on the metadata of one record.
MAX_METADATA_BYTES = 40 * 1024
#: Pinecone's limit on the non-zero entries of one sparse vector.
MAX_SPARSE_TERMS = 2048


def _metadata_error(i: int, key: str, value: object) -> InputError:
    return InputError(
        f"metadata key {key!r} of text {i} is {type(value).__name__}; Pinecone metadata values "
        "must be str, number, bool or a list of str"
    )


class _PineconeCommon(StoreCore):
    """Options, request building and response parsing (no I/O)."""

    #: The control-plane client class (``Pinecone`` / ``AsyncPinecone``) and the index handle
    #: class (``Index`` / ``AsyncIndex``) this store drives.
    _client_types: tuple[type[Any], type[Any]]
    _twin: str
    collection: str
    namespace: str
    alpha: float
    default_batch_size = 100

    def __init__(
        self,
        provider: EmbeddingProvider | str | None = None,
        *,
        client: Any = None,
        api_key: str | None = None,
        host: str | None = None,
        collection: str = "jv3",
        namespace: str = "",
        dimensions: int | None = None,
        cloud: str = "aws",
        region: str = "us-east-1",
        batch_size: int | None = None,
        progress_bar: bool = False,
        hybrid: bool = False,
        alpha: float = 0.5,
        term_encoder: TermEncoder | None = None,
    ) -> None:
        super().__init__(
            provider=provider,
            dimensions=dimensions,
            batch_size=batch_size,
            progress_bar=progress_bar,
            hybrid=hybrid,
        )
        self._init_pinecone(collection, namespace, cloud, region)
        self._init_alpha(alpha)
        self._init_terms(term_encoder)
        if client is not None and not isinstance(client, self._client_types):
            names = " or ".join(f"pinecone.{t.__name__}" for t in self._client_types)
            raise ConfigurationError(
                f"client must be a {names}, not {type(client).__name__} "
                f"(use {self._twin} for that client)"
            )
        if client is not None and (api_key is not None or host is not None):
            raise ConfigurationError(
                "api_key= and host= open the store's own client; give them or client=, not both"
            )
        for name, value in (("api_key", api_key), ("host", host)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{name} must be a non-empty str")
        self._client = client
        self._owns_client = client is None
        self._api_key = api_key  # given to the client only; never shown
        self.host = host
        self.index: Any = client if isinstance(client, self._client_types[1]) else None
        self._owns_index = self.index is None

    def _open(self) -> Any:
        """The store's own control-plane client (``api_key`` default: ``$PINECONE_API_KEY``)."""
        return self._client_types[0](api_key=self._api_key, host=self.host)

    def _init_pinecone(self, collection: str, namespace: str, cloud: str, region: str) -> None:
        if not isinstance(collection, str) or not collection:
            raise ConfigurationError("collection (the Pinecone index name) must be a non-empty str")
        if not isinstance(namespace, str):
            raise ConfigurationError("namespace must be a str ('' is the default namespace)")
        self.collection = collection
        self.namespace = namespace
        self.cloud = cloud
        self.region = region
        self._ready = False

    def _init_alpha(self, alpha: float) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ConfigurationError(f"alpha (the dense weight) must be in 0..1, got {alpha!r}")
        self.alpha = float(alpha)

    @property
    def metric(self) -> str:
        """The index metric: ``dotproduct`` for hybrid (sparse-dense) indexes, else cosine."""
        return "dotproduct" if self.hybrid else "cosine"

    def _spec(self) -> ServerlessSpec:
        return ServerlessSpec(cloud=self.cloud, region=self.region)

    def _verify(self, dimension: int | None, metric: str | None, tags: Any = None) -> None:
        if dimension != self.dimensions:
            raise ConfigurationError(
                f"Pinecone index {self.collection!r} has dimension {dimension}, but this store "
                f"embeds at {self.dimensions}; set dimensions={dimension} or use another index"
            )
        if metric is not None and str(metric).lower() != self.metric:
            why = (
                "hybrid=True needs dotproduct (sparse-dense)"
                if self.hybrid
                else "jina-embeddings-v3 needs cosine"
            )
            raise ConfigurationError(
                f"Pinecone index {self.collection!r} uses metric {metric}; {why}: use another index"
            )
        # How it was built: the index tags this store set when it created it (an Index handle
        # given without the control plane has no tags to read: only its dimension is checked).
        self._check_facts(dict(tags) if tags else None, f"Pinecone index {self.collection!r}")

    def _check_records(self, records: list[Record]) -> None:
        for i, r in enumerate(records):
            for key, value in r.metadata.items():
                if isinstance(value, list):
                    if not all(isinstance(v, str) for v in value):
                        raise _metadata_error(i, key, value)
                elif value is None or not isinstance(value, (str, int, float, bool)):
                    raise _metadata_error(i, key, value)
            size = len(json.dumps({TEXT_KEY: r.text, **r.metadata}).encode("utf-8"))
            if size > MAX_METADATA_BYTES:
                raise InputError(
                    f"text {i} with its metadata is {size} bytes; Pinecone allows "
                    f"{MAX_METADATA_BYTES} bytes of metadata per record (the text is stored "
                    "there): split it (add_documents chunks long documents)"
                )
        if self.term_encoder is not None:
            for i, terms in enumerate(
                self.term_encoder.encode_documents([r.text for r in records])
            ):
                if len(terms) > MAX_SPARSE_TERMS:
                    raise InputError(
                        f"text {i} has {len(terms)} distinct terms; Pinecone sparse vectors hold "
                        f"at most {MAX_SPARSE_TERMS}: split it (add_documents chunks long "
                        "documents)"
                    )

    def _vectors(self, records: list[Record], full: Vectors) -> list[dict[str, Any]]:
        out = [
            {"id": r.id, "values": full[i].tolist(), "metadata": {TEXT_KEY: r.text, **r.metadata}}
            for i, r in enumerate(records)
        ]
        if self.term_encoder is not None:
            terms = self.term_encoder.encode_documents([r.text for r in records])
            for vector, t in zip(out, terms, strict=True):
                if t.indices:  # Pinecone rejects an empty sparse vector
                    vector["sparse_values"] = {"indices": t.indices, "values": t.values}
        return out

    def _queries(
        self, queries: list[str], full: Vectors | None, k: int, filter: Any
    ) -> list[dict[str, Any] | None]:
        """``index.query`` arguments per query (None: nothing to search, no keyword term)."""
        assert self.term_encoder is not None  # hybrid stores always have one
        flt = self._filter(filter)
        weight = 1.0 if full is None else 1.0 - self.alpha
        out: list[dict[str, Any] | None] = []
        terms: list[TermVector] = self.term_encoder.encode_queries(queries)
        for i, t in enumerate(terms):
            args: dict[str, Any] = {
                "top_k": k,
                "filter": flt,
                "namespace": self.namespace,
                "include_metadata": True,
            }
            if full is not None:
                args["vector"] = (full[i] * self.alpha).tolist()
            if t.indices and weight > 0:
                args["sparse_vector"] = {
                    "indices": t.indices,
                    "values": [v * weight for v in t.values],
                }
            out.append(args if "vector" in args or "sparse_vector" in args else None)
        return out

    @staticmethod
    def _filter(filter: Any) -> dict[str, Any] | None:
        if filter is None:
            return None
        if not isinstance(filter, dict):
            raise ConfigurationError("filter must be a Pinecone metadata filter (a dict)")
        simple = simple_filter(filter)
        if simple is None:
            return filter
        return {
            k: {"$in": list(v)} if isinstance(v, (list, tuple)) else {"$eq": v}
            for k, v in simple.items()
        }

    @staticmethod
    def _stale_filter(counts: dict[str, int]) -> dict[str, Any]:
        return {
            "$or": [
                {"doc_id": {"$eq": doc_id}, "chunk_index": {"$gte": n}}
                for doc_id, n in counts.items()
            ]
        }

    @staticmethod
    def _hits(response: Any) -> list[Hit]:
        hits = []
        for m in response.matches:
            metadata = dict(m.metadata or {})
            text = metadata.pop(TEXT_KEY, "")
            hits.append(Hit(str(m.id), float(m.score), str(text), metadata))
        return hits

    def _count(self, stats: Any) -> int:
        summary = (stats.namespaces or {}).get(self.namespace)
        return int(summary.vector_count) if summary is not None else 0


class PineconeStore(_PineconeCommon, SyncStore):
    """jina-embeddings-v3 retrieval on a Pinecone serverless index.

    Args:
        provider: An :class:`EmbeddingProvider` or a ``load_provider`` spec.
        client: Your ``Pinecone(...)`` client (the store creates or verifies the index, then
            talks to its host), or an ``Index`` handle (verified via its stats). Default:
            the store's own ``Pinecone(api_key=api_key, host=host)``, opened on first use and
            closed by :meth:`close` (or ``with``).
        api_key: The Pinecone key (default: ``$PINECONE_API_KEY``, as ``Pinecone()`` reads it).
        host: A non-default control-plane endpoint (``Pinecone(host=...)``).
        collection: Index name.
        namespace: Namespace for every read and write ('' = default).
        dimensions: Vector size (default: the provider's).
        cloud, region: Where ``create`` puts a new serverless index.
        hybrid: Sparse-dense records (a dotproduct index) and ``mode="hybrid"`` (default) or
            ``"keyword"`` search; see the module docstring.
        alpha: Hybrid: the dense weight (the sparse one is ``1 - alpha``).
        term_encoder: Hybrid: a :class:`TermEncoder` with your own BM25 parameters.
        batch_size: Passages per embedding call and upsert.
        progress_bar: Show a progress bar while indexing.

    Example:
        >>> from pinecone import Pinecone
        >>> from jv3_integrations.pinecone import PineconeStore
        >>> store = PineconeStore("api", client=Pinecone(), collection="docs")  # doctest: +SKIP
        >>> store.add_texts(["Berlin is the capital of Germany."])  # doctest: +SKIP
        >>> store.search("capital of Germany", k=1, filter={"lang": "en"})  # doctest: +SKIP
    """

    _client_types = (Pinecone, Index)
    _twin = "AsyncPineconeStore"
    index: Index | None

    @property
    def client(self) -> Pinecone | Index:
        """Your client, or the store's own ``Pinecone`` (opened on first use)."""
        if self._client is None:
            self._client = self._open()
        client: Pinecone | Index = self._client
        return client

    def _close_client(self) -> None:
        index, client = self.index, self._client
        if self._owns_index:
            self.index = None
        if self._owns_index and index is not None:
            index.close()
        if self._owns_client and client is not None:
            self._client = None
            client.close()

    def create(self) -> None:
        """Create the serverless index (cosine), or verify an existing one's dimension/metric.

        Raises:
            ConfigurationError: the existing index has another dimension or metric.
        """
        if self._ready:
            return
        self._load_terms()
        if isinstance(self.client, Pinecone):
            if self.client.has_index(self.collection):
                model = self.client.describe_index(self.collection)
                self._verify(model.dimension, model.metric, model.tags)
            else:
                model = self.client.create_index(
                    self.collection,
                    dimension=self.dimensions,
                    metric=self.metric,
                    spec=self._spec(),
                    tags=self.store_facts(),
                )
            self.index = self.client.Index(host=str(model.host))  # type: ignore[assignment]
        else:
            stats = self.client.describe_index_stats()
            self._verify(stats.dimension, getattr(stats, "metric", None))
        self._ready = True

    def _idx(self) -> Index:
        if self.index is None:
            raise ConfigurationError("call create() first")  # unreachable: create() sets it
        return self.index

    def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None:
        self._idx().upsert(
            vectors=self._vectors(records, full), namespace=self.namespace, show_progress=False
        )

    def _delete_ids(self, ids: list[str]) -> None:
        self._idx().delete(ids=ids, namespace=self.namespace)

    def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        self._idx().delete(filter=self._stale_filter(counts), namespace=self.namespace)

    def _search(self, full: Vectors, small: Vectors | None, k: int, filter: Any) -> list[list[Hit]]:
        flt = self._filter(filter)
        index = self._idx()
        return [
            self._hits(
                index.query(
                    vector=full[i].tolist(),
                    top_k=k,
                    filter=flt,
                    namespace=self.namespace,
                    include_metadata=True,
                )
            )
            for i in range(full.shape[0])
        ]

    def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        index = self._idx()
        return [
            self._hits(index.query(**args)) if args is not None else []
            for args in self._queries(queries, full, k, filter)
        ]

    def count(self) -> int:
        """Number of vectors in this store's namespace."""
        self.create()
        return self._count(self._idx().describe_index_stats())

    def stats(self) -> dict[str, Any]:
        """The index stats: ``dimension``, ``metric``, ``total`` and per-namespace counts."""
        self.create()
        return _stats(self._idx().describe_index_stats())


class AsyncPineconeStore(_PineconeCommon, AsyncStore):
    """:class:`PineconeStore` for asyncio, over ``AsyncPinecone`` or an ``AsyncIndex``.

    ``search_many`` runs its per-vector queries concurrently. A client you pass is yours to
    close; the store's own (``api_key=``) and the index handle it opens close with
    ``await store.aclose()`` or ``async with store:``.
    """

    _client_types = (AsyncPinecone, AsyncIndex)
    _twin = "PineconeStore"
    index: AsyncIndex | None

    @property
    def client(self) -> AsyncPinecone | AsyncIndex:
        """Your client, or the store's own ``AsyncPinecone`` (opened on first use)."""
        if self._client is None:
            self._client = self._open()
        client: AsyncPinecone | AsyncIndex = self._client
        return client

    async def _close_client(self) -> None:
        index, client = self.index, self._client
        if self._owns_index:
            self.index = None
        if self._owns_index and index is not None:
            await index.close()
        if self._owns_client and client is not None:
            self._client = None
            await client.close()

    async def create(self) -> None:
        """Async twin of :meth:`PineconeStore.create`."""
        if self._ready:
            return
        self._load_terms()
        if isinstance(self.client, AsyncPinecone):
            if await self.client.has_index(self.collection):
                model = await self.client.describe_index(self.collection)
                self._verify(model.dimension, model.metric, model.tags)
            else:
                model = await self.client.create_index(
                    self.collection,
                    dimension=self.dimensions,
                    metric=self.metric,
                    spec=self._spec(),
                    tags=self.store_facts(),
                )
            self.index = self.client.IndexAsyncio(host=str(model.host))
        else:
            stats = await self.client.describe_index_stats()
            self._verify(stats.dimension, getattr(stats, "metric", None))
        self._ready = True

    def _idx(self) -> AsyncIndex:
        if self.index is None:
            raise ConfigurationError("call create() first")  # unreachable: create() sets it
        return self.index

    async def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None:
        await self._idx().upsert(
            vectors=self._vectors(records, full), namespace=self.namespace, show_progress=False
        )

    async def _delete_ids(self, ids: list[str]) -> None:
        await self._idx().delete(ids=ids, namespace=self.namespace)

    async def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        await self._idx().delete(filter=self._stale_filter(counts), namespace=self.namespace)

    async def _search(
        self, full: Vectors, small: Vectors | None, k: int, filter: Any
    ) -> list[list[Hit]]:
        flt = self._filter(filter)
        index = self._idx()
        responses = await asyncio.gather(
            *(
                index.query(
                    vector=full[i].tolist(),
                    top_k=k,
                    filter=flt,
                    namespace=self.namespace,
                    include_metadata=True,
                )
                for i in range(full.shape[0])
            )
        )
        return [self._hits(r) for r in responses]

    async def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        index = self._idx()
        plans = self._queries(queries, full, k, filter)
        responses = await asyncio.gather(
            *(index.query(**args) for args in plans if args is not None)
        )
        it = iter(responses)
        return [self._hits(next(it)) if args is not None else [] for args in plans]

    async def count(self) -> int:
        """Async twin of :meth:`PineconeStore.count`."""
        await self.create()
        return self._count(await self._idx().describe_index_stats())

    async def stats(self) -> dict[str, Any]:
        """Async twin of :meth:`PineconeStore.stats`."""
        await self.create()
        return _stats(await self._idx().describe_index_stats())


def _stats(s: Any) -> dict[str, Any]:
    """The index stats: ``dimension``, ``metric``, ``total`` and per-namespace counts."""
    return {
        "dimension": s.dimension,
        "metric": getattr(s, "metric", None),
        "total": s.total_vector_count,
        "namespaces": {n: v.vector_count for n, v in (s.namespaces or {}).items()},
    }
