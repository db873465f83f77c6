"""Long documents: peak memory and speed of late chunking and ``jv3 index`` by length.

Runs, each in a fresh subprocess whose own peak RSS (``wait4`` ru_maxrss) is measured, with
the conformance model (``tests/data/tiny-v3``):

- ``embed_chunks`` of one document of 10k, 100k and 1M tokens (``LocalProvider`` defaults:
  8192-token windows, 512 overlap; ``SentenceChunker(max_chars=2000)``);
- ``jv3 index`` of a folder holding one file of each length (Qdrant local store);
- the proof: ``jv3 index`` of one 10 MB file against the same text split into 100 files.

Peak RSS is also sampled over time (``/proc``, every 50 ms) and reported for the first 90 %
and the last 10 % of each run's wall time (``peak_rss_mb_first_90pct`` / ``_last_10pct``), so
a spike at the end of a run (issue 26: writing a long file's chunks at once) shows as such.

The limits reported next to each figure (measured in the same run): the largest document's
peak within 300 MB of the smallest one's, its tokens/s within 20 % of the smallest one's;
``jv3 index`` of the 10 MB file under 1.5 GB and within 1.3x the wall time of 100 files.

Prints one JSON object. Usage::

    python bench/long_documents.py                                   # the full configuration
    python bench/long_documents.py --sizes 2000,20000 --proof-mb 0.2 # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "data" / "tiny-v3"
SENTENCES = [
    "berlin is the capital of germany .",
    "its population is about four million .",
    "the river spree flows through berlin .",
    "embedding models represent documents as vectors .",
    "late chunking keeps the context of the whole document .",
    "long documents lose context when they are cut .",
    "retrieval of evidence needs a query and a passage .",
]

_EMBED_CHILD = """
import json, sys, time
from jv3_integrations import LocalProvider, SentenceChunker, embed_chunks
model, path = sys.argv[1], sys.argv[2]
provider = LocalProvider(model)
provider.load()
doc = open(path, encoding="utf-8").read()
t0 = time.perf_counter()
chunks = embed_chunks(provider, doc, chunker=SentenceChunker(max_chars=2000))
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "chunks": len(chunks)}))
"""


def _text(tokens: int, seed: int = 0) -> str:
    """About ``tokens`` conformance-tokenizer tokens of sentences (~9 tokens each)."""
    import random

    rng = random.Random(seed)
    return " ".join(rng.choice(SENTENCES) for _ in range(tokens // 9 + 1)) + "\n"


#: Peak RSS of the last run by part of its wall time (``_measured`` fills it).
LAST_PHASES: dict[str, int | None] = {}


def _sample_rss(pid: int, t0: float, samples: list[tuple[float, float]], done: Any) -> None:
    """VmRSS of ``pid`` every 50 ms until ``done`` is set (Linux ``/proc``; else nothing)."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        samples.append((time.perf_counter() - t0, int(line.split()[1]) / 1024))
        except OSError:
            return
        done.wait(0.05)


def _measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd`` in its own child and read that child's peak RSS with ``wait4``.

    Also samples its RSS over time into :data:`LAST_PHASES` (first 90 % / last 10 % of the
    wall time).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, t0, samples, done))
    sampler.start()
    out = proc.stdout.read()
    err = proc.stderr.read()
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    cut = 0.9 * wall
    first = [r for t, r in samples if t <= cut]
    last = [r for t, r in samples if t > cut]
    LAST_PHASES.clear()
    LAST_PHASES["peak_rss_mb_first_90pct"] = round(max(first)) if first else None
    LAST_PHASES["peak_rss_mb_last_10pct"] = round(max(last)) if last else None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out


def _tokens(path: Path) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from jv3_integrations import LocalProvider
    from jv3_integrations.core._tokenize import sections

    provider = LocalProvider(str(MODEL))
    pieces = list(sections(path.read_text(encoding="utf-8")))
    return sum(c - 2 for c in provider.count_tokens(pieces).counts) + 2


