"""``--model`` on ``jv3 index``, ``jv3 search`` and ``jv3 embed`` (issue 24.3).

The provider is an http(s) URL of a loopback API that validates every request with the
official schema of the model it serves. The index state records the model; ``jv3 search``
uses it and refuses another in one line; the local provider runs only jina-embeddings-v3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jv3_integrations.cli import main
from tests.core.test_api_models import schema_server
from tests.support.rate_limited_api import RateLimitedAPI, rate_limited_api

V5 = "jina-embeddings-v5-text-small"


@pytest.fixture
def served(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RateLimitedAPI, str]]:
    """A v5-text-small API on loopback, a folder with two notes, the cwd there."""
    model = getattr(request, "param", V5)
    api = schema_server(model)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("Bees make honey. Rivers run to the sea.\n")
    (tmp_path / "docs" / "b.txt").write_text("Trains leave Oslo at noon.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINA_API_KEY", "k")
    monkeypatch.delenv("JV3_PROVIDER", raising=False)
    with rate_limited_api(api) as url:
        yield api, url


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("jv3: error: "), err
    return lines[0]


def _settings() -> dict[str, object]:
    state = json.loads(Path("q.jv3-state.json").read_text())
    settings: dict[str, object] = state["collections"]["jv3"]["settings"]
    return settings


def test_index_records_the_model_and_search_uses_it(
    served: tuple[RateLimitedAPI, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, url = served
    code, out, err = _run(
        capsys, "index", "docs", "--store", "qdrant:./q", "--provider", url, "--model", V5,
        "--no-progress", "--json",
    )  # fmt: skip
    assert code == 0, err
    settings = _settings()
    assert settings["model"] == V5 and settings["dimensions"] == 1024
    assert settings["late_chunking"] is False  # the default follows the model: v5 has none
    assert api.bodies and all(b["model"] == V5 for b in api.bodies)
    assert not any(b.get("late_chunking") for b in api.bodies)
    indexed = len(api.bodies)

    # search: no --provider, no --model: the index's own
    code, out, err = _run(capsys, "search", "honey", "--store", "qdrant:./q", "--json")
    assert code == 0, err
    assert json.loads(out)["hits"]
    assert len(api.bodies) == indexed + 1
    assert api.bodies[-1]["model"] == V5 and api.bodies[-1]["task"] == "retrieval.query"

    # the same model named explicitly is fine; another is refused, in one line, with no request
    assert _run(capsys, "search", "honey", "--store", "qdrant:./q", "--model", V5)[0] == 0
    before = len(api.bodies)
    line = _one_line_error(
        *_run(capsys, "search", "honey", "--store", "qdrant:./q", "--model", "jina-embeddings-v3")[
            ::2
        ]
    )
    assert f"built with model '{V5}'" in line and "'jina-embeddings-v3'" in line
    assert len(api.bodies) == before

    # re-indexing keeps the model; another --model is refused before any request
    (Path("docs") / "c.txt").write_text("Bread is baked at dawn.\n")
    assert _run(capsys, "index", "docs", "--store", "qdrant:./q", "--no-progress")[0] == 0
    assert all(b["model"] == V5 for b in api.bodies)
    before = len(api.bodies)
    line = _one_line_error(
        *_run(
            capsys, "index", "docs", "--store", "qdrant:./q", "--model", "jina-embeddings-v4",
            "--no-progress",
        )[::2]
    )  # fmt: skip
    assert f"built with model '{V5}'" in line and "jina-embeddings-v4" in line
    assert len(api.bodies) == before


def test_index_refuses_late_chunking_the_model_lacks_before_any_request(
    served: tuple[RateLimitedAPI, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, url = served
    code, _, err = _run(
        capsys, "index", "docs", "--store", "qdrant:./q", "--provider", url, "--model", V5,
        "--late-chunking", "--no-progress",
    )  # fmt: skip
    line = _one_line_error(code, err)
    assert V5 in line and "--late-chunking" in line and "--no-late-chunking" in line
    assert api.bodies == []
    assert not Path("q.jv3-state.json").exists()


def test_the_local_provider_runs_only_v3(
    served: tuple[RateLimitedAPI, str], capsys: pytest.CaptureFixture[str], conformance_dir: Path
) -> None:
    local = f"local:{conformance_dir}"
    for cmd in (["index", "docs", "--store", "qdrant:./q"], ["embed", "hello"]):
        code, _, err = _run(capsys, *cmd, "--provider", local, "--model", V5)
        line = _one_line_error(code, err)
        assert f"--model {V5}" in line and "only jina-embeddings-v3" in line
    assert not Path("q.jv3-state.json").exists()


@pytest.mark.parametrize("served", ["jina-embeddings-v4"], indirect=True)
def test_embed_takes_the_model_and_its_full_size(
    served: tuple[RateLimitedAPI, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, url = served
    code, out, err = _run(
        capsys, "embed", "hello", "--provider", url, "--model", "jina-embeddings-v4"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == "jina-embeddings-v4" and result["dimensions"] == 2048
    assert len(result["vectors"][0]) == 2048
    line = _one_line_error(
        *_run(
            capsys, "embed", "hello", "--provider", url, "--model", "jina-embeddings-v4",
            "--task", "classification",
        )[::2]
    )  # fmt: skip
    assert "jina-embeddings-v4" in line and "classification" in line
    assert len(api.bodies) == 1


def test_embed_takes_v5s_clustering(
    served: tuple[RateLimitedAPI, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, url = served
    code, out, err = _run(
        capsys, "embed", "x", "--provider", url, "--model", V5, "--task", "clustering",
        "--dimensions", "8",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["task"] == "separation"
    assert api.bodies[-1]["task"] == "clustering" and api.bodies[-1]["dimensions"] == 8
