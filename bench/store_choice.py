"""Which embedded store should ``jv3`` default to: Milvus Lite or Qdrant local mode?

Measures, for the job ``jv3`` does (index a folder once, search it many times, each command a
fresh process), on random unit vectors with a ~400-character text payload per point:

- ``import_s``: importing the client library in a fresh interpreter (every ``jv3`` run pays it);
- ``write_s`` / ``write_points_per_s``: upserting ``--n`` points in batches of ``--batch`` AND
  closing the client, so the points are durable when the clock stops (Milvus Lite flushes its
  memtable at close; Qdrant local mode commits each upsert); every row is built before timing;
- ``reopen_s``, then ``search_ms_p50`` / ``search_ms_p95``: single-query top-5 latency;
- ``delete_ms``: deleting one file's worth (``--batch``) of points by id, then closing;
- ``cold_process_s``: a fresh process that imports the client, opens the store, loads the
  collection and answers two queries (what ``jv3 search`` pays besides the model), split into
  ``cold_import_s``, ``cold_open_s``, ``cold_first_query_s`` and ``cold_second_query_s``;
- ``disk_mb``: size of the store on disk after the write.

``*_cpu_*`` figures are CPU seconds (user + system, all threads, children included) of the
same work. The two stores alternate ``--alternations`` times (ABBA order, a fresh store each
time); every figure is reported as median, min and max over the alternations, and
``milvus_vs_qdrant`` gives the per-alternation ratio (qdrant / milvus) with its spread.

Prints one JSON object: ``{"config": ..., "qdrant_local": {...}, "milvus_lite": {...},
"milvus_vs_qdrant": {...}}``.

Usage: ``python bench/store_choice.py [--n 2000] [--dim 1024] [--alternations 3] [--no-progress]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

COLLECTION = "bench"


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _text(i: int) -> str:
    return (f"Chunk {i}: " + "lorem ipsum dolor sit amet consectetur " * 10)[:400]


def _ids(n: int) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{i}")) for i in range(n)]


def _disk_mb(path: Path) -> float:
    if path.is_file():
        return round(path.stat().st_size / 1e6, 2)
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return round(total / 1e6, 2)


@contextmanager
def _bar(total: int, desc: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


# -- the two stores ----------------------------------------------------------------------------


class QdrantLocal:
    name = "qdrant_local"
    import_code = "import qdrant_client"

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim

    def open(self) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(path=str(self.path))

    def create(self) -> None:
        from qdrant_client import models

        self.client.create_collection(
            COLLECTION,
            vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
        )

    def rows(self, ids: list[str], vecs: np.ndarray, start: int) -> list[Any]:
        from qdrant_client import models

        return [
            models.PointStruct(
                id=pid, vector=v.tolist(), payload={"text": _text(start + j), "file": "f.md"}
            )
            for j, (pid, v) in enumerate(zip(ids, vecs, strict=True))
        ]

    def upsert(self, rows: list[Any]) -> None:
        self.client.upsert(COLLECTION, points=rows, wait=True)

    def search(self, q: np.ndarray) -> list[Any]:
        return list(
            self.client.query_points(
                COLLECTION, query=q.tolist(), limit=5, with_payload=True
            ).points
        )

    def delete(self, ids: list[str]) -> None:
        from qdrant_client import models

        self.client.delete(COLLECTION, points_selector=models.PointIdsList(points=ids), wait=True)

    def load(self) -> None:
        return None

    def close(self) -> None:
        self.client.close()

    def cold_code(self, q: str) -> str:
        return (
            "import json, time\nt0 = time.perf_counter()\n"
            "from qdrant_client import QdrantClient\nt1 = time.perf_counter()\n"
            f"c = QdrantClient(path={str(self.path)!r})\n"
            f"q = json.load(open({q!r}))\nt2 = time.perf_counter()\n"
            f"r = c.query_points({COLLECTION!r}, query=q, limit=5, with_payload=True)\n"
            "t3 = time.perf_counter()\nassert len(r.points) == 5\n"
            f"c.query_points({COLLECTION!r}, query=q, limit=5, with_payload=True)\n"
            "t4 = time.perf_counter()\n"
            "print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3]))\n"
            "c.close()\n"
        )


class MilvusLite:
    name = "milvus_lite"
    import_code = "import pymilvus"

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim

    def open(self) -> None:
        from pymilvus import MilvusClient

        self.client = MilvusClient(str(self.path))

    def create(self) -> None:
        self.client.create_collection(
            COLLECTION,
            dimension=self.dim,
            id_type="string",
            max_length=64,
            metric_type="COSINE",
            enable_dynamic_field=True,
        )

    def rows(self, ids: list[str], vecs: np.ndarray, start: int) -> list[Any]:
        return [
            {"id": pid, "vector": v.tolist(), "text": _text(start + j), "file": "f.md"}
            for j, (pid, v) in enumerate(zip(ids, vecs, strict=True))
        ]

    def upsert(self, rows: list[Any]) -> None:
        self.client.upsert(COLLECTION, rows)

    def search(self, q: np.ndarray) -> list[Any]:
        res = self.client.search(COLLECTION, [q.tolist()], limit=5, output_fields=["text", "file"])
        return list(res[0])

    def delete(self, ids: list[str]) -> None:
        self.client.delete(COLLECTION, ids=ids)

    def load(self) -> None:
        self.client.load_collection(COLLECTION)

    def close(self) -> None:
        self.client.close()
        # Milvus Lite keeps its in-process server (and the file lock) until exit otherwise.
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(self.path))

    def cold_code(self, q: str) -> str:
        return (
            "import json, time\nt0 = time.perf_counter()\n"
            "from pymilvus import MilvusClient\nt1 = time.perf_counter()\n"
            f"c = MilvusClient({str(self.path)!r})\n"
            f"c.load_collection({COLLECTION!r})\n"
            f"q = json.load(open({q!r}))\nt2 = time.perf_counter()\n"
            f"r = c.search({COLLECTION!r}, [q], limit=5, output_fields=['text', 'file'])\n"
            "t3 = time.perf_counter()\nassert len(r[0]) == 5\n"
            f"c.search({COLLECTION!r}, [q], limit=5, output_fields=['text', 'file'])\n"
            "t4 = time.perf_counter()\n"
            "print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3]))\n"
            "c.close()\n"
        )


def _fresh_process(code: str, repeats: int) -> tuple[float, float, list[float] | None]:
    """Median wall and CPU time of a fresh interpreter running ``code``, and its phase times."""
    times = []
    cpu = []
    phases: list[list[float]] = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fresh-process run failed: {proc.stderr.strip()[-500:]}")
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if proc.stdout.strip():
            phases.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    median_phases = (
        [round(statistics.median(p[i] for p in phases), 3) for i in range(len(phases[0]))]
        if phases
        else None
    )
    return round(statistics.median(times), 3), round(statistics.median(cpu), 3), median_phases


def _cpu() -> float:
    """CPU seconds of this process (all threads) and its finished children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(store: Any, inputs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One alternation of one store, on inputs built before any timing."""
    vecs, queries, ids = inputs["vecs"], inputs["queries"], inputs["ids"]
    batches = inputs[store.name]
    result: dict[str, Any] = {}

    result["import_s"], result["import_cpu_s"], _ = _fresh_process(store.import_code, 1)

    t0 = time.perf_counter()
    store.open()
    store.create()
    result["open_and_create_s"] = round(time.perf_counter() - t0, 3)

    # write = every upsert + close(): Milvus Lite flushes its memtable at close, Qdrant local
    # mode commits each upsert; either way the points are on disk when the clock stops
    t0 = time.perf_counter()
    c0 = _cpu()
    with _bar(args.n, f"{store.name}: upsert", args.progress) as update:
        for rows in batches:
            store.upsert(rows)
            update(len(rows))
    store.close()
    write_s = time.perf_counter() - t0
    result["write_points_per_s"] = round(args.n / write_s, 1)
    result["write_s"] = round(write_s, 3)
    result["write_cpu_s"] = round(_cpu() - c0, 3)
    result["disk_mb"] = _disk_mb(store.path)

    t0 = time.perf_counter()
    store.open()
    store.load()
    result["reopen_s"] = round(time.perf_counter() - t0, 3)
    store.search(queries[0])  # warm-up
    lat = []
    cpu_lat = []
    correct = 0
    with _bar(args.queries, f"{store.name}: search", args.progress) as update:
        for q in queries:
            t0 = time.perf_counter()
            c0 = time.process_time()
            hits = store.search(q)
            lat.append((time.perf_counter() - t0) * 1000)
            cpu_lat.append((time.process_time() - c0) * 1000)
            correct += int(len(hits) == 5)
            update(1)
    lat.sort()
    result["search_ms_p50"] = round(statistics.median(lat), 2)
    result["search_ms_p95"] = round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2)
    result["search_cpu_ms_p50"] = round(statistics.median(cpu_lat), 2)
    result["searches_with_5_hits"] = correct

    # exactness check: the nearest neighbour of a stored vector is itself
    self_hit = store.search(vecs[7])
    result["self_hit_top1"] = bool(self_hit) and str(_hit_id(self_hit[0])) == ids[7]

    t0 = time.perf_counter()
    store.delete(ids[: args.batch])
    store.close()  # the delete is durable only once flushed
    result["delete_ms"] = round((time.perf_counter() - t0) * 1000, 1)

    qfile = store.path.parent / f"{store.name}-query.json"
    qfile.write_text(json.dumps(queries[0].tolist()))
    total, total_cpu, phases = _fresh_process(store.cold_code(str(qfile)), 1)
    result["cold_process_s"] = total
    result["cold_process_cpu_s"] = total_cpu
    if phases:
        result["cold_import_s"], result["cold_open_s"] = phases[0], phases[1]
        result["cold_first_query_s"], result["cold_second_query_s"] = phases[2], phases[3]
    return result


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of one figure over the alternations."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _hit_id(hit: Any) -> Any:
    if isinstance(hit, dict):
        return hit.get("id")
    return getattr(hit, "id", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="points to write (default 2000)")
    parser.add_argument("--dim", type=int, default=1024, help="vector size (default 1024)")
    parser.add_argument("--batch", type=int, default=64, help="points per upsert (default 64)")
    parser.add_argument("--queries", type=int, default=50, help="single queries (default 50)")
    parser.add_argument(
        "--alternations", type=int, default=3, help="interleaved rounds of both stores (>= 3)"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument(
        "--only", choices=["qdrant_local", "milvus_lite"], default=None, help="measure one store"
    )
    args = parser.parse_args(argv)

    out: dict[str, Any] = {
        "config": {
            "n": args.n,
            "dim": args.dim,
            "batch": args.batch,
            "queries": args.queries,
            "alternations": args.alternations,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        }
    }
    versions = {}
    for mod in ("qdrant_client", "pymilvus", "milvus_lite"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception:
            versions[mod] = None
    out["config"]["versions"] = versions

    classes = [c for c in (QdrantLocal, MilvusLite) if not args.only or c.name == args.only]
    # every input (vectors, ids, each store's rows) is built before any timing
    vecs = _vectors(args.n, args.dim, seed=1)
    ids = _ids(args.n)
    inputs: dict[str, Any] = {"vecs": vecs, "queries": _vectors(args.queries, args.dim, 2)}
    inputs["ids"] = ids
    for cls in classes:
        maker = cls(Path("."), args.dim)
        inputs[cls.name] = [
            maker.rows(ids[s : s + args.batch], vecs[s : s + args.batch], s)
            for s in range(0, args.n, args.batch)
        ]
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in classes}
    tmp = Path(tempfile.mkdtemp(prefix="jv3-store-bench-"))
    try:
        for rep in range(args.alternations):
            order = classes if rep % 2 == 0 else classes[::-1]  # ABBA: neither always first
            for cls in order:
                sub = "qdrant" if cls is QdrantLocal else "milvus.db"
                store = cls(tmp / f"{rep}-{sub}", args.dim)
                runs[cls.name].append(measure(store, inputs, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, results in runs.items():
        out[name] = {
            key: spread([r[key] for r in results])
            if isinstance(results[0][key], float | int) and not isinstance(results[0][key], bool)
            else [r[key] for r in results]
            for key in results[0]
        }
    if len(runs) == 2:
        q, m = runs["qdrant_local"], runs["milvus_lite"]
        out["milvus_vs_qdrant"] = {
            key: spread([a[key] / b[key] for a, b in zip(q, m, strict=True)])
            for key in ("write_s", "write_cpu_s", "search_ms_p50", "cold_process_s", "disk_mb")
        }
        out["milvus_vs_qdrant"]["note"] = (
            "qdrant / milvus per alternation: > 1 means Milvus Lite is faster (smaller)"
        )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