def _index(folder: Path, store: Path, env: dict[str, str]) -> tuple[float, float, dict[str, Any]]:
    cmd = [sys.executable, "-m", "jv3_integrations", "index", str(folder)]
    cmd += ["--store", f"qdrant:{store}", "--provider", f"local:{MODEL}", "--no-progress"]
    wall, peak, out = _measured([*cmd, "--json"], env)
    return wall, peak, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="document lengths (tokens)")
    ap.add_argument("--proof-mb", type=float, default=10.0, help="size of the one-file proof")
    ap.add_argument("--no-index", action="store_true", help="skip jv3 index by length")
    ap.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress lines"
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU, as the limits are stated
    result: dict[str, Any] = {
        "model": str(MODEL),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "embed_chunks": [],
        "jv3_index": [],
    }
    with tempfile.TemporaryDirectory(prefix="jv3-long-") as tmp:
        root = Path(tmp)
        for n in sizes:
            if args.progress:
                print(f"long_documents: {n:,}-token document ...", file=sys.stderr, flush=True)
            folder = root / f"doc{n}"
            folder.mkdir()
            path = folder / "doc.txt"
            path.write_text(_text(n), encoding="utf-8")
            tokens = _tokens(path)
            wall, peak, out = _measured(
                [sys.executable, "-c", _EMBED_CHILD, str(MODEL), str(path)], env
            )
            seconds = json.loads(out)["seconds"]
            result["embed_chunks"].append(
                {
                    "tokens": tokens,
                    "peak_rss_mb": round(peak),
                    "seconds": round(seconds, 2),
                    "tokens_per_s": round(tokens / seconds),
                }
            )
            if not args.no_index:
                wall, peak, report = _index(folder, root / f"q{n}", env)
                result["jv3_index"].append(
                    {
                        "tokens": tokens,
                        "peak_rss_mb": round(peak),
                        **LAST_PHASES,
                        "seconds": round(wall, 2),
                        "tokens_per_s": round(tokens / wall),
                        "chunks": report["chunks_embedded"],
                    }
                )
        for key in ("embed_chunks", "jv3_index"):
            rows = result[key]
            if len(rows) > 1:
                small, large = rows[0], rows[-1]
                result[f"{key}_limits"] = {
                    "peak_growth_mb": large["peak_rss_mb"] - small["peak_rss_mb"],
                    "peak_growth_limit_mb": 300,
                    "speed_ratio_large_vs_small": round(
                        large["tokens_per_s"] / small["tokens_per_s"], 3
                    ),
                    "speed_ratio_limit": 0.8,
                }
        if args.proof_mb > 0:
            text = _text(int(args.proof_mb * 1e6 / 4.3))[: int(args.proof_mb * 1e6)]
            one = root / "one"
            one.mkdir()
            (one / "big.txt").write_text(text, encoding="utf-8")
            many = root / "many"
            many.mkdir()
            step = len(text) // 100 + 1
            for i in range(100):  # cut at sentence ends so both hold the same sentences
                a = text.rfind(". ", 0, i * step) + 2 if i else 0
                b = text.rfind(". ", 0, (i + 1) * step) + 2 if i < 99 else len(text)
                (many / f"part{i:03d}.txt").write_text(text[a:b], encoding="utf-8")
            w1, p1, r1 = _index(one, root / "q_one", env)
            phases1 = dict(LAST_PHASES)
            w2, p2, _ = _index(many, root / "q_many", env)
            phases2 = dict(LAST_PHASES)
            result["proof_10mb"] = {
                "mb": round(len(text.encode()) / 1e6, 2),
                "tokens": r1["tokens"],
                "one_file": {"seconds": round(w1, 2), "peak_rss_mb": round(p1), **phases1},
                "hundred_files": {"seconds": round(w2, 2), "peak_rss_mb": round(p2), **phases2},
                "wall_ratio": round(w1 / w2, 3),
                "wall_ratio_limit": 1.3,
                "peak_limit_mb": 1536,
                "ok": p1 < 1536 and w1 / w2 <= 1.3,
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
