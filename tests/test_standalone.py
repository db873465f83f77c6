"""Issue 27.1: the repository stands alone. A copy of the tracked files in a folder with no
``../shared`` (or anything else) beside it runs its tests: nothing the tests read lives outside
the checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

#: a few fast tests that read the test data (the tiny checkpoint, the API specs) and run the CLI
TESTS = [
    # two conformance cases (the checkpoint's weights, tokenizer and expected outputs)
    "tests/core/test_local_conformance.py::test_conformance_case"
    "[encode-retrieval.passage-dimNone-normTrue-maxNone]",
    "tests/core/test_local_conformance.py::test_conformance_case"
    "[late-retrieval.passage-4chunks-windowNone]",
    "tests/cli/test_cli_units.py::test_demo_corpus_is_multilingual_and_consistent",
    "tests/cli/test_offline_message.py",
]


#: ``../shared``, ``JV3_SHARED``, or a path built as ``<something>.parent / "shared"``
_OUTSIDE = re.compile(r"\.\./shared|JV3_SHARED|\.parent\s*/\s*[\"']shared[\"']")


def _tracked_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist or a copy): nothing to list the files with")
    proc = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [name for name in proc.stdout.decode().split("\0") if name]


def test_no_tracked_file_reaches_outside_the_checkout() -> None:
    for name in _tracked_files():
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".ini", ".cfg", ".yml", ".sh", ""}:
            continue
        if name == "tests/test_standalone.py" or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not _OUTSIDE.search(text), name


def test_a_copy_without_shared_beside_it_runs_its_tests(tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    for name in _tracked_files():
        src = ROOT / name
        if not src.is_file():
            continue  # deleted in the work tree, not yet committed
        dst = copy / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JV3_")}
    env["PYTHONPATH"] = str(copy / "src")  # the copy's code, not this checkout's
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:randomly", *TESTS],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "error" not in proc.stdout.lower().split("passed")[-1]
