"""Every bench in bench/ runs as shipped, in its smallest configuration, and prints both sides.

Not a measurement: a guard against benches rotting (a renamed API, a peer that no longer
imports, a JSON key the README quotes that disappeared). Each bench runs in a subprocess exactly
as a user would run it (``python bench/NAME.py ...``) and its JSON is checked for our figure
and the peer's (or the limit's) from the same run. A bench added to bench/ must be added here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

pytestmark = [pytest.mark.slow, pytest.mark.soak, pytest.mark.timeout(1200)]

# name -> the smallest configuration that still runs every contender
BENCHES: dict[str, list[str]] = {
    "api_throughput": [
        # 1 s budget windows scaled to the same rate, tiny vectors: the whole steady-state path
        "--tpm",
        "12000000",
        "--rpm",
        "60000",
        "--window",
        "1",
        "--steady-windows",
        "2",
        "--capacity",
        "2000000",
        "--latency",
        "0.01",
        "--dimensions",
        "16",
        "--peer-batch-sizes",
        "256",
        "--server-texts",
        "64",
        "--clients",
        "2",
    ],
    "local_throughput": [
        "--texts",
        "16",
        "--layers",
        "1",
        "--hidden",
        "64",
        "--heads",
        "2",
        "--intermediate",
        "128",
        "--rounds",
        "2",
        "--no-compile",
        "--corpus",
        "uniform",
        "--uniform-len",
        "32",
    ],
    "store_choice": [
        "--n",
        "64",
        "--dim",
        "16",
        "--queries",
        "5",
        "--batch",
        "32",
        "--alternations",
        "2",
    ],
    "ingest_memory": ["--texts", "300", "--alternations", "1"],
    "ingest": ["--passages", "40", "--stores", "qdrant", "--providers", "local"],
    "hybrid": ["--n", "60", "--dim", "16", "--queries", "3", "--batch", "32"],
    "ray_ingest": ["--passages", "40", "--hidden", "64", "--layers", "1"],
    "long_documents": ["--sizes", "2000,4000", "--proof-mb", "0.02"],
    "server_load": ["--levels", "4", "--seconds", "1"],
}
#: Benches with a smoke test of their own.
ELSEWHERE = {"gpu": "tests/test_bench_gpu.py"}


def run_bench(name: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *BENCHES[name], "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    start = done.stdout.index("{")
    return dict(json.loads(done.stdout[start:]))


def test_every_bench_is_listed() -> None:
    assert sorted(p.stem for p in BENCH.glob("*.py")) == sorted([*BENCHES, *ELSEWHERE])


def test_api_throughput() -> None:
    out = run_bench("api_throughput")
    client = out["client"]
    assert client["api"]["tokens_per_window"] == 200_000
    burst = client["burst"]
    assert burst["ours"]["lost"] == 0 and burst["ours"]["texts_per_s"] > 0
    # the server charges what its own tokenizer counts, not what our estimator predicts
    charged = burst["ours"]["server_tokens"] / burst["ours"]["texts"]
    estimate = client["api"]["our_estimate_tokens_per_text"]
    assert abs(charged - estimate) > 0.1 * estimate
    assert "jina_haystack_default" in burst and "jina_haystack_batch_256" in burst
    ours = client["steady_state"]["ours"]
    assert ours["lost"] == 0
    assert ours["steady"]["budget_windows"] >= 2  # steady state past the first window
    assert 0 < ours["steady"]["fraction_of_tpm"] <= 1.05
    peer = client["steady_state"]["jina_haystack_default"]
    assert "survived_429" in peer and peer["texts"] == ours["texts"]
    server = out["server"]
    assert server["max_abs_diff"] < 1e-4 and server["server_texts_per_s"] > 0


def test_local_throughput() -> None:
    out = run_bench("local_throughput")
    assert out["corpus"]["min_len"] == out["corpus"]["max_len"]  # uniform case
    ours = out["ours_default"]
    assert 0 <= ours["fraction_of_best_fp32_peak"] <= 1  # against the best fp32 probe
    for peer in ("batch32", "token_budget", "int8"):
        ratio = ours[f"vs_peer_transformers_{peer}"]
        assert ratio["per_round_min"] <= ratio["speedup"] <= ratio["per_round_max"]
    assert out["peer_transformers_batch32"]["min_cosine_to_ours_default"] > 0.999
    # an fp32 peak bounds fp32 work only: no fraction for the int8 rows
    assert "fraction_of_best_fp32_peak" not in out["ours_int8"]
    assert "fraction_of_best_fp32_peak" not in out["peer_transformers_int8"]
    assert "vs_peer_transformers_int8" in out["ours_int8"]
    # ONNX Runtime (FastEmbed's engine): the same export, the same vectors; its int8 too
    assert out["peer_onnx"]["min_cosine_to_ours_default"] > 0.999
    assert out["peer_onnx_int8"]["min_cosine_to_ours_default"] > 0.99
    assert "vs_peer_onnx_int8" in out["ours_int8"]


def test_store_choice() -> None:
    out = run_bench("store_choice")
    for store in ("qdrant_local", "milvus_lite"):
        assert out[store]["self_hit_top1"] == [True, True]
        write = out[store]["write_s"]
        assert write["min"] <= write["median"] <= write["max"]
    assert set(out["milvus_vs_qdrant"]["write_s"]) == {"median", "min", "max"}


def test_ingest_memory() -> None:
    out = run_bench("ingest_memory")
    assert out["errors"] == []
    assert out["provider"] == "hash" and out["dims"] == 128
    for run, summary in out["runs"].items():
        assert summary["stored"] == [300], run  # nothing lost, nothing duplicated
    kinds = {k: v["other_is"] for k, v in out["ours_vs_other"].items()}
    assert kinds == {
        "ours-null vs ablation-embed-all-null": "ablation",
        "ours-milvus vs ablation-embed-all-milvus": "ablation",
        "ours-qdrant vs llamaindex-qdrant": "peer",
    }


def test_ingest() -> None:
    out = run_bench("ingest")
    assert [r["stored"] for r in out["ours"]] == [40]
    assert out["peer"]["stored"] == 40


def test_hybrid() -> None:
    out = run_bench("hybrid")
    for store in ("qdrant_local", "milvus_lite"):
        hybrid = out[store]["hybrid_store"]
        assert hybrid["hybrid"]["query_ms_p50"] > 0 and hybrid["keyword"]["query_ms_p50"] > 0
        assert out[store]["hybrid_vs_dense_p50"] > 0  # both sides measured in the same run


def test_ray_ingest() -> None:
    out = run_bench("ray_ingest")
    for actors in ("ray_1", "ray_2"):
        assert out[actors]["texts_per_s"] > 0
        assert out[actors]["max_abs_diff_vs_in_process"] < 1e-5  # the same vectors on Ray
    assert out["in_process"]["texts_per_s"] > 0


def test_long_documents() -> None:
    out = run_bench("long_documents")
    assert [r["tokens"] > 0 for r in out["embed_chunks"]] == [True, True]
    assert len(out["jv3_index"]) == 2
    proof = out["proof_10mb"]
    assert proof["one_file"]["seconds"] > 0 and proof["hundred_files"]["seconds"] > 0
    # the end of a run is reported on its own (a spike there is not hidden in one peak)
    for row in (proof["one_file"], *out["jv3_index"]):
        assert row["peak_rss_mb_first_90pct"] > 0 and row["peak_rss_mb_last_10pct"] > 0


def test_server_load() -> None:
    out = run_bench("server_load")
    assert out["one_client_alone"]["200"]["n"] > 0
    [level] = out["levels"]
    assert level["clients"] == 4 and level["requests"] > 0
