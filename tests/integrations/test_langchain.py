"""LangChain: the standard Embeddings test suites, routing, secrets, native async, vector store."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import SecretStr

from jv3_integrations import (
    AuthenticationError,
    BaseProvider,
    ConfigurationError,
    Embeddings,
    EmbedRequest,
    LocalProvider,
)
from jv3_integrations.langchain import JinaV3Embeddings
from tests.conftest import CONFORMANCE_DIR, SERVER_API_KEY

SPEC = f"local:{CONFORMANCE_DIR}"
DOCS = [
    "Berlin is the capital of Germany and its largest city.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "東京は日本の首都です。",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
    "Der Himmel ist blau und die Sonne scheint.",
    "Python is a popular programming language for data science.",
]


def _close(a: Any, b: Any, atol: float = 1e-5) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), atol=atol))


# -- LangChain's own standard suites ----------------------------------------------------------


class TestStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[JinaV3Embeddings]:
        return JinaV3Embeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"provider": SPEC, "dimensions": 64}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {"JINA_API_KEY": "env-key"}, {"provider": "api"}, {"api_key": "env-key"}


class TestStandardIntegrationLocal(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[JinaV3Embeddings]:
        return JinaV3Embeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"provider": SPEC}


@pytest.mark.network
class TestStandardIntegrationServer(EmbeddingsIntegrationTests):
    url: str = ""

    @pytest.fixture(autouse=True)
    def _server(self, jina_server_url: str) -> None:
        type(self).url = jina_server_url

    @property
    def embeddings_class(self) -> type[JinaV3Embeddings]:
        return JinaV3Embeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"provider": self.url, "api_key": SERVER_API_KEY, "dimensions": 32}


# -- behaviour --------------------------------------------------------------------------------


async def test_routing_dimensions_and_async(local_provider: LocalProvider) -> None:
    emb = JinaV3Embeddings(provider=local_provider)
    q = local_provider.embed_queries(DOCS[:2]).vectors
    p = local_provider.embed_documents(DOCS[:2]).vectors
    assert _close(emb.embed_query(DOCS[0]), q[0])
    assert _close(emb.embed_documents(DOCS[:2]), p)
    assert _close(await emb.aembed_query(DOCS[1]), q[1])
    assert _close(await emb.aembed_documents(DOCS[:2]), p)
    assert not _close(q[0], p[0], 1e-3), "query and passage vectors must differ"
    small = JinaV3Embeddings(provider=local_provider, dimensions=16)
    vec = small.embed_query(DOCS[0])
    assert len(vec) == 16
    assert _close(vec, local_provider.embed_queries([DOCS[0]], dimensions=16).vectors[0])
    assert emb.embed_documents([]) == []


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="spec"):
        JinaV3Embeddings(provider="local:")
    with pytest.raises(ValueError, match="dimensions"):
        JinaV3Embeddings(provider=SPEC, dimensions=0)
    with pytest.raises(ValueError, match="retrieval.query"):
        JinaV3Embeddings(provider=SPEC, query_task="query")
    emb = JinaV3Embeddings(provider=SPEC)
    with pytest.raises(TypeError, match=r"\[text\]"):
        emb.embed_documents("a bare string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be a str"):
        emb.embed_query(["a list"])  # type: ignore[arg-type]


def test_key_is_secret_and_never_serialized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    emb = JinaV3Embeddings(provider="http://127.0.0.1:9", api_key="sk-very-secret")
    assert isinstance(emb.api_key, SecretStr)
    shown = repr(emb) + str(emb) + emb.model_dump_json()
    assert "sk-very-secret" not in shown
    assert JinaV3Embeddings(provider="api").api_key is None


@pytest.mark.network
def test_api_key_from_env_against_our_server(
    jina_server_url: str, local_provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_API_KEY", SERVER_API_KEY)
    emb = JinaV3Embeddings(provider=jina_server_url, dimensions=32)
    vec = emb.embed_query(DOCS[0])
    assert _close(vec, local_provider.embed_queries([DOCS[0]], dimensions=32).vectors[0], 1e-4)
    emb.close()
    monkeypatch.setenv("JINA_API_KEY", "wrong-key")
    with pytest.raises(AuthenticationError):
        JinaV3Embeddings(provider=jina_server_url).embed_documents(["x"])


class _CountingProvider(BaseProvider):
    def __init__(self, inner: LocalProvider) -> None:
        self.inner = inner
        self.sync_calls = 0
        self.async_calls = 0
        self.threads: set[int] = set()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def max_dimensions(self) -> int:
        return self.inner.max_dimensions

    def _embed(self, request: EmbedRequest) -> Embeddings:
        self.sync_calls += 1
        return self.inner.embed(request.texts, task=request.task, dimensions=request.dimensions)

    async def _aembed(self, request: EmbedRequest) -> Embeddings:
        self.async_calls += 1
        self.threads.add(threading.get_ident())
        return self.inner.embed(request.texts, task=request.task, dimensions=request.dimensions)


async def test_async_is_native(local_provider: LocalProvider) -> None:
    counting = _CountingProvider(local_provider)
    emb = JinaV3Embeddings(provider=counting)
    await emb.aembed_documents(DOCS[:3])
    await emb.aembed_query(DOCS[0])
    # Native: the provider's async path ran on the event loop's thread, not in an executor.
    assert counting.async_calls == 2 and counting.sync_calls == 0
    assert counting.threads == {threading.get_ident()}


def test_in_memory_vector_store(local_provider: LocalProvider) -> None:
    store = InMemoryVectorStore(JinaV3Embeddings(provider=SPEC))
    store.add_texts(DOCS)
    hits = store.similarity_search_with_score(DOCS[0], k=len(DOCS))
    q = local_provider.embed_queries([DOCS[0]]).vectors[0]
    scores = local_provider.embed_documents(DOCS).vectors @ q
    assert [d.page_content for d, _ in hits] == [DOCS[i] for i in np.argsort(-scores)]
    assert np.allclose([s for _, s in hits], np.sort(scores)[::-1], atol=1e-4)
    # By construction: with the passage task on both sides a text is its own nearest neighbour.
    symmetric = InMemoryVectorStore(JinaV3Embeddings(provider=SPEC, query_task="retrieval.passage"))
    symmetric.add_texts(DOCS)
    assert symmetric.similarity_search(DOCS[3], k=1)[0].page_content == DOCS[3]


async def test_in_memory_vector_store_async(local_provider: LocalProvider) -> None:
    store = InMemoryVectorStore(JinaV3Embeddings(provider=SPEC))
    await store.aadd_texts(DOCS)
    hits = await store.asimilarity_search(DOCS[2], k=3)
    q = local_provider.embed_queries([DOCS[2]]).vectors[0]
    scores = local_provider.embed_documents(DOCS).vectors @ q
    assert [d.page_content for d in hits] == [DOCS[i] for i in np.argsort(-scores)[:3]]


# -- the example --------------------------------------------------------------------------------


def test_example_runs_offline_from_env() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"
    env = {**os.environ, "JV3_PROVIDER": SPEC}
    out = subprocess.run(
        [sys.executable, str(script), "--dimensions", "32", "--top-k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("query: ") and len(lines) == 3, out.stdout
