"""``jv3_integrations.index_folder``: the ``jv3 index`` job from Python, incremental."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import jv3_integrations as jv3

pytestmark = pytest.mark.slow


def test_index_folder_reembeds_only_what_changed(
    tmp_path: Path, local_provider: jv3.EmbeddingProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"n{i}.txt").write_text(f"Note {i}. Rivers reach the sea.\n", encoding="utf-8")
    store = f"qdrant:{tmp_path / 'index'}"
    first = jv3.index_folder(docs, store=store, provider=local_provider)
    assert isinstance(first, jv3.IndexReport)
    assert (first.new, first.files_embedded, first.chunks_total) == (4, 4, 4)

    (docs / "n2.txt").write_text("Note 2, rewritten: mountains and snow.\n", encoding="utf-8")
    warnings: list[str] = []
    second = jv3.index_folder(
        [str(docs)], store=store, provider=local_provider, on_warning=warnings.append
    )
    assert (second.changed, second.unchanged, second.files_embedded) == (1, 3, 1)
    assert second.chunks_total == 4 and warnings == []
    assert capsys.readouterr().err == ""  # progress is off by default from Python

    # the CLI sees the same state: nothing left to do
    state = json.loads((tmp_path / "index.jv3-state.json").read_text())
    assert sorted(Path(k).name for k in state["collections"]["jv3"]["files"]) == [
        "n0.txt",
        "n1.txt",
        "n2.txt",
        "n3.txt",
    ]


def test_index_folder_checks_its_arguments_before_writing(tmp_path: Path) -> None:
    with pytest.raises(jv3.ConfigurationError, match="no such file or folder"):
        jv3.index_folder(tmp_path / "missing", store=f"qdrant:{tmp_path / 'q'}")
    assert not (tmp_path / "q").exists()


def test_import_stays_light() -> None:
    code = (
        "import sys, jv3_integrations as j\n"
        "heavy = [m for m in ('jv3_integrations.indexing', 'jv3_integrations._cli.indexer', "
        "'torch', 'qdrant_client', 'pymilvus') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from jv3_integrations import index_folder\n"
        "assert 'jv3_integrations.indexing' in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
