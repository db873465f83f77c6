"""Hybrid (dense + BM25 keyword) vs dense-only search in the embedded stores, same run.

For Qdrant local mode (``path=``) and Milvus Lite, indexes the same ``--n`` passages twice,
once with ``hybrid=False`` and once with ``hybrid=True``, then measures per store:

- ``index_s``: ``add_texts`` of all passages (embedding is a cheap hash, so this is the store);
- ``disk_mb``: size of the store on disk after indexing;
- ``query_ms_p50`` / ``query_ms_p95``: single-query ``search(q, k)`` latency per mode (dense on
  the dense store; dense, hybrid and keyword on the hybrid store), ``--queries`` queries;
- ``hybrid_vs_dense_p50``: hybrid p50 over the dense store's dense p50 (target <= 2);
- ``size_ratio``: hybrid store size over dense store size.

The provider returns deterministic random unit vectors of ``--dim`` (no model: the figures
are the stores' own), and the keyword side uses a real jina-embeddings-v3 tokenizer file
(``--tokenizer``, default the tiny conformance one in ``tests/data/tiny-v3``). Each query holds
one passage's rare code, so keyword search has a real answer.

Prints one JSON object ``{"config": ..., "qdrant_local": {...}, "milvus_lite": {...}}``.

Usage: ``python bench/hybrid.py [--n 2000] [--dim 256] [--queries 50] [--no-progress]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from jv3_integrations.core import BaseProvider, Embeddings
from jv3_integrations.core._provider import EmbedRequest

WORDS = [
    "river",
    "city",
    "berlin",
    "germany",
    "capital",
    "weather",
    "rabbit",
    "white",
    "model",
    "long",
    "text",
    "vector",
    "document",
    "search",
    "context",
    "layer",
    "task",
    "query",
    "passage",
    "evidence",
    "attention",
    "position",
]


class HashProvider(BaseProvider):
    """Deterministic random unit vectors per text (costs microseconds, not a model)."""

    def __init__(self, dim: int, tokenizer: Path) -> None:
        self._dim, self._tok = dim, tokenizer

    @property
    def model_name(self) -> str:
        return "hash"

    @property
    def max_dimensions(self) -> int:
        return self._dim

    def tokenizer_file(self) -> Path:
        return self._tok

    def _embed(self, request: EmbedRequest) -> Embeddings:
        rows = []
        for text in request.texts:
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            rows.append(rng.standard_normal(request.dimensions))
        v = np.asarray(rows, dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return Embeddings(v, self.model_name, request.task, request.dimensions)


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS, size=int(rng.integers(40, 80)))) + f" code ERR-{1000 + i}."
        for i in range(n)
    ]


def disk_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def latencies(store: Any, queries: list[str], k: int, mode: str) -> dict[str, float]:
    store.search(queries[0], k=k, mode=mode)  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        store.search(q, k=k, mode=mode)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "query_ms_p50": round(statistics.median(times), 3),
        "query_ms_p95": round(times[int(0.95 * (len(times) - 1))], 3),
    }


def measure(make: Any, where: Path, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    queries = [
        f"what does ERR-{1000 + int(i)} mean" for i in rng.integers(0, len(texts), args.queries)
    ]
    for hybrid in (False, True):
        label = "hybrid_store" if hybrid else "dense_store"
        path = where / label
        store = make(path, hybrid)
        t0 = time.perf_counter()
        store.add_texts(texts, batch_size=args.batch)
        index_s = time.perf_counter() - t0
        row: dict[str, Any] = {"index_s": round(index_s, 3)}
        modes = ("dense", "hybrid", "keyword") if hybrid else ("dense",)
        for mode in modes:
            row[mode] = latencies(store, queries, args.k, mode)
            if args.progress:
                print(f"  {label} {mode}: {row[mode]}", file=sys.stderr)
        store.client.close()
        row["disk_mb"] = round(disk_mb(path), 3)
        out[label] = row
    dense_p50 = out["dense_store"]["dense"]["query_ms_p50"]
    out["hybrid_vs_dense_p50"] = round(out["hybrid_store"]["hybrid"]["query_ms_p50"] / dense_p50, 3)
    out["size_ratio"] = round(out["hybrid_store"]["disk_mb"] / out["dense_store"]["disk_mb"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    data = Path(__file__).resolve().parents[1] / "tests" / "data"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="passages (default 2000)")
    parser.add_argument("--dim", type=int, default=256, help="vector size (default 256)")
    parser.add_argument("--queries", type=int, default=50, help="single queries per mode")
    parser.add_argument("--k", type=int, default=10, help="hits per query (default 10)")
    parser.add_argument("--batch", type=int, default=256, help="passages per upsert")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=data / "tiny-v3" / "tokenizer.json",
        help="a jina-embeddings-v3 tokenizer.json for the keyword side",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)

    from pymilvus import MilvusClient
    from qdrant_client import QdrantClient

    from jv3_integrations.milvus import MilvusStore
    from jv3_integrations.qdrant import QdrantStore

    provider = HashProvider(args.dim, args.tokenizer)
    texts = corpus(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="jv3-bench-hybrid-"))
    try:

        def qdrant(path: Path, hybrid: bool) -> Any:
            return QdrantStore(provider, client=QdrantClient(path=str(path)), hybrid=hybrid)

        def milvus(path: Path, hybrid: bool) -> Any:
            path.mkdir(parents=True)
            client = MilvusClient(str(path / "m.db"))
            return MilvusStore(provider, client=client, hybrid=hybrid)

        results: dict[str, Any] = {}
        for label, make in (("qdrant_local", qdrant), ("milvus_lite", milvus)):
            if args.progress:
                print(f"{label}: indexing {args.n} passages twice", file=sys.stderr)
            (tmp / label).mkdir()
            results[label] = measure(make, tmp / label, texts, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print(json.dumps({"config": config, **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
