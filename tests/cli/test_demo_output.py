"""Issue 27 (friction): the offline demo's output is sane on the tiny test checkpoint.

The tiny tokenizer has no pieces for Chinese or Japanese: each such sentence became one
``<unk>`` token, so every Japanese passage got the same vector and every query returned the
same three Japanese passages with tied scores. The demo now leaves out what the model's
tokenizer cannot read (and says so), keeps the notice that random weights mean nothing, and
counts passages as passages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jv3_integrations.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_demo_on_the_tiny_model_gives_distinct_untied_rankings(
    demo_env: Path, conformance_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--provider", f"local:{conformance_dir}", "--no-progress", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert "random test weights" in out["note"]
    queries = out["queries"]
    assert len(queries) >= 4
    rankings = [tuple(h["file"] for h in q["hits"]) for q in queries]
    # not the same hits for every query
    assert len(set(rankings)) > 1, rankings
    for q in queries:
        scores = [h["score"] for h in q["hits"]]
        assert len(set(scores)) == len(scores), f"tied scores for {q['query']!r}: {scores}"
    # nothing the tokenizer cannot read is indexed or asked
    langs = {q["lang"] for q in queries} | {h["file"][:2] for q in queries for h in q["hits"]}
    assert not langs & {"zh", "ja"}, langs
    assert set(out["left_out"]["languages"]) == {"ja", "zh"}


def test_demo_text_says_passages_and_what_it_left_out(
    demo_env: Path, conformance_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--provider", f"local:{conformance_dir}", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    lines = text.splitlines()
    assert lines[0].startswith("Note: ") and "meaningless" in lines[0]
    indexed = [line for line in lines if line.startswith("Indexed ")]
    assert len(indexed) == 1 and " passages" in indexed[0] and "files" not in indexed[0]
    left = [line for line in lines if line.startswith("Left out ")]
    assert len(left) == 1 and "ja" in left[0] and "zh" in left[0] and "tokenizer" in left[0]
    assert "(Random test weights: these hits and scores say nothing about the model.)" in text
