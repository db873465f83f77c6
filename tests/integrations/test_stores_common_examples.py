"""The store examples run offline against the tiny model and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CONFORMANCE_DIR

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_store_examples_run_offline(tmp_path: Path) -> None:
    env = {**os.environ, "JV3_PROVIDER": f"local:{CONFORMANCE_DIR}"}
    runs = {
        "qdrant_quickstart.py": ["--dimensions", "32", "--top-k", "2"],
        "milvus_quickstart.py": ["--dimensions", "32", "--top-k", "2", "--uri", "./m/x.db"],
        "pinecone_quickstart.py": ["--loopback", "--top-k", "2"],
        "late_chunking_qdrant.py": ["--top-k", "2"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *argv],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in runs.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} failed:\n{stderr}"
        out[name] = stdout.splitlines()

    for name in ("qdrant_quickstart.py", "milvus_quickstart.py", "pinecone_quickstart.py"):
        lines = out[name]
        start = next(i for i, line in enumerate(lines) if line.startswith("query: "))
        assert "(4 passages)" in lines[start]
        assert len(lines) == start + 6, lines  # 2 hits, the filter header, 2 filtered hits
        assert all("Zugspitze" in x or "Berlin" in x for x in lines[start + 4 :]), lines
    assert (tmp_path / "m" / "x.db").exists()

    late = out["late_chunking_qdrant.py"]
    assert late[0] == "late chunking: 6 chunks" and late[3] == "independent chunks: 6 chunks"
    assert late[-1] == "after re-adding a shorter version: 2 chunks"
