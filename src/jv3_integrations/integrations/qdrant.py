"""Qdrant adapter: :class:`QdrantStore` / :class:`AsyncQdrantStore` over qdrant-client.

Passages are embedded with ``retrieval.passage`` and queries with ``retrieval.query`` at the
store's ``dimensions``; everything else is the user's own ``QdrantClient``. Options:

* ``small_dimensions``: Matryoshka two-stage search. The collection holds a ``small`` named
  vector (HNSW-indexed) and a ``full`` one (``HnswConfigDiff(m=0)``: used only to rescore);
  a query prefetches candidates on ``small`` and rescores them on ``full``. One embedding call
  yields both vectors (the small one is the full one truncated and renormalized).
* ``binary_quantization``: ``BinaryQuantization`` with rescoring and oversampling at search.
* ``hybrid``: a sparse ``bm25`` vector per point next to the dense one(s), with
  ``Modifier.IDF`` so Qdrant computes the IDF itself; its terms are the model tokenizer's pieces
  with BM25-saturated term frequencies (:class:`~jv3_integrations.core._sparse.TermEncoder`).
  ``mode="hybrid"`` prefetches ``k * prefetch_factor`` candidates on each side (the dense side
  two-stage and quantized as configured) and fuses them server-side with reciprocal rank
  fusion (``FusionQuery(fusion=Fusion.RRF)``: score = sum of 1 / (rank + 2) with Qdrant's
  constant, rank from 0). Local mode runs IDF and RRF too.

Local mode (``:memory:`` / ``path=``) is exact brute force and ignores HNSW and quantization;
the same collection on a Qdrant server (``url=``) or in Qdrant Edge runs them for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core._errors import ConfigurationError, missing_extra
from ..core._provider import EmbeddingProvider
from ..core._sparse import TermEncoder, TermVector
from ._store import (
    TEXT_KEY,
    AsyncStore,
    Hit,
    Record,
    StoreCore,
    StoreTraits,
    SyncStore,
    Vectors,
    simple_filter,
)

try:
    from qdrant_client import AsyncQdrantClient, QdrantClient, models
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("qdrant", "qdrant-client") from exc

__all__ = ["AsyncQdrantStore", "QdrantStore"]

FULL = "full"
SMALL = "small"
#: Name of the sparse (keyword) vector of hybrid collections.
SPARSE = "bm25"


class _QdrantCommon(StoreCore):
    """Options, collection layout, request building and response parsing (no I/O)."""

    #: The client class this store drives (``QdrantClient`` or ``AsyncQdrantClient``).
    _client_type: type[Any]
    _twin: str

    def __init__(
        self,
        provider: EmbeddingProvider | str | None = None,
        *,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        collection: str = "jv3",
        dimensions: int | None = None,
        small_dimensions: int | None = None,
        prefetch_factor: int = 4,
        binary_quantization: bool = False,
        oversampling: float = 2.0,
        exact: bool = False,
        batch_size: int | None = None,
        progress_bar: bool = False,
        hybrid: bool = False,
        term_encoder: TermEncoder | None = None,
    ) -> None:
        super().__init__(
            provider=provider,
            dimensions=dimensions,
            small_dimensions=small_dimensions,
            batch_size=batch_size,
            progress_bar=progress_bar,
            hybrid=hybrid,
        )
        self._init_qdrant(collection, binary_quantization, oversampling, prefetch_factor, exact)
        self._init_terms(term_encoder)
        if client is not None and not isinstance(client, self._client_type):
            raise ConfigurationError(
                f"client must be a {self._client_type.__name__}, not {type(client).__name__} "
                f"(use {self._twin} for that client)"
            )
        given = [n for n, v in (("client", client), ("url", url), ("path", path)) if v]
        if len(given) > 1:
            raise ConfigurationError(
                f"give one of client=, url= and path=, not {' and '.join(given)}"
            )
        if api_key is not None and url is None:
            raise ConfigurationError("api_key goes with url= (a Qdrant server or Qdrant Cloud)")
        for name, value in (("url", url), ("path", path), ("api_key", api_key)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{name} must be a non-empty str")
        self._client = client
        self._owns_client = client is None
        self.url = url
        self.path = path
        self._api_key = api_key  # given to the client only; never shown

    @property
    def traits(self) -> StoreTraits:
        """A Qdrant server is written by many processes; a local folder or ``:memory:`` by one."""
        if self._client is not None and not self._owns_client:
            opts = getattr(self._client, "init_options", {}) or {}
            memory = opts.get("location") == ":memory:"
            return StoreTraits(
                multi_process=not (opts.get("path") or memory), persistent=not memory
            )
        if self.url:
            return StoreTraits(multi_process=True)
        return StoreTraits(multi_process=False, persistent=bool(self.path))

    def _open(self) -> Any:
        """A new client for ``url`` / ``path`` / ``:memory:``, errors said in our words."""
        if self.url:
            return self._client_type(url=self.url, api_key=self._api_key)
        if not self.path:
            return self._client_type(":memory:")
        folder = Path(self.path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise ConfigurationError(
                f"{self.path} is a file, but Qdrant local mode keeps its index in a folder: "
                "give a folder path, or use Milvus Lite for a one-file index"
            )
        try:
            return self._client_type(path=str(folder))
        except RuntimeError as exc:
            if "already accessed" not in str(exc):
                raise
            raise ConfigurationError(
                f"the Qdrant folder {self.path} is open in another process (local mode allows "
                "one at a time); wait for it to finish, or use a Qdrant server (url=)"
            ) from None

    def _init_qdrant(
        self,
        collection: str,
        binary_quantization: bool,
        oversampling: float,
        prefetch_factor: int,
        exact: bool,
    ) -> None:
        if not isinstance(collection, str) or not collection:
            raise ConfigurationError("collection must be a non-empty str")
        if oversampling < 1.0:
            raise ConfigurationError(f"oversampling must be >= 1.0, got {oversampling}")
        if isinstance(prefetch_factor, bool) or prefetch_factor < 1:
            raise ConfigurationError(f"prefetch_factor must be >= 1, got {prefetch_factor}")
        self.collection = collection
        self.binary_quantization = bool(binary_quantization)
        self.oversampling = float(oversampling)
        self.prefetch_factor = int(prefetch_factor)
        self.exact = bool(exact)
        self._ready = False

    def collection_config(self) -> dict[str, Any]:
        """Keyword arguments of ``create_collection`` for this store's layout."""
        cosine = models.Distance.COSINE
        vectors: models.VectorParams | dict[str, models.VectorParams]
        if self.small_dimensions is None:
            vectors = models.VectorParams(size=self.dimensions, distance=cosine)
        else:
            vectors = {
                SMALL: models.VectorParams(size=self.small_dimensions, distance=cosine),
                FULL: models.VectorParams(
                    size=self.dimensions,
                    distance=cosine,
                    hnsw_config=models.HnswConfigDiff(m=0),
                ),
            }
        config: dict[str, Any] = {"vectors_config": vectors, "metadata": self.store_facts()}
        if self.hybrid:
            config["sparse_vectors_config"] = {
                SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
            }
        if self.binary_quantization:
            config["quantization_config"] = models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(always_ram=True)
            )
        return config

    def _extra_facts(self) -> dict[str, str]:
        return {"jv3_quantization": "binary" if self.binary_quantization else "none"}

    def _verify(self, info: models.CollectionInfo) -> None:
        vectors = info.config.params.vectors
        expected: dict[str, int] = (
            {"": self.dimensions}
            if self.small_dimensions is None
            else {SMALL: self.small_dimensions, FULL: self.dimensions}
        )
        if isinstance(vectors, models.VectorParams):
            found = {"": vectors}
        elif isinstance(vectors, dict):
            found = dict(vectors)
        else:
            found = {}
        if set(found) != set(expected):
            layout = "one unnamed vector" if "" in expected else f"vectors {sorted(expected)}"
            raise ConfigurationError(
                f"Qdrant collection {self.collection!r} has vectors {sorted(found)} but this "
                f"store expects {layout}; use another collection or match small_dimensions"
            )
        for name, size in expected.items():
            params = found[name]
            label = f"vector {name!r} of " if name else ""
            if params.size != size:
                raise ConfigurationError(
                    f"{label}Qdrant collection {self.collection!r} has dimension {params.size}, "
                    f"but this store embeds at {size}; set dimensions={params.size} or use "
                    "another collection"
                )
            if params.distance != models.Distance.COSINE:
                raise ConfigurationError(
                    f"{label}Qdrant collection {self.collection!r} uses {params.distance.value} "
                    "distance; jina-embeddings-v3 needs Cosine: use another collection"
                )
        sparse = dict(info.config.params.sparse_vectors or {})
        if self.hybrid and SPARSE not in sparse:
            raise ConfigurationError(
                f"Qdrant collection {self.collection!r} has no sparse {SPARSE!r} vector (it was "
                "created without hybrid=True); use another collection for hybrid search"
            )
        if self.hybrid and sparse[SPARSE].modifier != models.Modifier.IDF:
            raise ConfigurationError(
                f"sparse vector {SPARSE!r} of Qdrant collection {self.collection!r} has no IDF "
                "modifier, so its keyword scores would not be BM25; use another collection"
            )
        if not self.hybrid and SPARSE in sparse:
            raise ConfigurationError(
                f"Qdrant collection {self.collection!r} was created with hybrid=True; open it "
                "with hybrid=True too, so new points get their keyword vectors"
            )
        # How it was built (collection metadata; a collection without it is not checked).
        self._check_facts(info.config.metadata, f"Qdrant collection {self.collection!r}")

    def _points(
        self, records: list[Record], full: Vectors, small: Vectors | None
    ) -> list[models.PointStruct]:
        points = []
        terms = self._terms([r.text for r in records], query=False)
        for i, r in enumerate(records):
            vector: Any
            if small is None:
                vector = full[i].tolist()
            else:
                vector = {FULL: full[i].tolist(), SMALL: small[i].tolist()}
            if terms is not None:
                vector = vector if isinstance(vector, dict) else {"": vector}
                vector[SPARSE] = terms[i]
            points.append(
                models.PointStruct(id=r.id, vector=vector, payload={TEXT_KEY: r.text, **r.metadata})
            )
        return points

    @staticmethod
    def _filter(filter: Any) -> models.Filter | None:
        if filter is None or isinstance(filter, models.Filter):
            return filter
        simple = simple_filter(filter)
        if simple is None:
            raise ConfigurationError(
                "filter must be a qdrant_client.models.Filter or a dict {key: value}"
            )
        must: list[models.Condition] = []
        for key, value in simple.items():
            match: models.MatchValue | models.MatchAny
            if isinstance(value, (list, tuple)):
                match = models.MatchAny(any=list(value))
            else:
                match = models.MatchValue(value=value)
            must.append(models.FieldCondition(key=key, match=match))
        return models.Filter(must=must)

    def _requests(
        self, full: Vectors, small: Vectors | None, k: int, filter: Any
    ) -> list[models.QueryRequest]:
        flt = self._filter(filter)
        params = self._params()
        requests = []
        for i in range(full.shape[0]):
            if small is None:
                req = models.QueryRequest(
                    query=full[i].tolist(),
                    filter=flt,
                    params=params,
                    limit=k,
                    with_payload=True,
                )
            else:
                req = models.QueryRequest(
                    prefetch=models.Prefetch(
                        query=small[i].tolist(),
                        using=SMALL,
                        filter=flt,
                        params=params,
                        limit=k * self.prefetch_factor,
                    ),
                    query=full[i].tolist(),
                    using=FULL,
                    limit=k,
                    with_payload=True,
                )
            requests.append(req)
        return requests

    def _terms(self, texts: list[str], *, query: bool) -> list[models.SparseVector] | None:
        if self.term_encoder is None:
            return None
        enc = self.term_encoder
        vectors: list[TermVector] = (
            enc.encode_queries(texts) if query else enc.encode_documents(texts)
        )
        return [models.SparseVector(indices=v.indices, values=v.values) for v in vectors]

    def _hybrid_requests(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
    ) -> list[models.QueryRequest]:
        """Keyword-only requests (``full is None``) or dense + keyword fused with RRF."""
        flt = self._filter(filter)
        terms = self._terms(queries, query=True)
        assert terms is not None  # hybrid stores always have a term encoder
        if full is None:
            return [
                models.QueryRequest(query=t, using=SPARSE, filter=flt, limit=k, with_payload=True)
                for t in terms
            ]
        params = self._params()
        n = k * self.prefetch_factor
        requests = []
        for i, t in enumerate(terms):
            dense: models.Prefetch
            if small is None:
                dense = models.Prefetch(query=full[i].tolist(), filter=flt, params=params, limit=n)
            else:
                dense = models.Prefetch(
                    prefetch=models.Prefetch(
                        query=small[i].tolist(), using=SMALL, filter=flt, params=params, limit=n
                    ),
                    query=full[i].tolist(),
                    using=FULL,
                    limit=n,
                )
            keyword = models.Prefetch(query=t, using=SPARSE, filter=flt, limit=n)
            requests.append(
                models.QueryRequest(
                    prefetch=[dense, keyword],
                    query=models.FusionQuery(fusion=models.Fusion.RRF),
                    limit=k,
                    with_payload=True,
                )
            )
        return requests

    def _params(self) -> models.SearchParams:
        if not self.binary_quantization:
            return models.SearchParams(exact=self.exact)
        return models.SearchParams(
            exact=self.exact,
            quantization=models.QuantizationSearchParams(
                rescore=True, oversampling=self.oversampling
            ),
        )

    @staticmethod
    def _hits(responses: list[models.QueryResponse]) -> list[list[Hit]]:
        out = []
        for resp in responses:
            hits = []
            for p in resp.points:
                payload = dict(p.payload or {})
                text = payload.pop(TEXT_KEY, "")
                hits.append(Hit(str(p.id), float(p.score), str(text), payload))
            out.append(hits)
        return out

    def _ids_selector(self, ids: list[str]) -> models.PointIdsList:
        return models.PointIdsList(points=list(ids))

    @staticmethod
    def _stale_selector(counts: dict[str, int]) -> models.FilterSelector:
        should: list[models.Condition] = [
            models.Filter(
                must=[
                    models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
                    models.FieldCondition(key="chunk_index", range=models.Range(gte=n)),
                ]
            )
            for doc_id, n in counts.items()
        ]
        return models.FilterSelector(filter=models.Filter(should=should))


