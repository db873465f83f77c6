"""Peak memory of ingestion: our streaming ``add_texts`` vs LlamaIndex, and vs an ablation.

Each run indexes ``--texts`` short texts (100,000 by default) in a fresh child process, so its
peak RSS (``VmHWM``) belongs to that run alone; the runs alternate ``--alternations`` times
(rotating order) and the parent prints one JSON object with median/min/max per figure. Runs:

- ``ours-null`` / ``ablation-embed-all-null``: the pipeline alone, into a store that counts
  and discards each batch (our ``add_texts`` loop vs the ablation: embed everything, build every
  row, then upsert). The ablation is our own code with streaming removed, not a peer.
- ``ours-milvus``: ``MilvusStore.add_texts`` (Milvus Lite file): embed one batch, upsert it,
  next; then flush. ``ablation-embed-all-milvus``: embed every text first, build every row,
  upsert in batches, flush (what a hand-written script over ``MilvusClient`` does).
- ``ours-qdrant``: ``QdrantStore.add_texts`` on Qdrant local mode (``:memory:``).
- ``llamaindex-qdrant`` (peer): LlamaIndex ``VectorStoreIndex(nodes, ...)`` over its own
  ``QdrantVectorStore`` (``llama-index-vector-stores-qdrant``, in ``bench/requirements.txt``)
  on the same kind of Qdrant local client, embedding with our ``JinaV3Embedding`` over the same
  provider (so only the pipeline differs). Its nodes are built before its baseline, as our
  texts are.

Milvus Lite (its memtable) and Qdrant local mode keep the points in this process, so those rows
include the store's own memory (the same for ours and the other); the null rows do not.
``growth_mib`` = peak RSS minus the RSS just before indexing (imports, provider, inputs already
in memory); ``rss_mib_at`` samples RSS at 25/50/75/100% of the run's time: flat for a
streaming pipeline, rising for embed-all.

The provider is ``hash`` by default (deterministic SHA-256 pseudo-embeddings of ``--dims`` = 128
dimensions: no model, so it measures the pipeline, not the model); ``--provider local:DIR`` uses
the local model (e.g. the tiny conformance checkpoint), ``--provider http://...`` a server.

Usage::

    python bench/ingest_memory.py                              # 100,000 texts, all runs, x3
    python bench/ingest_memory.py --texts 5000 --runs ours-milvus,ablation-embed-all-milvus
    python bench/ingest_memory.py --provider local:tests/data/tiny-v3 --texts 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from jv3_integrations import BaseProvider, Embeddings, EmbedRequest, load_provider  # noqa: E402
from jv3_integrations.integrations._store import SyncStore  # noqa: E402

RUNS = (
    "ours-null",
    "ablation-embed-all-null",
    "ours-milvus",
    "ablation-embed-all-milvus",
    "ours-qdrant",
    "llamaindex-qdrant",
)
# (ours, other, what the other is): an ablation is our own code with streaming removed; a peer
# is another project's pipeline
PAIRS = (
    ("ours-null", "ablation-embed-all-null", "ablation"),
    ("ours-milvus", "ablation-embed-all-milvus", "ablation"),
    ("ours-qdrant", "llamaindex-qdrant", "peer"),
)
TOPICS = ["river", "train", "bread", "music", "weather", "chess", "bees", "harbour", "castle"]


class HashProvider(BaseProvider):
    """Deterministic pseudo-embeddings from SHA-256 (no model): isolates pipeline memory."""

    def __init__(self, dims: int) -> None:
        self._dims = dims

    @property
    def model_name(self) -> str:
        return "hash"

    @property
    def max_dimensions(self) -> int:
        return self._dims

    def _embed(self, request: EmbedRequest) -> Embeddings:
        n, d = len(request.texts), request.dimensions
        out = np.empty((n, d), dtype=np.float32)
        for i, text in enumerate(request.texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(d, dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return Embeddings(out, self.model_name, request.task, d)


class NullStore(SyncStore):
    """A store that writes nowhere: builds each batch's rows, counts them, drops them."""

    def __init__(self, provider: BaseProvider, **kwargs: Any) -> None:
        super().__init__(provider=provider, dimensions=kwargs.pop("dimensions"), **kwargs)
        self.written = 0

    def sink(self, n: int) -> None:
        self.written += n

    def create(self) -> None:
        return None

    def _upsert(self, records: list[Any], full: Any, small: Any) -> None:
        rows = [
            {"id": r.id, "text": r.text, "vector": full[i].tolist()} for i, r in enumerate(records)
        ]
        self.sink(len(rows))

    def _delete_ids(self, ids: list[str]) -> None:
        return None

    def _delete_stale_chunks(self, counts: dict[str, int]) -> None:
        return None

    def _search(self, full: Any, small: Any, k: int, filter: Any) -> list[list[Any]]:
        return []

    def count(self) -> int:
        return self.written


