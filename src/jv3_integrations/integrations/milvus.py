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

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core._errors import ConfigurationError, InputError, missing_extra
from ..core._provider import EmbeddingProvider
from ._store import (
    TEXT_KEY,
    AsyncStore,
    Hit,
    Record,
    StoreCore,
    StoreTraits,
    SyncStore,
    Vectors,
    rescore,
    simple_filter,
)

try:
    from pymilvus import (
        AnnSearchRequest,
        AsyncMilvusClient,
        DataType,
        Function,
        FunctionType,
        MilvusClient,
        RRFRanker,
    )
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("milvus", "pymilvus") from exc

from .milvus_embedding import embedding_function_class

__all__ = ["AsyncMilvusStore", "JinaV3EmbeddingFunction", "MilvusStore", "embedding_function_class"]

if TYPE_CHECKING:
    from .milvus_embedding import JinaV3EmbeddingFunction
else:

    def __getattr__(name: str) -> Any:
        if name == "JinaV3EmbeddingFunction":
            return embedding_function_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logger = logging.getLogger(__name__)

VECTOR = "vector"
FULL = "full"
SMALL = "small"
SPARSE = "sparse"
BM25_FUNCTION = "bm25"
#: The analyzer of hybrid collections: Unicode word boundaries (every script), lowercased.
DEFAULT_ANALYZER: dict[str, Any] = {"tokenizer": "standard", "filter": ["lowercase"]}
_MAX_TEXT_BYTES = 65535
_ID_LENGTH = 64


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: str) -> str:
    return f"metadata[{json.dumps(key, ensure_ascii=False)}]"


