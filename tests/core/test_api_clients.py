"""Existing Jina clients, pointed at our server, get the local model's vectors unchanged.

How each client is pointed at another server (read from their sources):
- jina-haystack: ``base_url=`` is the full endpoint URL (``.../v1/embeddings``).
- llama-index-embeddings-jinaai: ``JinaEmbedding`` does not pass a base URL on; its caller
  ``_JinaAPICaller(base_url=".../v1")`` appends ``/embeddings``. It sends ``encoding_type``.
- pymilvus-model (``milvus_model``): ``JinaEmbeddingFunction`` posts to the module constant
  ``API_URL``; it always sends ``task`` and ``late_chunking``.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from jv3_integrations.core import LocalProvider
from tests.conftest import SERVER_API_KEY

DOCS = ["Berlin is the capital of Germany.", "Der Himmel ist blau.", "東京は日本の首都です。"]


def test_jina_haystack_document_and_text_embedder(
    jina_server_url: str, local_provider: LocalProvider
) -> None:
    jina = pytest.importorskip(
        "haystack_integrations.components.embedders.jina",
        reason="jina-haystack is not installed (pip install jina-haystack)",
    )
    from haystack import Document
    from haystack.utils import Secret

    endpoint = f"{jina_server_url}/v1/embeddings"
    embedder = jina.JinaDocumentEmbedder(
        api_key=Secret.from_token(SERVER_API_KEY),
        base_url=endpoint,
        task="retrieval.passage",
        dimensions=64,
        batch_size=2,
        progress_bar=False,
    )
    result = embedder.run([Document(content=t) for t in DOCS])
    got = np.array([d.embedding for d in result["documents"]], dtype=np.float32)
    want = local_provider.embed(DOCS, task="retrieval.passage", dimensions=64).vectors
    assert np.allclose(got, want, atol=1e-5)
    usage = result["meta"]["usage"]["total_tokens"]
    assert usage == sum(local_provider.count_tokens(DOCS, task="retrieval.passage").counts)

    late = jina.JinaDocumentEmbedder(
        api_key=Secret.from_token(SERVER_API_KEY),
        base_url=endpoint,
        task="retrieval.passage",
        late_chunking=True,
        batch_size=len(DOCS),
        progress_bar=False,
    )
    got = np.array(
        [d.embedding for d in late.run([Document(content=t) for t in DOCS])["documents"]]
    )
    want = local_provider.embed(DOCS, task="retrieval.passage", late_chunking=True).vectors
    assert np.allclose(got, want, atol=1e-5)

    text = jina.JinaTextEmbedder(
        api_key=Secret.from_token(SERVER_API_KEY), base_url=endpoint, task="retrieval.query"
    )
    query = np.array(text.run("Wo liegt Berlin?")["embedding"], dtype=np.float32)
    want_q = local_provider.embed_queries(["Wo liegt Berlin?"]).vectors[0]
    assert np.allclose(query, want_q, atol=1e-5)

    async_result = asyncio.run(embedder.run_async([Document(content=t) for t in DOCS]))
    got = np.array([d.embedding for d in async_result["documents"]], dtype=np.float32)
    assert np.allclose(
        got, local_provider.embed(DOCS, task="retrieval.passage", dimensions=64).vectors, atol=1e-5
    )


def test_llama_index_jina_embedding(jina_server_url: str, local_provider: LocalProvider) -> None:
    base = pytest.importorskip(
        "llama_index.embeddings.jinaai.base",
        reason="llama-index-embeddings-jinaai is not installed",
    )

    def pointed(**kwargs: object) -> object:
        embedding = base.JinaEmbedding(api_key=SERVER_API_KEY, **kwargs)
        embedding._api = base._JinaAPICaller(
            model="jina-embeddings-v3", base_url=f"{jina_server_url}/v1", api_key=SERVER_API_KEY
        )
        return embedding

    floats = pointed(task="text-matching", dimensions=32)
    got = np.array(floats.get_text_embedding_batch(DOCS), dtype=np.float32)  # type: ignore[attr-defined]
    want = local_provider.embed(DOCS, task="text-matching", dimensions=32).vectors
    assert np.allclose(got, want, atol=1e-5)

    binary = pointed(task="retrieval.query", encoding_queries="ubinary")
    bits = np.array(binary.get_query_embedding("Wo liegt Berlin?"))  # type: ignore[attr-defined]
    signs = local_provider.embed_queries(["Wo liegt Berlin?"]).vectors[0] > 0
    assert bits.tolist() == signs.astype(int).tolist()

    async_got = asyncio.run(floats.aget_text_embedding_batch(DOCS))  # type: ignore[attr-defined]
    assert np.allclose(np.array(async_got, dtype=np.float32), want, atol=1e-5)


def test_pymilvus_model_jina_embedding_function(
    jina_server_url: str, local_provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    jina_module = pytest.importorskip(
        "pymilvus.model.dense.jinaai",
        reason="pymilvus-model is not installed (pip install pymilvus-model; in the test extra)",
    )
    monkeypatch.setattr(jina_module, "API_URL", f"{jina_server_url}/v1/embeddings")
    fn = jina_module.JinaEmbeddingFunction(
        model_name="jina-embeddings-v3", api_key=SERVER_API_KEY, task="retrieval.passage"
    )
    got = np.array(fn.encode_documents(DOCS), dtype=np.float32)
    want = local_provider.embed_documents(DOCS).vectors
    assert np.allclose(got, want, atol=1e-5)
    queries = np.array(fn.encode_queries(DOCS[:1]), dtype=np.float32)
    assert np.allclose(queries, local_provider.embed_queries(DOCS[:1]).vectors, atol=1e-5)
    assert fn.dim == 128  # its dim property embeds "" on the server
