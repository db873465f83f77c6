#!/usr/bin/env bash
# bench/gpu.py on the GPU machine, in one go (from the project root):
#
#     bash bench/gpu_run.sh                          # writes bench/results/gpu.json, prints it
#
# Through the device tool, after filling bench/wheels (below), one call:
#
#     run(command='bash bench/gpu_run.sh --no-progress --out "$OUT/gpu.json"',
#         carry=["bench/wheels"], timeout_s=600)
#
# then copy the returned gpu.json to bench/results/gpu.json. Extra flags go to bench/gpu.py
# (`--skip fidelity,server` reruns only the throughput part). Check it first on CPU:
# `python bench/gpu.py --device cpu --small` (what tests/test_bench_gpu.py runs).
# What it needs there (no network): torch with CUDA, transformers >= 5 (the peer),
# tokenizers, safetensors, numpy; starlette/uvicorn/httpx for the server case, installed
# from bench/wheels/ when that folder was carried (fill it with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d bench/wheels "starlette>=0.40" "uvicorn>=0.30" "httpx>=0.27"
# ); the conformance data is the checkout's own tests/data/tiny-v3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
EXTRA=""
if ! "$PY" -c "import starlette, uvicorn, httpx" 2>/dev/null && [ -d bench/wheels ]; then
    # into a folder of our own (no write to the system site-packages needed)
    DEPS="$(mktemp -d)"
    if "$PY" -m pip install -q --no-index --find-links bench/wheels --target "$DEPS" \
        starlette uvicorn httpx; then
        EXTRA=":$DEPS"
    else
        echo "gpu_run.sh: server wheels not installed; the server case will say why" >&2
    fi
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >&2
PYTHONPATH="src$EXTRA" exec "$PY" bench/gpu.py --device cuda "$@"
