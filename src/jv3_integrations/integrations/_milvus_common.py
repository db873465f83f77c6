"""The I/O-free core shared by :class:`~.milvus.MilvusStore` and :class:`~.milvus.AsyncMilvusStore`.

Options, the collection schema (dense fields, and the BM25 function of hybrid collections), the
check of an existing collection, filter expressions, search requests and result parsing. The
layout and the search modes are described in :mod:`jv3_integrations.integrations.milvus`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..core._errors import ConfigurationError, InputError, missing_extra
from ..core._provider import EmbeddingProvider
from ._store import TEXT_KEY, Hit, Record, StoreCore, StoreTraits, Vectors, rescore, simple_filter

try:
    from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("milvus", "pymilvus") from exc

# The public module's name: its warnings keep the logger name users filter on.
logger = logging.getLogger("jv3_integrations.integrations.milvus")

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