def corpus(n: int) -> list[str]:
    return [
        f"Note {i}: people in town {i % 997} talk about {TOPICS[i % len(TOPICS)]} on day {i % 31}."
        for i in range(n)
    ]


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """Samples this process's RSS every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - start, rss_mib()))
            self.stop.wait(0.05)

    def at(self, fractions: Sequence[float]) -> list[float]:
        if not self.samples:
            return []
        end = self.samples[-1][0]
        return [
            round(next(r for t, r in self.samples if t >= f * end - 1e-9), 1) for f in fractions
        ]


# -- one run, in the child process ---------------------------------------------------------


def worker(args: argparse.Namespace) -> dict[str, Any]:
    spec: str = args.provider
    provider = HashProvider(args.dims) if spec == "hash" else load_provider(spec)
    load = getattr(provider, "load", None)
    if callable(load):
        load()
    texts = corpus(args.texts)
    tmp = Path(tempfile.mkdtemp(prefix="jv3-mem-"))
    run = args.worker
    show = not args.no_progress
    batch = args.batch_size

    if run in ("ours-null", "ablation-embed-all-null"):
        null = NullStore(provider, dimensions=args.dims, batch_size=batch, progress_bar=show)
        count = null.count
    elif run in ("ours-milvus", "ablation-embed-all-milvus"):
        from pymilvus import MilvusClient

        from jv3_integrations.milvus import MilvusStore

        client = MilvusClient(str(tmp / "mem.db"))
        store = MilvusStore(
            provider,
            client=client,
            collection="mem",
            dimensions=args.dims,
            batch_size=batch,
            index_type="FLAT",
            progress_bar=show,
        )
        store.create()
        count = store.count
    else:
        from qdrant_client import QdrantClient

        qclient = QdrantClient(":memory:")  # local mode on disk commits each upsert: ~70/s
        if run == "ours-qdrant":
            from jv3_integrations.qdrant import QdrantStore

            qstore = QdrantStore(
                provider,
                client=qclient,
                collection="mem",
                dimensions=args.dims,
                batch_size=batch,
                progress_bar=show,
            )
            qstore.create()

        def count() -> int:
            return int(qclient.count("mem", exact=True).count)

    if run == "llamaindex-qdrant":  # the peer's input, built before its baseline like ours
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        from jv3_integrations.llama_index import JinaV3Embedding

        nodes = [TextNode(text=t, id_=f"{i:032x}") for i, t in enumerate(texts)]
        vector_store = QdrantVectorStore(client=qclient, collection_name="mem")
        storage = StorageContext.from_defaults(vector_store=vector_store)
        embed_model = JinaV3Embedding(provider, dimensions=args.dims, embed_batch_size=batch)

    baseline = rss_mib()
    sampler = Sampler()
    sampler.start()
    started = time.perf_counter()
    if run == "ours-null":
        null.add_texts(texts)
    elif run == "ablation-embed-all-null":
        vectors = provider.embed_documents(texts, dimensions=args.dims).vectors  # all at once
        rows = [
            {"id": f"n{i}", "text": t, "metadata": {}, "vector": vectors[i].tolist()}
            for i, t in enumerate(texts)
        ]
        for start in range(0, len(rows), batch):
            null.sink(len(rows[start : start + batch]))
    elif run == "ours-milvus":
        store.add_texts(texts)
        client.flush("mem")  # durable inside the timing, as for the ablation
    elif run == "ablation-embed-all-milvus":
        vectors = provider.embed_documents(texts, dimensions=args.dims).vectors  # all at once
        rows = [
            {"id": f"n{i}", "text": t, "metadata": {}, "vector": vectors[i].tolist()}
            for i, t in enumerate(texts)
        ]
        for start in range(0, len(rows), batch):
            client.upsert("mem", rows[start : start + batch])
        client.flush("mem")
    elif run == "ours-qdrant":
        qstore.add_texts(texts)
    else:
        VectorStoreIndex(
            nodes, storage_context=storage, embed_model=embed_model, show_progress=show
        )
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    peak = rss_mib("VmHWM")
    stored = count()
    return {
        "run": run,
        "texts": len(texts),
        "stored": stored,
        "seconds": round(seconds, 2),
        "texts_per_s": round(len(texts) / seconds, 1),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "growth_mib": round(peak - baseline, 1),
        "rss_mib_at": dict(
            zip(("25%", "50%", "75%", "100%"), sampler.at([0.25, 0.5, 0.75, 1.0]), strict=False)
        ),
    }


# -- the parent: one child per run, one JSON object --------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000, help="texts to index per run")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {RUNS}")
    parser.add_argument("--provider", default="hash", help="'hash', 'local:DIR' or a server URL")
    parser.add_argument("--dims", type=int, default=128, help="vector size (<= the model's)")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per embed+upsert")
    parser.add_argument(
        "--alternations", type=int, default=3, help="interleaved rounds of every run (>= 3)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args)
        print(json.dumps(result))
        return result
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {RUNS}")
    results: dict[str, list[dict[str, Any]]] = {run: [] for run in runs}
    errors: list[dict[str, Any]] = []
    for rep in range(args.alternations):
        order = runs[rep % len(runs) :] + runs[: rep % len(runs)]  # rotate: none always first
        for run in order:
            cmd = [sys.executable, __file__, "--worker", run, "--texts", str(args.texts)]
            cmd += ["--provider", args.provider, "--dims", str(args.dims)]
            cmd += ["--batch-size", str(args.batch_size)]
            if args.no_progress:
                cmd.append("--no-progress")
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
            if done.returncode != 0:
                errors.append({"run": run, "error": f"exit status {done.returncode}"})
                continue
            results[run].append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary: dict[str, Any] = {}
    for run, rows in results.items():
        if rows:
            summary[run] = {
                key: _spread([r[key] for r in rows])
                for key in ("growth_mib", "peak_rss_mib", "texts_per_s", "seconds")
            }
            summary[run]["stored"] = [r["stored"] for r in rows]
            summary[run]["rss_mib_at"] = [r["rss_mib_at"] for r in rows]
    comparison = {}
    for ours, other, kind in PAIRS:
        a, b = results.get(ours, []), results.get(other, [])
        if a and b and len(a) == len(b):
            comparison[f"{ours} vs {other}"] = {
                "other_is": kind,
                "growth_mib": [summary[ours]["growth_mib"], summary[other]["growth_mib"]],
                "peak_rss_mib": [summary[ours]["peak_rss_mib"], summary[other]["peak_rss_mib"]],
                "texts_per_s": [summary[ours]["texts_per_s"], summary[other]["texts_per_s"]],
                "speed_ratio": _spread(
                    [x["texts_per_s"] / y["texts_per_s"] for x, y in zip(a, b, strict=True)]
                ),
                "growth_ratio_other_over_ours": _spread(
                    [y["growth_mib"] / max(x["growth_mib"], 1.0) for x, y in zip(a, b, strict=True)]
                ),
            }
    report = {
        "benchmark": "ingest_memory",
        "texts": args.texts,
        "provider": args.provider,
        "provider_note": (
            "hash: deterministic SHA-256 pseudo-embeddings, no model: the pipeline's memory alone"
            if args.provider == "hash"
            else "a real provider: the model's memory too"
        ),
        "dims": args.dims,
        "batch_size": args.batch_size,
        "alternations": args.alternations,
        "method": (
            "each run in a fresh child process; the runs alternate (rotating order) "
            f"{args.alternations} times; figures are median/min/max over the alternations; "
            "every input (texts, the peer's nodes) is built before the RSS baseline; "
            "ablation-* rows are our own code with streaming removed, not a peer"
        ),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "runs": summary,
        "errors": errors,
        "ours_vs_other": comparison,
    }
    print(json.dumps(report, indent=2))
    return report


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
