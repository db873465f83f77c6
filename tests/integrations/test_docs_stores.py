"""Every python block of ``docs/stores.md`` runs (from the repository root, offline, on the tiny
model); a block marked ``<!-- skip-test: reason -->`` is compiled only."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "stores.md"
_BLOCK = re.compile(r"(?:<!--\s*skip-test:\s*(.+?)\s*-->\s*\n)?```python\n(.*?)```", re.S)


def _blocks() -> list[tuple[str | None, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_the_page_has_runnable_blocks() -> None:
    blocks = _blocks()
    assert len([b for b in blocks if b[0] is None]) >= 2
    assert [reason for reason, _ in blocks if reason] == [
        "needs a Qdrant server, a Milvus server and a Pinecone key"
    ]


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_block_runs(index: int) -> None:
    reason, code = _blocks()[index]
    if reason is not None:
        compile(code, f"{DOC}:block{index}", "exec")
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()
