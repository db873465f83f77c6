"""Issue 27 (friction): running an example leaves nothing behind in the folder it runs from
(``examples/milvus_quickstart.py`` used to leave ``./milvus_data/`` in the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jv3_integrations

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["milvus_quickstart.py"])
def test_quickstart_leaves_the_working_folder_as_it_was(
    script: str, tmp_path: Path, conformance_dir: Path
) -> None:
    env = dict(os.environ)
    here = str(Path(jv3_integrations.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--provider", f"local:{conformance_dir}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