class _MilvusCommon(StoreCore):
    """Options, schema, expressions and result parsing (no I/O)."""

    #: The client class this store drives (``MilvusClient`` or ``AsyncMilvusClient``).
    _client_type: type[Any]
    _twin: str
    collection: str
    funnel_factor: int
    index_type: str

    def __init__(
        self,
        provider: EmbeddingProvider | str | None = None,
        *,
        client: Any = None,
        uri: str = "./jv3.db",
        token: str | None = None,
        collection: str = "jv3",
        dimensions: int | None = None,
        small_dimensions: int | None = None,
        funnel_factor: int = 4,
        index_type: str = "FLAT",
        batch_size: int | None = None,
        progress_bar: bool = False,
        hybrid: bool = False,
        analyzer_params: dict[str, Any] | None = None,
        rrf_k: int = 60,
    ) -> None:
        super().__init__(
            provider=provider,
            dimensions=dimensions,
            small_dimensions=small_dimensions,
            batch_size=batch_size,
            progress_bar=progress_bar,
            hybrid=hybrid,
        )
        self._init_milvus(collection, funnel_factor, index_type)
        self._init_hybrid(analyzer_params, rrf_k)
        if client is not None and not isinstance(client, self._client_type):
            raise ConfigurationError(
                f"client must be a {self._client_type.__name__}, not {type(client).__name__} "
                f"(use {self._twin} for that client)"
            )
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigurationError("uri must be a non-empty str (a Milvus Lite file or a URL)")
        if token is not None and (not isinstance(token, str) or "://" not in uri):
            raise ConfigurationError("token goes with a server uri= (http://host:19530)")
        self._client = client
        self._owns_client = client is None
        self.uri = uri
        self._token = token  # given to the client only; never shown

    @property
    def traits(self) -> StoreTraits:
        """A Milvus server is written by many processes; a Milvus Lite file by one."""
        return StoreTraits(multi_process=not self._owns_client or "://" in self.uri)

    def _open(self) -> Any:
        """A new client for ``uri``, errors said in our words."""
        if "://" in self.uri:
            return self._client_type(self.uri, token=self._token or "")
        Path(self.uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._client_type(self.uri)
        except Exception as exc:
            if "Open local milvus failed" not in str(exc):
                raise
            raise ConfigurationError(
                f"cannot open the Milvus Lite store {self.uri}: another process is using it "
                "(wait for it to finish), or it is not a Milvus Lite database"
            ) from None

    def _init_milvus(self, collection: str, funnel_factor: int, index_type: str) -> None:
        if not isinstance(collection, str) or not collection:
            raise ConfigurationError("collection must be a non-empty str")
        if isinstance(funnel_factor, bool) or funnel_factor < 1:
            raise ConfigurationError(f"funnel_factor must be >= 1, got {funnel_factor}")
        self.collection = collection
        self.funnel_factor = int(funnel_factor)
        self.index_type = index_type
        self._ready = False

    def _init_hybrid(self, analyzer_params: dict[str, Any] | None, rrf_k: int) -> None:
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
            raise ConfigurationError(f"rrf_k must be an int >= 1, got {rrf_k!r}")
        if analyzer_params is not None and not isinstance(analyzer_params, dict):
            raise ConfigurationError("analyzer_params must be a dict (Milvus analyzer params)")
        if analyzer_params is not None and not self.hybrid:
            raise ConfigurationError("analyzer_params is used only with hybrid=True; set it too")
        if self.hybrid and self._small_arg is not None:
            raise ConfigurationError(
                "MilvusStore cannot combine hybrid=True with small_dimensions (funnel search); "
                "drop one of them (QdrantStore supports both together)"
            )
        self.analyzer_params = dict(analyzer_params or DEFAULT_ANALYZER)
        self.rrf_k = rrf_k

    def _vector_fields(self) -> dict[str, int]:
        if self.small_dimensions is None:
            return {VECTOR: self.dimensions}
        return {SMALL: self.small_dimensions, FULL: self.dimensions}

    def _schema(self) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_ID_LENGTH)
        text: dict[str, Any] = {"max_length": _MAX_TEXT_BYTES}
        if self.hybrid:
            text.update(enable_analyzer=True, analyzer_params=self.analyzer_params)
        schema.add_field(TEXT_KEY, DataType.VARCHAR, **text)
        schema.add_field("metadata", DataType.JSON)
        for name, dim in self._vector_fields().items():
            schema.add_field(name, DataType.FLOAT_VECTOR, dim=dim)
        if self.hybrid:
            schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name=BM25_FUNCTION,
                    function_type=FunctionType.BM25,
                    input_field_names=[TEXT_KEY],
                    output_field_names=[SPARSE],
                )
            )
        return schema

    def _index_params(self) -> Any:
        params = MilvusClient.prepare_index_params()
        for name in self._vector_fields():
            params.add_index(name, index_type=self.index_type, metric_type="COSINE")
        if self.hybrid:
            params.add_index(SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        return params

    def _verify(self, description: dict[str, Any], indexes: dict[str, dict[str, Any]]) -> None:
        fields = {f["name"]: f for f in description.get("fields", [])}
        for name in ("id", TEXT_KEY, "metadata"):
            if name not in fields:
                raise ConfigurationError(
                    f"Milvus collection {self.collection!r} has no {name!r} field; it was not "
                    "made by this store: use another collection"
                )
        for name, dim in self._vector_fields().items():
            field = fields.get(name)
            if field is None:
                raise ConfigurationError(
                    f"Milvus collection {self.collection!r} has no vector field {name!r}; "
                    "match small_dimensions to how it was created, or use another collection"
                )
            found = int(field.get("params", {}).get("dim", -1))
            if found != dim:
                raise ConfigurationError(
                    f"field {name!r} of Milvus collection {self.collection!r} has dimension "
                    f"{found}, but this store embeds at {dim}; set dimensions={found} or use "
                    "another collection"
                )
            metric = str(indexes.get(name, {}).get("metric_type", "")).upper()
            built = str(indexes.get(name, {}).get("index_type", "")).upper()
            if built and built != self.index_type.upper():
                logger.warning(
                    "field %r of Milvus collection %r is indexed with %s, not %s as configured%s",
                    name,
                    self.collection,
                    built,
                    self.index_type,
                    ": its search is approximate; rebuild it (jv3 index --rebuild) for exact search"
                    if self.index_type.upper() == "FLAT"
                    else "",
                )
            if metric != "COSINE":
                raise ConfigurationError(
                    f"field {name!r} of Milvus collection {self.collection!r} is indexed with "
                    f"metric {metric or 'none'}; jina-embeddings-v3 needs COSINE"
                )
        if self.hybrid:
            bm25 = [
                f
                for f in description.get("functions", [])
                if f.get("type") == FunctionType.BM25 and f.get("output_field_names") == [SPARSE]
            ]
            if SPARSE not in fields or not bm25:
                raise ConfigurationError(
                    f"Milvus collection {self.collection!r} has no BM25 field {SPARSE!r} (it was "
                    "created without hybrid=True); use another collection for hybrid search"
                )
        # How it was built: the collection properties this store set when it created it.
        self._check_facts(description.get("properties"), f"Milvus collection {self.collection!r}")

    def _check_records(self, records: list[Record]) -> None:
        for i, r in enumerate(records):
            size = len(r.text.encode("utf-8"))
            if size > _MAX_TEXT_BYTES:
                raise InputError(
                    f"text {i} has {size} bytes; Milvus VARCHAR holds at most {_MAX_TEXT_BYTES}: "
                    "split it (add_documents chunks long documents)"
                )
            try:
                json.dumps(r.metadata)
            except (TypeError, ValueError) as exc:
                raise InputError(f"metadata of text {i} is not JSON-serializable: {exc}") from None

    def _rows(
        self, records: list[Record], full: Vectors, small: Vectors | None
    ) -> list[dict[str, Any]]:
        rows = []
        for i, r in enumerate(records):
            row: dict[str, Any] = {"id": r.id, TEXT_KEY: r.text, "metadata": r.metadata}
            if small is None:
                row[VECTOR] = full[i].tolist()
            else:
                row[FULL] = full[i].tolist()
                row[SMALL] = small[i].tolist()
            rows.append(row)
        return rows

    @staticmethod
    def _filter(filter: Any) -> str:
        if filter is None:
            return ""
        if isinstance(filter, str):
            return filter
        simple = simple_filter(filter)
        if simple is None:
            raise ConfigurationError(
                "filter must be a Milvus boolean expression (str) or a dict {key: value}"
            )
        parts = []
        for key, value in simple.items():
            if isinstance(value, (list, tuple)):
                # Milvus Lite rejects `json_path in [...]`: spell it out.
                options = " or ".join(f"{_key(key)} == {_literal(v)}" for v in value)
                parts.append(f"({options})" if options else "false")
            else:
                parts.append(f"{_key(key)} == {_literal(value)}")
        return " and ".join(parts)

    @staticmethod
    def _stale_filter(counts: dict[str, int]) -> str:
        return " or ".join(
            f"({_key('doc_id')} == {_literal(doc_id)} and {_key('chunk_index')} >= {n})"
            for doc_id, n in counts.items()
        )

    def _search_args(self, vectors: Vectors, limit: int, filter: Any, field: str) -> dict[str, Any]:
        return {
            "collection_name": self.collection,
            "data": vectors.tolist(),
            "anns_field": field,
            "limit": limit,
            "filter": self._filter(filter),
            "output_fields": [TEXT_KEY, "metadata"] if field != SMALL else [],
            "search_params": {"metric_type": "COSINE"},
        }

    def _keyword_args(self, queries: list[str], limit: int, filter: Any) -> dict[str, Any]:
        return {
            "collection_name": self.collection,
            "data": list(queries),
            "anns_field": SPARSE,
            "limit": limit,
            "filter": self._filter(filter),
            "output_fields": [TEXT_KEY, "metadata"],
            "search_params": {"metric_type": "BM25"},
        }

    def _hybrid_args(
        self, queries: list[str], full: Vectors, k: int, filter: Any
    ) -> dict[str, Any]:
        expr = self._filter(filter)
        n = k * self.funnel_factor
        reqs = [
            AnnSearchRequest(
                data=full.tolist(),
                anns_field=VECTOR,
                param={"metric_type": "COSINE"},
                limit=n,
                expr=expr,
            ),
            AnnSearchRequest(
                data=list(queries),
                anns_field=SPARSE,
                param={"metric_type": "BM25"},
                limit=n,
                expr=expr,
            ),
        ]
        return {
            "collection_name": self.collection,
            "reqs": reqs,
            "ranker": RRFRanker(self.rrf_k),
            "limit": k,
            "output_fields": [TEXT_KEY, "metadata"],
        }

    @staticmethod
    def _hits(results: Any, *, bm25: bool = False) -> list[list[Hit]]:
        out = []
        for row in results:
            hits = []
            for h in row:
                entity = h.get("entity", {})
                distance = float(h["distance"])
                hits.append(
                    Hit(
                        str(h["id"]),
                        abs(distance) if bm25 else distance,
                        str(entity.get(TEXT_KEY, "")),
                        dict(entity.get("metadata") or {}),
                    )
                )
            out.append(hits)
        return out

    @staticmethod
    def _candidates(results: Any) -> list[list[str]]:
        return [[str(h["id"]) for h in row] for row in results]

    @staticmethod
    def _funnel(
        candidates: list[list[str]], rows: list[dict[str, Any]], full: Vectors, k: int
    ) -> list[list[Hit]]:
        by_id = {str(r["id"]): r for r in rows}
        vectors = {i: np.asarray(r[FULL], dtype=np.float32) for i, r in by_id.items()}
        out = []
        for q, cands in enumerate(candidates):
            ranked = rescore(cands, vectors, full[q])[:k]
            out.append(
                [
                    Hit(i, s, str(by_id[i].get(TEXT_KEY, "")), dict(by_id[i].get("metadata") or {}))
                    for i, s in ranked
                ]
            )
        return out

    @staticmethod
    def _count(result: Any) -> int:
        return int(result[0]["count(*)"]) if result else 0


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
