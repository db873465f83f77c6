"""Ray Data vs the in-process pipeline: texts/s embedding the same passages in one run.

Contenders, on the same random checkpoint (official layout, ``--hidden``/``--layers`` sized so
the model, not the bookkeeping, is the work) and the same ``--passages`` passages:

- ``in_process``: ``LocalProvider.embed_documents`` over the corpus in slices of 512 (what
  ``add_texts`` does), model loaded before the clock starts;
- ``ray_1`` / ``ray_2``: ``embed_dataset`` with 1 and 2 actors on a local Ray of ``--cpus``
  CPUs (each actor gets ``cpus / actors`` of them, so both use the whole machine), rows
  streamed back to the driver as ``write_store`` does with one writer. The clock includes
  what a user waits for: the input check, the provider check on a worker, starting the
  actors and loading the model in each; ``ray.init`` itself is outside it.

Reports texts/s, the Ray/in-process ratio (target >= 0.7 with one actor) and the driver's
peak RSS during the Ray runs (the data stays in Ray's object store and the actors; the driver
holds one batch). Prints one JSON object::

    python bench/ray_ingest.py                      # 2,000 passages
    python bench/ray_ingest.py --passages 200       # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(  # Ray workers import this tree too
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)

WORDS = [
    "river",
    "mountain",
    "train",
    "bread",
    "music",
    "weather",
    "chess",
    "bees",
    "harbour",
    "castle",
    "garden",
    "winter",
]


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"passage {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 120)))
        for i in range(n)
    ]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()

    import numpy as np
    import ray
    import ray.data
    from tests.support.checkpoints import build_checkpoint

    from jv3_integrations import LocalProvider
    from jv3_integrations.ray import embed_dataset

    texts = corpus(args.passages, args.seed)
    out: dict[str, Any] = {
        "benchmark": "ray_ingest",
        "passages": len(texts),
        "config": vars(args),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = build_checkpoint(
            Path(tmp) / "model",
            hidden=args.hidden,
            layers=args.layers,
            heads=max(1, args.hidden // 64),
            intermediate=4 * args.hidden,
        )
        spec = f"local:{model}"
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = args.progress
        rows = [{"id": i, "text": t} for i, t in enumerate(texts)]
        vectors: dict[str, Any] = {}
        for actors in (1, 2):
            ds = ray.data.from_items(rows, override_num_blocks=8)
            t0 = time.perf_counter()
            embedded = embed_dataset(
                ds,
                spec,
                concurrency=actors,
                ray_remote_args={"num_cpus": args.cpus / actors},
            )
            got: dict[int, Any] = {}
            for batch in embedded.iter_batches(batch_size=256, batch_format="numpy"):
                for i, v in zip(batch["id"], batch["embedding"], strict=True):
                    got[int(i)] = v
            seconds = time.perf_counter() - t0
            vectors[f"ray_{actors}"] = np.stack([got[i] for i in range(len(texts))])
            out[f"ray_{actors}"] = {
                "actors": actors,
                "seconds": round(seconds, 3),
                "texts_per_s": round(len(texts) / seconds, 1),
            }
        out["driver_peak_rss_mib_ray"] = round(peak_rss_mib(), 1)
        ray.shutdown()

        provider = LocalProvider(str(model))
        provider.embed_documents(texts[:8])  # load outside the clock
        t0 = time.perf_counter()
        parts = [
            provider.embed_documents(texts[i : i + 512]).vectors for i in range(0, len(texts), 512)
        ]
        seconds = time.perf_counter() - t0
        local = np.concatenate(parts)
        out["in_process"] = {
            "seconds": round(seconds, 3),
            "texts_per_s": round(len(texts) / seconds, 1),
        }
        out["driver_peak_rss_mib_after_in_process"] = round(peak_rss_mib(), 1)
    for name in ("ray_1", "ray_2"):
        out[name]["ratio_vs_in_process"] = round(
            out[name]["texts_per_s"] / out["in_process"]["texts_per_s"], 3
        )
        out[name]["max_abs_diff_vs_in_process"] = float(np.abs(vectors[name] - local).max())
    out["target"] = "ray_1 ratio >= 0.7"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
