"""A loopback Pinecone for tests: the control and data plane of API version 2026-07.

Implements what the pinecone SDK 10 sends for vector indexes (``db_control_2026-07.oas.yaml``,
``db_data_2026-07.oas.yaml`` in ``tests/data/spec/pinecone``): ``GET|POST /indexes``,
``GET|PATCH|DELETE /indexes/{name}`` (PATCH: ``tags`` only; the other fields of
ConfigureIndexRequest are refused with a 400 saying so); and, on each index's host
(``/x/{name}`` on the same port), ``POST /vectors/upsert``, ``POST /query``,
``GET /vectors/fetch``, ``POST /vectors/delete``, ``POST /describe_index_stats``. Exact cosine / dot / euclidean search and the documented
metadata filter operators. Sparse-dense records (``sparseValues``, dotproduct indexes only) and
queries (``sparseVector``, with or without ``vector``): score = dense dot + sparse dot; a
sparse-only query matches the records sharing a term with it. With ``validate=True`` every JSON response is checked against its
OpenAPI schema (a test fails on a mismatch). Test infrastructure only, not part of the package.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

API_VERSION = "2026-07"
MAX_METADATA_BYTES = 40 * 1024
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
MAX_SPARSE = 2048


def parse_sparse(raw: Any, what: str) -> dict[int, float]:
    """SparseValues (``{"indices": [...], "values": [...]}``) as ``{index: value}``."""
    if not isinstance(raw, dict):
        raise _bad(f"{what} must be an object with indices and values")
    indices, values = raw.get("indices"), raw.get("values")
    if not isinstance(indices, list) or not isinstance(values, list):
        raise _bad(f"{what} needs the arrays indices and values")
    if len(indices) != len(values):
        raise _bad(f"{what}: indices and values must have the same length")
    if not 1 <= len(indices) <= MAX_SPARSE:
        raise _bad(f"{what} must have 1..{MAX_SPARSE} entries")
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 2**32 for i in indices):
        raise _bad(f"{what}: indices must be integers in 0..4294967295")
    if len(set(indices)) != len(indices):
        raise _bad(f"{what}: indices must be unique")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise _bad(f"{what}: values must be numbers")
    return {int(i): float(v) for i, v in zip(indices, values, strict=True)}


class PineconeHTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_TAG_KEY = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _check_tags(tags: Any) -> dict[str, str] | None:
    """IndexTags of the 2026-07 spec: at most 20; keys <= 80 of [A-Za-z0-9_-]; values <= 120
    printable ASCII characters or spaces; an empty value unsets the key."""
    if tags is None:
        return None
    if not isinstance(tags, dict) or len(tags) > 20:
        raise _bad("tags must be an object of at most 20 string values")
    out = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key):
            raise _bad(f"tag key {key!r} must be 1-80 characters of letters, digits, '_' or '-'")
        if (
            not isinstance(value, str)
            or len(value) > 120
            or not all(" " <= c <= "~" for c in value)
        ):
            raise _bad(f"tag {key!r}: values are at most 120 printable ASCII characters")
        if value:
            out[key] = value
    return out or None


#: The properties of ConfigureIndexRequest (db_control_2026-07.oas.yaml).
_CONFIGURE_FIELDS = {"deployment", "schema", "read_capacity", "tags", "deletion_protection"}


def _bad(message: str) -> PineconeHTTPError:
    return PineconeHTTPError(400, "INVALID_ARGUMENT", message)


# -- metadata filters (https://docs.pinecone.io/guides/search/filter-by-metadata) ----------

_NUMERIC_OPS = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}


def _match_op(op: str, operand: Any, present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if op == "$eq":
        return present and operand in values
    if op == "$ne":
        return not present or operand not in values
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise _bad(f"{op} needs an array")
        hit = present and any(v in operand for v in values)
        return hit if op == "$in" else not hit
    if op in _NUMERIC_OPS:
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise _bad(f"{op} needs a number")
        ok = present and isinstance(value, (int, float)) and not isinstance(value, bool)
        return bool(ok and _NUMERIC_OPS[op](value, operand))
    if op == "$exists":
        return present == bool(operand)
    raise _bad(f"unknown filter operator {op}")


def matches(flt: dict[str, Any] | None, metadata: dict[str, Any]) -> bool:
    """Whether ``metadata`` satisfies a Pinecone metadata filter."""
    if not flt:
        return True
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list):
                raise _bad(f"{key} needs an array of filters")
            results = [matches(c, metadata) for c in cond]
            if not (all(results) if key == "$and" else any(results)):
                return False
            continue
        if key.startswith("$"):
            raise _bad(f"unknown filter operator {key}")
        present = key in metadata
        value = metadata.get(key)
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, operand in ops.items():
            if not _match_op(op, operand, present, value):
                return False
    return True


# -- state ------------------------------------------------------------------------------


@dataclass
class Index:
    name: str
    dimension: int
    metric: str
    deployment: dict[str, Any]
    tags: dict[str, str] | None = None
    namespaces: dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]] = field(
        default_factory=dict
    )
    #: Sparse values of the records that have them, per namespace and id.
    sparse: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    def model(self, base: str) -> dict[str, Any]:
        tags = {"tags": dict(self.tags)} if self.tags else {}  # omitted when none ("nullable")
        return {
            **tags,
            "name": self.name,
            "host": f"{base}/x/{self.name}",
            "status": {"ready": True, "state": "Ready"},
            "deployment": self.deployment,
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": self.dimension,
                        "metric": self.metric,
                    }
                }
            },
            "deletion_protection": "disabled",
            "read_capacity": {"mode": "OnDemand", "status": {"state": "Ready"}},
        }

    def score(self, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)
            return (vectors @ query) / np.maximum(norms, 1e-12)
        if self.metric == "dotproduct":
            return vectors @ query
        return -(np.linalg.norm(vectors - query, axis=1) ** 2)


class PineconeState:
    """Everything the server holds, plus a log of request headers (for tests)."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.indexes: dict[str, Index] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []


