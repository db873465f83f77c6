"""Issue 27 (friction): ``jv3 embed hello`` offline without a cached model says what is wrong
in one short sentence and gives the one command that fixes it (no ~600-character line mixing
the library's advice with the CLI's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jv3_integrations.cli import main

MODEL_FILES = (
    "config.json model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json"
)


@pytest.fixture
def offline_empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_embed_offline_without_cached_model_is_one_sentence_and_one_command(
    capsys: pytest.CaptureFixture[str], offline_empty_cache: Path
) -> None:
    code = main(["embed", "hello"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and out == ""
    [line] = lines
    assert line.startswith("jv3: error: ")
    message = line.removeprefix("jv3: error: ")
    # the one command, once, complete (a user can paste it)
    assert message.count("hf download") == 1
    assert f"hf download jinaai/jina-embeddings-v3 {MODEL_FILES}" in message
    # what is wrong, in one sentence: the model is not downloaded and why
    assert "not downloaded" in message and "HF_HUB_OFFLINE" in message
    # no library advice meant for Python callers, no second list of alternatives
    assert "model=" not in message and "snapshot_download" not in message
    assert message.count(". ") <= 1, message
    assert len(message) < 300, len(message)


def test_library_error_keeps_the_python_advice_and_exposes_the_command(
    offline_empty_cache: Path,
) -> None:
    from jv3_integrations import LocalProvider, ModelLoadError

    provider = LocalProvider("jinaai/jina-embeddings-v3")
    with pytest.raises(ModelLoadError) as info:
        _ = provider.dimensions
    assert info.value.fix == f"hf download jinaai/jina-embeddings-v3 {MODEL_FILES}"
    assert "model=" in str(info.value)  # Python callers may point model= at a directory
