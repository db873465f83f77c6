"""``jv3 index --hybrid`` and ``jv3 search --mode`` on Qdrant local mode and Milvus Lite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import _one_line_error, _run

pytestmark = pytest.mark.slow


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


DOCS = {
    "rabbit.txt": "The white rabbit is in berlin. The long river is white.",
    "incident.md": "The model of berlin is not ERR-4471 today.",
    "capital.txt": "The capital of germany is berlin. The weather is long.",
}


@pytest.mark.parametrize("store", ["qdrant:./q", "milvus:./m/jv3.db"])
def test_index_hybrid_then_search_modes(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path, store: str
) -> None:
    for fname, text in DOCS.items():
        (clean_env / fname).write_text(text, encoding="utf-8")
    spec = f"local:{conformance_dir}"
    base = ["--store", store]
    code, out, err = _run(
        capsys, "index", ".", *base, "--provider", spec, "--hybrid", "--no-progress", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["settings"]["hybrid"] is True
    state_file = next(clean_env.rglob("*.jv3-state.json"))
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["collections"]["jv3"]["settings"]["hybrid"] is True

    for mode in ("keyword", "hybrid", None):
        extra = ["--mode", mode] if mode else []
        code, out, err = _run(capsys, "search", "ERR-4471", *base, "--json", *extra)
        assert code == 0, err
        hits = json.loads(out)["hits"]
        assert hits[0]["file"] == "incident.md", (mode, hits)

    # re-running keeps the setting; flipping it on the same collection is one clear line
    code, out, err = _run(capsys, "index", ".", *base, "--no-progress", "--json")
    assert code == 0 and json.loads(out)["settings"]["hybrid"] is True, err
    code, _, err = _run(capsys, "index", ".", *base, "--no-hybrid", "--no-progress")
    assert "built with --hybrid" in _one_line_error(code, err)


def test_search_mode_on_a_dense_index_is_one_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    (clean_env / "a.txt").write_text(DOCS["incident.md"], encoding="utf-8")
    base = ["--store", "qdrant:./q"]
    code, _, err = _run(
        capsys, "index", ".", *base, "--provider", f"local:{conformance_dir}", "--no-progress"
    )
    assert code == 0, err
    code, _, err = _run(capsys, "search", "ERR-4471", *base, "--mode", "keyword")
    assert "jv3 index --hybrid" in _one_line_error(code, err)
    code, _, err = _run(capsys, "search", "ERR-4471", *base, "--mode", "dense")
    assert code == 0, err
    code, _, err = _run(capsys, "index", ".", *base, "--hybrid", "--no-progress")
    assert "built without --hybrid" in _one_line_error(code, err)
