"""`import jv3_integrations` must stay light: no torch, no host library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "torch",
    "qdrant_client",
    "pymilvus",
    "pinecone",
    "haystack",
    "llama_index",
    "langchain_core",
    "transformers",
    "tokenizers",
    "safetensors",
    "starlette",
    "uvicorn",
]


def test_import_loads_no_backend() -> None:
    code = (
        "import sys, jv3_integrations, jv3_integrations.core\n"
        "from jv3_integrations import load_provider, Task, Embeddings\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import jv3_integrations pulled in: {out.stdout.strip()}"