class QdrantStore(_QdrantCommon, SyncStore):
    """jina-embeddings-v3 retrieval on a Qdrant collection.

    Args:
        provider: An :class:`EmbeddingProvider` or a ``load_provider`` spec
            (default: ``load_provider()``).
        client: Your ``QdrantClient`` (yours to close). Default: the store opens its own on
            first use from ``url`` (a server), else ``path`` (local mode), else ``:memory:``,
            and :meth:`close` (or ``with``) closes it.
        url: A Qdrant server or Qdrant Cloud, as ``QdrantClient(url=...)`` takes it.
        api_key: With ``url``: the server's key (e.g. ``os.environ["QDRANT_API_KEY"]``).
        path: A local-mode folder (one process at a time).
        collection: Collection name.
        dimensions: Vector size (default: the provider's ``dimensions``).
        small_dimensions: Enable Matryoshka two-stage search with a ``small`` vector of this
            size next to ``full`` (e.g. 256).
        prefetch_factor: Two-stage mode: candidates prefetched per hit (``k * factor``).
        binary_quantization: Create the collection with binary quantization; searches
            rescore with the original vectors, oversampling by ``oversampling``.
        exact: Search exactly (no HNSW); for tests and small collections.
        hybrid: Also index keyword (BM25) vectors and search with ``mode="hybrid"`` (default)
            or ``"keyword"``; see the module docstring.
        term_encoder: Hybrid: a :class:`TermEncoder` with your own BM25 parameters (default:
            ``TermEncoder(provider=provider)``: the model's tokenizer, k1=1.2, b=0.75,
            avgdl=256).
        batch_size: Passages per embedding call and upsert.
        progress_bar: Show a progress bar while indexing.

    Example:
        >>> from jv3_integrations.qdrant import QdrantStore
        >>> store = QdrantStore(provider="local:./tiny-v3", collection="docs")  # doctest: +SKIP
        >>> store.add_texts(["Berlin is the capital of Germany."])  # doctest: +SKIP
        >>> store.search("capital of Germany", k=1)[0].text  # doctest: +SKIP
        'Berlin is the capital of Germany.'
    """

    _client_type = QdrantClient
    _twin = "AsyncQdrantStore"
    _client: QdrantClient | None

    @property
    def client(self) -> QdrantClient:
        """The ``QdrantClient``; the store's own opens on first use (no I/O in the constructor)."""
        if self._client is None:
            self._client = self._open()
        return self._client

    def _close_client(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            client.close()

    def create(self) -> None:
        """Create the collection, or verify dimension and cosine metric of an existing one.

        Raises:
            ConfigurationError: the existing collection has another layout, size or metric.
        """
        if self._ready:
            return
        self._load_terms()
        if self.client.collection_exists(self.collection):
            self._verify(self.client.get_collection(self.collection))
        else:
            self.client.create_collection(self.collection, **self.collection_config())
        self._ready = True

    def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None:
        self.client.upsert(self.collection, points=self._points(records, full, small), wait=True)

    def _delete_ids(self, ids: list[str]) -> None:
        self.client.delete(self.collection, points_selector=self._ids_selector(ids), wait=True)

    def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        self.client.delete(self.collection, points_selector=self._stale_selector(counts), wait=True)

    def _search(self, full: Vectors, small: Vectors | None, k: int, filter: Any) -> list[list[Hit]]:
        requests = self._requests(full, small, k, filter)
        return self._hits(self.client.query_batch_points(self.collection, requests=requests))

    def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        requests = self._hybrid_requests(queries, full, small, k, filter)
        return self._hits(self.client.query_batch_points(self.collection, requests=requests))

    def count(self) -> int:
        """Number of points in the collection (0 if it does not exist yet)."""
        if not self.client.collection_exists(self.collection):
            return 0
        return int(self.client.count(self.collection, exact=True).count)


class AsyncQdrantStore(_QdrantCommon, AsyncStore):
    """:class:`QdrantStore` for asyncio, over an ``AsyncQdrantClient`` (same arguments).

    Example:
        >>> client = AsyncQdrantClient(":memory:")  # doctest: +SKIP
        >>> store = AsyncQdrantStore(provider, client=client)  # doctest: +SKIP
        >>> await store.add_texts(["Berlin is the capital of Germany."])  # doctest: +SKIP
    """

    _client_type = AsyncQdrantClient
    _twin = "QdrantStore"
    _client: AsyncQdrantClient | None

    @property
    def client(self) -> AsyncQdrantClient:
        """The ``AsyncQdrantClient``; the store's own opens on first use."""
        if self._client is None:
            self._client = self._open()
        return self._client

    async def _close_client(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def create(self) -> None:
        """Async twin of :meth:`QdrantStore.create`."""
        if self._ready:
            return
        self._load_terms()
        if await self.client.collection_exists(self.collection):
            self._verify(await self.client.get_collection(self.collection))
        else:
            await self.client.create_collection(self.collection, **self.collection_config())
        self._ready = True

    async def _upsert(self, records: list[Record], full: Vectors, small: Vectors | None) -> None:
        points = self._points(records, full, small)
        await self.client.upsert(self.collection, points=points, wait=True)

    async def _delete_ids(self, ids: list[str]) -> None:
        selector = self._ids_selector(ids)
        await self.client.delete(self.collection, points_selector=selector, wait=True)

    async def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        selector = self._stale_selector(counts)
        await self.client.delete(self.collection, points_selector=selector, wait=True)

    async def _search(
        self, full: Vectors, small: Vectors | None, k: int, filter: Any
    ) -> list[list[Hit]]:
        requests = self._requests(full, small, k, filter)
        return self._hits(await self.client.query_batch_points(self.collection, requests=requests))

    async def _search_hybrid(
        self,
        queries: list[str],
        full: Vectors | None,
        small: Vectors | None,
        k: int,
        filter: Any,
        mode: str,
    ) -> list[list[Hit]]:
        requests = self._hybrid_requests(queries, full, small, k, filter)
        return self._hits(await self.client.query_batch_points(self.collection, requests=requests))

    async def count(self) -> int:
        """Async twin of :meth:`QdrantStore.count`."""
        if not await self.client.collection_exists(self.collection):
            return 0
        return int((await self.client.count(self.collection, exact=True)).count)
