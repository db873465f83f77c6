#!/usr/bin/env bash
# bench/gpu.py on the GPU machine, in one go (from the project root):
#
#     bash bench/gpu_run.sh            # writes bench/results/gpu.json and prints it
#
# Before device time is spent: `python bench/gpu.py --device cpu --small` (tests/test_bench_gpu.py).
# What it needs there (no network): torch with CUDA, transformers >= 5 (the peer),
# tokenizers, safetensors, numpy; starlette/uvicorn/httpx for the server case, installed here
# from bench/wheels/ when that folder was carried (fill it with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d bench/wheels "starlette>=0.40" "uvicorn>=0.30" "httpx>=0.27"
# and pass carry=["bench/wheels"]); and the conformance data in ./shared (copy
# ../shared/conformance to ./shared/conformance) or $JV3_SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ -d bench/wheels ]; then
    "$PY" -m pip install -q --no-index --find-links bench/wheels starlette uvicorn httpx \
        || echo "gpu_run.sh: server wheels not installed; the server case will say why" >&2
fi
if [ -z "${JV3_SHARED:-}" ] && [ ! -d shared/conformance ] && [ -d ../shared/conformance ]; then
    export JV3_SHARED="$(cd ../shared && pwd)"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >&2
PYTHONPATH=src exec "$PY" bench/gpu.py --device cuda "$@"
