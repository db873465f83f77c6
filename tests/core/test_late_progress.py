"""Progress inside one long document: tokens reported as each window finishes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jv3_integrations import JinaAPIProvider, LocalProvider, embed_chunks
from jv3_integrations.cli import main
from jv3_integrations.core._chunkers import _model_text
from jv3_integrations.core._progress import report_to
from jv3_integrations.core._tokenize import window_starts
from tests.conftest import CONFORMANCE_DIR

DOC = " ".join(
    ["berlin is the capital of germany .", "the river spree flows through berlin ."] * 40
)


class Recorder:
    def __init__(self) -> None:
        self.updates: list[int] = []
        self.total = 0

    def update(self, n: int = 1) -> None:
        self.updates.append(n)

    def expect(self, n: int) -> None:
        self.total += n


def test_local_long_document_reports_each_window() -> None:
    provider = LocalProvider(str(CONFORMANCE_DIR), max_length=64, late_chunking_overlap=8)
    bar = Recorder()
    with report_to(bar):
        chunks = embed_chunks(provider, DOC)
    texts = [_model_text(c.text) for c in chunks]
    tokens = len(provider.late_chunking_ids(texts, task="retrieval.passage")[0])
    # one report per window as it finishes, not one per document
    assert len(bar.updates) == len(window_starts(tokens, 64, 8)) > 5
    assert bar.updates[0] == 64 and set(bar.updates[1:-1]) == {56}
    assert sum(bar.updates) == tokens and bar.total >= tokens - 2


def test_api_windows_report_as_they_finish(api_provider: JinaAPIProvider) -> None:
    bar = Recorder()
    with report_to(bar):
        embed_chunks(api_provider, DOC, window_tokens=160, context_tokens=16)
    assert len(bar.updates) > 3 and sum(bar.updates) == bar.total > 0


def test_without_a_bar_nothing_is_reported() -> None:
    provider = LocalProvider(str(CONFORMANCE_DIR), max_length=64, late_chunking_overlap=8)
    embed_chunks(provider, DOC)  # no bar installed: no error, nothing to report to


@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_jv3_index_shows_tokens_of_a_long_file_unless_turned_off(
    flag: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JV3_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("JV3_PROGRESS_INTERVAL", "0")  # a line per report (stderr is no tty)
    (tmp_path / "long.txt").write_text(DOC * 14, encoding="utf-8")  # over 2 windows of 8192
    spec = f"local:{CONFORMANCE_DIR}"
    assert main(["index", ".", "--store", "qdrant:./q", "--provider", spec, *flag]) == 0
    err = capsys.readouterr().err
    if flag:
        assert "tok" not in err and "Embedding" not in err
    else:  # the one file's percentage moves window by window before the file is done
        inside = re.findall(r"^jv3: Embedding 0/1 files, (\d+)% of ~\S+ tokens", err, re.M)
        assert len({int(p) for p in inside if 0 < int(p) < 100}) >= 1, err
        assert "jv3: Embedding 1/1 files, 100%" in err
