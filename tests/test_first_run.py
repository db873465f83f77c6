"""Issue 17: what a new user trips over on a first run of ``jv3`` (one test per item).

Error cases run ``main()`` in-process (one torch import); the end-to-end first run is a
subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jv3_integrations.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- item 6: --store qdrant:FILE ------------------------------------------------------------


def test_qdrant_store_on_a_file_says_what_to_do(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    (clean_env / "doc.txt").write_text("Tides follow the Moon.", encoding="utf-8")
    (clean_env / "afile").write_text("not a folder", encoding="utf-8")
    code, _, err = _run(
        capsys, "index", "doc.txt", "--store", "qdrant:./afile",
        "--provider", f"local:{conformance_dir}", "--no-progress",
    )  # fmt: skip
    [line] = _lines(err)
    assert code == 1 and "File exists" not in line
    assert "is a file" in line and "folder" in line and "milvus:" in line


# -- item 11: skips counted by reason, --include-hidden, plural -------------------------------


def test_skips_are_counted_by_reason_and_include_hidden_indexes_them(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    docs = clean_env / "docs"
    (docs / ".notes").mkdir(parents=True)
    (docs / "a.md").write_text("Paella comes from Valencia.", encoding="utf-8")
    (docs / ".notes" / "b.md").write_text("Tides follow the Moon.", encoding="utf-8")
    (docs / ".draft.txt").write_text("Berlin is a city.", encoding="utf-8")
    (docs / "data.csv").write_text("a,b", encoding="utf-8")
    base = ["index", "docs", "--provider", f"local:{conformance_dir}", "--no-progress"]

    code, out, _ = _run(capsys, *base, "--store", "qdrant::memory:")
    [line] = _lines(out)
    assert code == 0 and line.startswith("Indexed 1 file (1 new,"), line  # not "1 files"
    assert "not indexed: 1 hidden file, 1 hidden folder, 1 unsupported type" in line
    assert "--include-hidden" in line

    code, out, _ = _run(capsys, *base, "--store", "qdrant::memory:", "--json")
    report = json.loads(out)
    assert report["ignored"] == {"hidden folder": 1, "hidden file": 1, "unsupported type": 1}

    code, out, _ = _run(capsys, *base, "--store", "qdrant::memory:", "--include-hidden", "--json")
    report = json.loads(out)
    assert code == 0 and report["files"] == 3 and report["ignored"] == {"unsupported type": 1}
