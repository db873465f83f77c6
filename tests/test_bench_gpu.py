"""``bench/gpu.py --device cpu --small`` runs end to end, so the GPU run is known to work."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_gpu_bench_smoke_run_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu.py"),
            "--device",
            "cpu",
            "--small",
            "--out",
            str(out),
            "--clients",
            "4",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1700,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed
    keys = list(printed)[:5]
    assert keys == [
        "device",
        "min_cosine",
        "ratio_long_tailed",
        "ratio_uniform_512",
        "peak_fraction_uniform_512",
    ]
    # CPU bf16 vs CPU fp32 on tiny models: close, and fp32 vs fp32 exact
    assert printed["min_cosine"] > 0.99
    assert printed["max_abs_diff_fp32"] <= 1e-6
    kinds = {c["kind"] for c in printed["fidelity_full_size"]["cases"]}
    assert kinds == {"encode", "late_chunking", "long_late_chunking"}
    tasks = {c["task"] for c in printed["fidelity_full_size"]["cases"] if c["kind"] == "encode"}
    assert len(tasks) == 6  # every task and none
    tp = printed["throughput"]
    for case in ("long_tailed", "uniform_512", "late_chunking_8000"):
        assert tp[case]["ours"]["tokens_per_s"] > 0
    assert 0 < printed["peak_fraction_uniform_512"] < 1
    if importlib.util.find_spec("transformers") is not None:
        # the peer computes the same model: equal vectors, and a ratio for each case
        for case in ("long_tailed", "uniform_512", "late_chunking_8000"):
            assert tp[case]["min_cosine_ours_vs_peer"] > 0.999, tp["peer"]
            assert tp[case]["ratio"] > 0
        assert printed["ratio_long_tailed"] == tp["long_tailed"]["ratio"]
    server = printed["server"]
    assert server["clients"] == 4 and server["min_cosine_server_vs_in_process"] > 0.9999
    assert server["server_tokens_per_s"] > 0
