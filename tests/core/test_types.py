"""Task, Embeddings, the error tree and load_provider's spec parsing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import jv3_integrations as jv3
from jv3_integrations import (
    APIError,
    ConfigurationError,
    Embeddings,
    InputError,
    Jv3Error,
    MissingDependencyError,
    Task,
    Usage,
    load_provider,
    resolve_task,
)
from jv3_integrations.core._deps import require


def test_task_values_and_strings() -> None:
    assert [t.value for t in Task] == [
        "retrieval.query",
        "retrieval.passage",
        "separation",
        "classification",
        "text-matching",
        "code.query",  # jina-embeddings-v4's, through Jina's API only
        "code.passage",
    ]
    assert resolve_task("text-matching") is Task.TEXT_MATCHING
    assert resolve_task(None) is None
    assert Task.RETRIEVAL_QUERY == "retrieval.query"


def test_unknown_task_lists_the_five() -> None:
    with pytest.raises(ValueError) as err:
        resolve_task("retrieval.document")
    for t in Task:
        assert t.value in str(err.value)
    assert isinstance(err.value, InputError) and isinstance(err.value, Jv3Error)


def test_task_constructor_lists_the_five() -> None:
    """``Task("query")`` (the enum itself, not only resolve_task) names every valid task."""
    with pytest.raises(InputError) as err:
        Task("query")
    assert isinstance(err.value, ValueError)
    assert "'query'" in str(err.value)
    for t in Task:
        assert repr(t.value) in str(err.value)
    assert Task("separation") is Task.SEPARATION


def test_embeddings_rows_and_lists() -> None:
    e = Embeddings(np.eye(3, 2), "m", Task.SEPARATION, 2, Usage(7))
    assert e.vectors.dtype == np.float32 and len(e) == 3
    assert e.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    assert [r.tolist() for r in e] == e.tolist()
    assert e.usage.total_tokens == 7
    assert "n=3" in repr(e)
    with pytest.raises(ValueError):
        Embeddings(np.eye(3, 2), "m", None, 3)


def test_api_error_carries_fields() -> None:
    err = APIError("boom", status=429, code="RATE_X", detail="slow down", request_id="r1")
    assert (err.status, err.code, err.detail, err.request_id) == (429, "RATE_X", "slow down", "r1")
    assert "status=429" in str(err) and "r1" in str(err)


def test_missing_extra_message_is_the_pip_command() -> None:
    with pytest.raises(MissingDependencyError) as err:
        require("surely_not_a_module_xyz", "qdrant", "qdrant-client")
    assert isinstance(err.value, ImportError)
    assert "pip install 'jv3-integrations[qdrant]'" in str(err.value)


def test_load_provider_rejects_unknown_specs() -> None:
    with pytest.raises(ConfigurationError, match="'api'"):
        load_provider("openai")
    with pytest.raises(ConfigurationError, match="local:"):
        load_provider("local:")


def test_default_spec_follows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JV3_PROVIDER", raising=False)
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    assert jv3.default_provider_spec() == "local:jinaai/jina-embeddings-v3"
    monkeypatch.setenv("JINA_API_KEY", "jina_x")
    assert jv3.default_provider_spec() == "api"
    monkeypatch.setenv("JV3_PROVIDER", "http://127.0.0.1:9")
    assert jv3.default_provider_spec() == "http://127.0.0.1:9"


def test_public_names_are_exported() -> None:
    for name in jv3.__all__:
        assert hasattr(jv3, name), name


def test_top_level_surface_is_small_and_core_keeps_the_rest() -> None:
    import jv3_integrations.core as core

    assert len(jv3.__all__) <= 31
    for name in ("LocalProvider", "JinaAPIProvider", "load_provider", "embed_chunks", "Jv3Error"):
        assert name in jv3.__all__
    for name in ("index_folder",):  # the main job, public (issue 27)
        assert name in jv3.__all__
    for name in ("truncate", "l2_normalize", "validate_texts", "BaseProvider", "EmbedRequest"):
        assert name not in jv3.__all__ and name in core.__all__
        assert getattr(jv3, name) is getattr(core, name)  # old imports keep working


def test_star_import_gets_index_folder_and_stays_light() -> None:
    code = (
        "import sys\n"
        "from jv3_integrations import *\n"
        "assert callable(index_folder)\n"
        "heavy = [m for m in ('torch', 'qdrant_client', 'pymilvus', 'pinecone', 'ray') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