# -- the handler ------------------------------------------------------------------------


def _load_validators() -> dict[str, Any]:
    import jsonschema
    import yaml

    from tests.conftest import SPEC_DIR

    spec_dir = SPEC_DIR / "pinecone"
    out = {}
    for fname in ("db_control_2026-07.oas.yaml", "db_data_2026-07.oas.yaml"):
        doc = yaml.safe_load((spec_dir / fname).read_text())
        comps = doc["components"]
        for name in comps["schemas"]:
            out[name] = jsonschema.Draft202012Validator(
                {"$ref": f"#/components/schemas/{name}", "components": comps}
            )
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: Any = None, schema: str | None = None) -> None:
        if schema is not None and self.server.validators is not None:
            errors = list(self.server.validators[schema].iter_errors(body))
            if errors:
                self.server.schema_errors.append(f"{schema}: {errors[0].message}")
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        if not n:
            return {}
        try:
            return json.loads(self.rfile.read(n))
        except json.JSONDecodeError:
            raise _bad("request body is not JSON") from None

    def _handle(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        state.requests.append((self.command, url.path, dict(self.headers)))
        try:
            if self.headers.get("Api-Key") != state.api_key:
                self._send(
                    401,
                    {
                        "error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"},
                        "status": 401,
                    },
                )
                return
            if self.headers.get("X-Pinecone-Api-Version") != API_VERSION:
                raise _bad(f"X-Pinecone-Api-Version must be {API_VERSION}")
            parts = [p for p in url.path.split("/") if p]
            with state.lock:
                if parts and parts[0] == "indexes":
                    self._control(parts[1:], state)
                elif len(parts) >= 2 and parts[0] == "x":
                    index = state.indexes.get(parts[1])
                    if index is None:
                        raise PineconeHTTPError(404, "NOT_FOUND", f"index {parts[1]} not found")
                    self._data("/" + "/".join(parts[2:]), parse_qs(url.query), index)
                else:
                    raise PineconeHTTPError(404, "NOT_FOUND", f"no route {url.path}")
        except PineconeHTTPError as exc:
            body = {"error": {"code": exc.code, "message": exc.message}, "status": exc.status}
            self._send(exc.status, body, "ErrorResponse")

    do_GET = do_POST = do_PATCH = do_DELETE = _handle

    # control plane
    def _control(self, rest: list[str], state: PineconeState) -> None:
        base = self.server.base_url
        if not rest and self.command == "GET":
            models = [i.model(base) for i in state.indexes.values()]
            self._send(200, {"indexes": models}, "IndexList")
        elif not rest and self.command == "POST":
            index = self._create(self._body(), state)
            self._send(201, index.model(base), "IndexModel")
        elif len(rest) == 1 and rest[0] in state.indexes:
            if self.command == "GET":
                self._send(200, state.indexes[rest[0]].model(base), "IndexModel")
            elif self.command == "PATCH":
                self._configure(self._body(), state.indexes[rest[0]])
                self._send(200, state.indexes[rest[0]].model(base), "IndexModel")
            elif self.command == "DELETE":
                del state.indexes[rest[0]]
                self._send(202)
            else:
                raise PineconeHTTPError(405, "INVALID_ARGUMENT", "method not allowed")
        else:
            raise PineconeHTTPError(404, "NOT_FOUND", f"Resource {'/'.join(rest)} not found")

    def _create(self, body: dict[str, Any], state: PineconeState) -> Index:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _bad("Index name must contain only lowercase alphanumeric characters or hyphens")
        if name in state.indexes:
            raise PineconeHTTPError(409, "ALREADY_EXISTS", f"Resource {name} already exists")
        fields = (body.get("schema") or {}).get("fields") or {}
        dense = fields.get("_values")
        if not isinstance(dense, dict) or dense.get("type") != "dense_vector":
            raise _bad("schema.fields must declare the reserved dense_vector field _values")
        dim, metric = dense.get("dimension"), dense.get("metric", "cosine")
        if not isinstance(dim, int) or not 1 <= dim <= 20000:
            raise _bad("dimension must be an integer in 1..20000")
        if metric not in ("cosine", "dotproduct", "euclidean"):
            raise _bad("metric must be cosine, dotproduct or euclidean")
        deployment = body.get("deployment") or {
            "deployment_type": "managed",
            "cloud": "aws",
            "region": "us-east-1",
        }
        index = Index(name, dim, metric, deployment, tags=_check_tags(body.get("tags")))
        state.indexes[name] = index
        return index

    def _configure(self, body: Any, index: Index) -> None:
        """configure_index (ConfigureIndexRequest): tag updates are merged into the index's
        tags, a value "" removes its key; all checked before anything changes."""
        if not isinstance(body, dict):
            raise _bad("the request body must be a ConfigureIndexRequest object")
        unknown = sorted(set(body) - _CONFIGURE_FIELDS)
        if unknown:  # additionalProperties: false
            raise PineconeHTTPError(
                422,
                "UNPROCESSABLE_ENTITY",
                "Failed to deserialize the JSON body into the target type: unknown field "
                f"`{unknown[0]}`",
            )
        unsupported = sorted(k for k in set(body) - {"tags"} if body[k] is not None)
        if unsupported:
            raise _bad(
                f"this loopback Pinecone does not implement configuring {', '.join(unsupported)} "
                "(only tags)"
            )
        raw = body.get("tags")
        if raw is None:  # IndexTags is nullable: nothing to change
            return
        _check_tags(raw)
        merged = dict(index.tags or {})
        for key, value in raw.items():
            if value:
                merged[key] = value
            else:
                merged.pop(key, None)
        if len(merged) > 20:
            raise _bad(f"an index has at most 20 tags; this update would leave {len(merged)}")
        index.tags = merged or None

    # data plane
    def _data(self, path: str, query: dict[str, list[str]], index: Index) -> None:
        if path == "/vectors/upsert" and self.command == "POST":
            body = self._body()
            ns = index.namespaces.setdefault(body.get("namespace", ""), {})
            sparse_ns = index.sparse.setdefault(body.get("namespace", ""), {})
            vectors = body.get("vectors") or []
            staged = {}
            staged_sparse: dict[str, dict[int, float] | None] = {}
            for v in vectors:
                values = np.asarray(v.get("values") or [], dtype=np.float32)
                if values.shape != (index.dimension,):
                    raise _bad(
                        f"Vector dimension {values.shape[0]} does not match the dimension of "
                        f"the index {index.dimension}"
                    )
                meta = v.get("metadata") or {}
                if len(json.dumps(meta).encode()) > MAX_METADATA_BYTES:
                    raise _bad(f"Metadata size exceeds the limit of {MAX_METADATA_BYTES} bytes")
                sparse = None
                if v.get("sparseValues") is not None:
                    if index.metric != "dotproduct":
                        raise _bad(
                            "Sparse values are supported only for indexes with metric dotproduct"
                        )
                    sparse = parse_sparse(v["sparseValues"], "sparseValues")
                staged[str(v["id"])] = (values, meta)
                staged_sparse[str(v["id"])] = sparse
            ns.update(staged)
            for i, sv in staged_sparse.items():
                if sv is None:
                    sparse_ns.pop(i, None)
                else:
                    sparse_ns[i] = sv
            self._send(200, {"upsertedCount": len(vectors)}, "UpsertResponse")
        elif path == "/query" and self.command == "POST":
            self._send(200, self._query(self._body(), index), "QueryResponse")
        elif path == "/vectors/fetch" and self.command == "GET":
            name = (query.get("namespace") or [""])[0]
            ns = index.namespaces.get(name, {})
            sparse_ns = index.sparse.get(name, {})
            found = {
                i: {"id": i, "values": ns[i][0].tolist(), "metadata": ns[i][1]}
                for i in query.get("ids", [])
                if i in ns
            }
            for i, item in found.items():
                if i in sparse_ns:
                    sv = sparse_ns[i]
                    item["sparseValues"] = {"indices": list(sv), "values": list(sv.values())}
            body = {"vectors": found, "namespace": name, "usage": {"readUnits": 1}}
            self._send(200, body, "FetchResponse")
        elif path == "/vectors/delete" and self.command == "POST":
            body = self._body()
            ns = index.namespaces.get(body.get("namespace", ""), {})
            sparse_ns = index.sparse.get(body.get("namespace", ""), {})
            if body.get("deleteAll"):
                ns.clear()
                sparse_ns.clear()
            elif body.get("ids") is not None:
                for i in body["ids"]:
                    ns.pop(i, None)
                    sparse_ns.pop(i, None)
            elif body.get("filter"):
                for i in [i for i, (_, m) in ns.items() if matches(body["filter"], m)]:
                    del ns[i]
                    sparse_ns.pop(i, None)
            else:
                raise _bad("delete needs ids, filter or deleteAll")
            self._send(200, {}, "DeleteResponse")
        elif path == "/describe_index_stats" and self.command == "POST":
            flt = self._body().get("filter")
            counts = {
                name: {"vectorCount": sum(1 for _, m in ns.values() if matches(flt, m))}
                for name, ns in index.namespaces.items()
            }
            body = {
                "namespaces": counts,
                "dimension": index.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": sum(c["vectorCount"] for c in counts.values()),
                "metric": index.metric,
                "vectorType": "dense",
            }
            self._send(200, body, "IndexDescription")
        else:
            raise PineconeHTTPError(404, "NOT_FOUND", f"no route {path}")

    def _query(self, body: dict[str, Any], index: Index) -> dict[str, Any]:
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= 10000:
            raise _bad("topK must be an integer in 1..10000")
        name = body.get("namespace", "")
        ns = index.namespaces.get(name, {})
        sparse_ns = index.sparse.get(name, {})
        sparse_query = None
        if body.get("sparseVector") is not None:
            if body.get("id") is not None:
                raise _bad("id and sparseVector are mutually exclusive")
            if index.metric != "dotproduct":
                raise _bad("Sparse queries are supported only for indexes with metric dotproduct")
            sparse_query = parse_sparse(body["sparseVector"], "sparseVector")
        vector: np.ndarray | None
        if body.get("id") is not None:
            if body["id"] not in ns:
                return {"matches": [], "namespace": name, "usage": {"readUnits": 1}}
            vector = ns[body["id"]][0]
        elif body.get("vector") is None and sparse_query is not None:
            vector = None
        else:
            vector = np.asarray(body.get("vector") or [], dtype=np.float32)
            if vector.shape != (index.dimension,):
                raise _bad(
                    f"Vector dimension {vector.shape[0]} does not match the dimension of the "
                    f"index {index.dimension}"
                )
        flt = body.get("filter")
        ids = [i for i, (_, m) in ns.items() if matches(flt, m)]
        if vector is None:  # sparse only: the records sharing a term with the query
            ids = [
                i
                for i in ids
                if sparse_query is not None and set(sparse_ns.get(i, {})) & set(sparse_query)
            ]
        matches_out = []
        if ids:
            scores = np.zeros(len(ids), dtype=np.float64)
            if vector is not None:
                scores += index.score(np.stack([ns[i][0] for i in ids]), vector)
            if sparse_query is not None:
                scores += np.array(
                    [
                        sum(v * sparse_ns.get(i, {}).get(t, 0.0) for t, v in sparse_query.items())
                        for i in ids
                    ]
                )
            order = np.argsort(-scores, kind="stable")[:top_k]
            for j in order:
                item: dict[str, Any] = {"id": ids[j], "score": float(scores[j]), "values": []}
                if body.get("includeValues"):
                    item["values"] = ns[ids[j]][0].tolist()
                if body.get("includeMetadata"):
                    item["metadata"] = ns[ids[j]][1]
                matches_out.append(item)
        return {"matches": matches_out, "namespace": name, "usage": {"readUnits": 1}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: PineconeState
    base_url: str
    validators: dict[str, Any] | None
    schema_errors: list[str]


@contextmanager
def running_pinecone(api_key: str = "pc-test-key", *, validate: bool = True) -> Iterator[_Server]:
    """Run the loopback Pinecone on 127.0.0.1; yields the server (``.base_url``, ``.state``,
    ``.schema_errors`` listing any response that broke its OpenAPI schema)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = PineconeState(api_key)
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    server.validators = _load_validators() if validate else None
    server.schema_errors = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
