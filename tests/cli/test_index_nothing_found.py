"""``jv3 index`` on a folder with nothing to index says so, and creates no empty store."""

from __future__ import annotations

from pathlib import Path

import pytest

from jv3_integrations import ConfigurationError, EmbeddingProvider
from jv3_integrations._cli.indexer import IndexOptions, run_index


def _index(paths: list[Path], store: Path, provider: EmbeddingProvider) -> tuple[object, list[str]]:
    said: list[str] = []
    opts = IndexOptions(
        paths=[str(p) for p in paths],
        store=f"qdrant:{store}",
        provider_instance=provider,
        progress=False,
    )
    return run_index(opts, said.append), said


def test_an_empty_folder_warns_and_writes_nothing(
    tmp_path: Path, local_provider: EmbeddingProvider
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.docx").write_bytes(b"PK\x03\x04")
    store = tmp_path / "store"
    report, said = _index([folder], store, local_provider)
    assert report.files == 0  # type: ignore[attr-defined]
    assert len(said) == 1 and "no files to index" in said[0] and str(folder) in said[0]
    assert "1 unsupported type" in said[0] and ".txt" in said[0] and ".html" in said[0]
    assert said[0] in report.warnings  # type: ignore[attr-defined]
    assert not store.exists(), "an empty store was created"
    assert not list(tmp_path.glob("*.jv3-state.json"))


def test_a_missing_folder_fails_clearly(tmp_path: Path, local_provider: EmbeddingProvider) -> None:
    with pytest.raises(ConfigurationError, match="no such file or folder"):
        _index([tmp_path / "nope"], tmp_path / "store", local_provider)
    assert not (tmp_path / "store").exists()


def test_a_folder_emptied_after_indexing_still_removes_its_chunks(
    tmp_path: Path, local_provider: EmbeddingProvider
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The Spree flows through Berlin.")
    store = tmp_path / "store"
    report, _ = _index([folder], store, local_provider)
    assert report.chunks_total == 1  # type: ignore[attr-defined]
    (folder / "a.txt").unlink()
    report, said = _index([folder], store, local_provider)
    assert report.removed == 1 and report.chunks_total == 0  # type: ignore[attr-defined]
    assert any("no files to index" in s for s in said)


def test_each_skipped_file_is_named_with_its_reason(
    tmp_path: Path, local_provider: EmbeddingProvider
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "latin.txt").write_bytes("Le café est à côté de la gare.".encode("cp1252"))
    (folder / "noise.txt").write_bytes(bytes(range(128, 256)) * 40)
    report, said = _index([folder], tmp_path / "store", local_provider)
    assert report.files_embedded == 1 and report.skipped == 1  # type: ignore[attr-defined]
    (line,) = [s for s in said if "noise.txt" in s]
    assert line.startswith("skipped ") and "encoding could not be detected" in line
    assert line in report.warnings  # type: ignore[attr-defined]
    assert "1 skipped" in report.summary()  # type: ignore[attr-defined]
