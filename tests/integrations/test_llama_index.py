"""LlamaIndex: embedding model routing, serialization, bounded async, late chunking, indexes."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter, TokenTextSplitter
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores import VectorStoreQuery

from jv3_integrations import (
    BaseProvider,
    ConfigurationError,
    Embeddings,
    EmbedRequest,
    InputError,
    LocalProvider,
    embed_chunks,
)
from jv3_integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingEmbedder
from tests.conftest import SERVER_API_KEY

DOCS = [
    "Berlin is the capital of Germany and its largest city.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "東京は日本の首都です。",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
    "Der Himmel ist blau und die Sonne scheint.",
    "Python is a popular programming language for data science.",
]
LONG = [
    "Berlin is the capital of Germany. It has about 3.8 million inhabitants. "
    "The city lies on the river Spree. Its history goes back to the 13th century.",
    "Tokyo is the capital of Japan. It is one of the largest cities in the world. "
    "The metropolitan area has more than 37 million people.",
]


@pytest.fixture(scope="module")
def spec(conformance_dir: Path) -> str:
    return f"local:{conformance_dir}"


def _close(a: Any, b: Any, atol: float = 1e-5) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), atol=atol))


# -- the embedding model ---------------------------------------------------------------------


async def test_all_hooks_route_queries_and_texts(local_provider: LocalProvider) -> None:
    model = JinaV3Embedding(provider=local_provider, embed_batch_size=2)
    q = local_provider.embed_queries(DOCS).vectors
    p = local_provider.embed_documents(DOCS).vectors
    assert _close(model.get_query_embedding(DOCS[0]), q[0])
    assert _close(await model.aget_query_embedding(DOCS[1]), q[1])
    assert _close(model.get_text_embedding(DOCS[0]), p[0])
    assert _close(await model.aget_text_embedding(DOCS[1]), p[1])
    assert _close(model.get_text_embedding_batch(DOCS), p)
    assert _close(await model.aget_text_embedding_batch(DOCS), p)
    assert not _close(q[0], p[0], 1e-3), "query and passage vectors must differ"
    assert model.get_text_embedding_batch([]) == []


def test_dimensions_and_tasks(local_provider: LocalProvider) -> None:
    model = JinaV3Embedding(provider=local_provider, dimensions=32, query_task="text-matching")
    vec = model.get_query_embedding("capital")
    assert len(vec) == 32
    expected = local_provider.embed(["capital"], task="text-matching", dimensions=32).vectors[0]
    assert _close(vec, expected)
    assert len(model.get_text_embedding("capital")) == 32
    with pytest.raises(ValueError, match="dimensions"):
        JinaV3Embedding(provider=local_provider, dimensions=0)
    with pytest.raises(ValueError, match="retrieval.query"):
        JinaV3Embedding(provider=local_provider, query_task="query")
    with pytest.raises(ConfigurationError, match="spec"):
        JinaV3Embedding(provider="openai")


def test_to_dict_has_no_key_and_round_trips(spec: str) -> None:
    model = JinaV3Embedding(provider="http://127.0.0.1:9", api_key="sk-very-secret", dimensions=64)
    data = model.to_dict()
    text = json.dumps(data) + model.to_json() + repr(model) + str(model.to_payload())
    assert "sk-very-secret" not in text
    assert data["class_name"] == "JinaV3Embedding" == JinaV3Embedding.class_name()
    assert data["provider"] == "http://127.0.0.1:9" and data["dimensions"] == 64
    assert data["query_task"] == "retrieval.query" and data["text_task"] == "retrieval.passage"
    restored = JinaV3Embedding.from_dict(data)
    assert restored.to_dict() == data
    local = JinaV3Embedding(provider=spec)
    assert JinaV3Embedding.from_dict(local.to_dict()).to_dict() == local.to_dict()


class _CountingProvider(BaseProvider):
    """Delegates to the local model and records how many async calls overlap."""

    def __init__(self, inner: LocalProvider) -> None:
        self.inner = inner
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def max_dimensions(self) -> int:
        return self.inner.max_dimensions

    def _embed(self, request: EmbedRequest) -> Embeddings:
        return self.inner.embed(request.texts, task=request.task, dimensions=request.dimensions)

    async def _aembed(self, request: EmbedRequest) -> Embeddings:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.01)
            return self._embed(request)
        finally:
            with self._lock:
                self.active -= 1


async def test_async_batch_is_one_provider_call_not_an_unbounded_gather(
    local_provider: LocalProvider,
) -> None:
    counting = _CountingProvider(local_provider)
    model = JinaV3Embedding(provider=counting, embed_batch_size=2)
    texts = [f"text number {i}" for i in range(20)]
    out = await model.aget_text_embedding_batch(texts)
    assert counting.calls == 1 and counting.max_active == 1
    assert _close(out, local_provider.embed_documents(texts).vectors)


@pytest.mark.network
async def test_api_backed_key_and_server(
    jina_server_url: str, local_provider: LocalProvider
) -> None:
    model = JinaV3Embedding(provider=jina_server_url, api_key=SERVER_API_KEY)
    assert SERVER_API_KEY not in json.dumps(model.to_dict()) + repr(model)
    vec = await model.aget_query_embedding(DOCS[0])
    assert _close(vec, local_provider.embed_queries([DOCS[0]]).vectors[0], 1e-4)
    assert _close(
        model.get_text_embedding_batch(DOCS[:2]),
        local_provider.embed_documents(DOCS[:2]).vectors,
        1e-4,
    )
    await model.aclose()


@pytest.mark.network
async def test_api_key_from_env_is_sent(
    jina_server_url: str, local_provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The existing integration sends 'Bearer None' when the key is only in the environment."""
    monkeypatch.setenv("JINA_API_KEY", SERVER_API_KEY)
    model = JinaV3Embedding(provider=jina_server_url)
    assert SERVER_API_KEY not in json.dumps(model.to_dict())
    vecs = await model.aget_text_embedding_batch(DOCS[:3])
    assert _close(vecs, local_provider.embed_documents(DOCS[:3]).vectors, 1e-4)
    await model.aclose()


# -- late chunking --------------------------------------------------------------------------


def _nodes() -> list[BaseNode]:
    splitter = SentenceSplitter(chunk_size=16, chunk_overlap=0)
    return splitter.get_nodes_from_documents([Document(text=t) for t in LONG])


def _expected_late(provider: LocalProvider, nodes: list[BaseNode]) -> dict[str, np.ndarray]:
    """Reference: the core's late chunking of each source document's nodes in text order."""
    by_doc: dict[str, list[BaseNode]] = {}
    for n in nodes:
        by_doc.setdefault(n.ref_doc_id or n.node_id, []).append(n)
    out: dict[str, np.ndarray] = {}
    for members in by_doc.values():
        members.sort(key=lambda n: n.start_char_idx or 0)
        vecs = embed_chunks(provider, [n.get_content() for n in members])
        out.update({n.node_id: c.vector for n, c in zip(members, vecs, strict=True)})
    return out


async def test_late_chunking_transform_groups_by_source(local_provider: LocalProvider) -> None:
    nodes = _nodes()
    assert len({n.ref_doc_id for n in nodes}) == 2 and len(nodes) >= 5
    loose = TextNode(text="A node without a source document.")
    shuffled = [*nodes, loose]
    random.Random(7).shuffle(shuffled)
    ids = [n.node_id for n in shuffled]
    embedder = JinaV3LateChunkingEmbedder(provider=local_provider)
    out = embedder(shuffled)
    assert [n.node_id for n in out] == ids
    expected = _expected_late(local_provider, [*nodes, loose])
    for n in out:
        assert n.embedding is not None and _close(n.embedding, expected[n.node_id], 1e-4)
    # Context matters: a late vector is not the node's standalone passage vector.
    alone = local_provider.embed_documents([nodes[1].get_content()]).vectors[0]
    assert not _close(expected[nodes[1].node_id], alone, 1e-3)

    again = [n.model_copy() for n in shuffled]
    for n in again:
        n.embedding = None
    await embedder.acall(again)
    for a, b in zip(again, out, strict=True):
        assert _close(a.embedding, b.embedding, 1e-5)


def test_late_chunking_rejects_overlap_and_empty(local_provider: LocalProvider) -> None:
    embedder = JinaV3LateChunkingEmbedder(provider=local_provider)
    overlapping = TokenTextSplitter(chunk_size=10, chunk_overlap=3).get_nodes_from_documents(
        [Document(text=LONG[0])]
    )
    with pytest.raises(InputError, match="chunk_overlap=0"):
        embedder(overlapping)
    with pytest.raises(InputError, match="no text"):
        embedder([TextNode(text="x"), TextNode(text="")])
    with pytest.raises(ValueError, match="dimensions"):
        JinaV3LateChunkingEmbedder(provider=local_provider, dimensions=-1)
    data = JinaV3LateChunkingEmbedder(provider="local:/m", dimensions=32).to_dict()
    assert data["provider"] == "local:/m" and data["task"] == "retrieval.passage"


def test_vector_store_index_keeps_late_chunking_embeddings(
    spec: str, local_provider: LocalProvider
) -> None:
    nodes = JinaV3LateChunkingEmbedder(provider=spec)(_nodes())
    expected = {n.node_id: list(n.embedding or []) for n in nodes}
    index = VectorStoreIndex(list(nodes), embed_model=JinaV3Embedding(provider=spec))
    store = index.vector_store
    for node_id, vec in expected.items():
        assert _close(store.get(node_id), vec)
    # Query by a chunk's own late vector: that chunk comes first.
    target = list(nodes)[2]
    query = VectorStoreQuery(query_embedding=expected[target.node_id], similarity_top_k=1)
    assert store.query(query).ids == [target.node_id]


# -- VectorStoreIndex over the stores ---------------------------------------------------------


def _check_ranking(results: list[Any], provider: LocalProvider, query: str) -> None:
    q = provider.embed_queries([query]).vectors[0]
    scores = provider.embed_documents(DOCS).vectors @ q
    order = [DOCS[i] for i in np.argsort(-scores)]
    assert [r.node.get_content() for r in results] == order
    assert np.allclose([r.score for r in results], np.sort(scores)[::-1], atol=1e-4)


def _docs() -> list[Document]:
    return [Document(text=t) for t in DOCS]


def _check_index(index: VectorStoreIndex, spec: str, provider: LocalProvider) -> None:
    hits = index.as_retriever(similarity_top_k=6).retrieve(DOCS[0])
    _check_ranking(hits, provider, DOCS[0])
    # By construction: with the passage task on both sides a text is its own nearest neighbour.
    symmetric = JinaV3Embedding(provider=spec, query_task="retrieval.passage")
    first = index.as_retriever(similarity_top_k=1, embed_model=symmetric).retrieve(DOCS[3])
    assert first[0].node.get_content() == DOCS[3]


def test_simple_vector_store(spec: str, local_provider: LocalProvider) -> None:
    index = VectorStoreIndex.from_documents(_docs(), embed_model=JinaV3Embedding(provider=spec))
    _check_index(index, spec, local_provider)


async def test_simple_vector_store_async_retrieval(
    spec: str, local_provider: LocalProvider
) -> None:
    index = VectorStoreIndex(nodes=[], embed_model=JinaV3Embedding(provider=spec))
    await index.ainsert_nodes(SentenceSplitter().get_nodes_from_documents(_docs()))
    hits = await index.as_retriever(similarity_top_k=6).aretrieve(DOCS[0])
    _check_ranking(hits, local_provider, DOCS[0])


def test_qdrant_vector_store_sync(spec: str, local_provider: LocalProvider) -> None:
    qdrant_client = pytest.importorskip("qdrant_client")
    qdrant = pytest.importorskip("llama_index.vector_stores.qdrant")
    store = qdrant.QdrantVectorStore("li_sync", client=qdrant_client.QdrantClient(":memory:"))
    index = VectorStoreIndex.from_documents(
        _docs(),
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=JinaV3Embedding(provider=spec),
    )
    _check_index(index, spec, local_provider)


async def test_qdrant_vector_store_async(spec: str, local_provider: LocalProvider) -> None:
    qdrant_client = pytest.importorskip("qdrant_client")
    qdrant = pytest.importorskip("llama_index.vector_stores.qdrant")
    aclient = qdrant_client.AsyncQdrantClient(":memory:")
    store = qdrant.QdrantVectorStore("li_async", aclient=aclient)
    index = VectorStoreIndex(
        nodes=[],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=JinaV3Embedding(provider=spec),
        use_async=True,
    )
    nodes = JinaV3LateChunkingEmbedder(provider=spec)(_nodes())
    await index.ainsert_nodes(SentenceSplitter().get_nodes_from_documents(_docs()) + list(nodes))
    retriever = index.as_retriever(similarity_top_k=6)
    hits = await retriever.aretrieve(DOCS[0])
    # The late-chunked nodes kept their vectors: rank = numpy ranking over all stored vectors.
    q = local_provider.embed_queries([DOCS[0]]).vectors[0]
    corpus = DOCS + [n.get_content() for n in nodes]
    late = np.asarray([n.embedding for n in nodes], dtype=np.float32)
    vecs = np.vstack([local_provider.embed_documents(DOCS).vectors, late])
    order = [corpus[i] for i in np.argsort(-(vecs @ q))][:6]
    assert [h.node.get_content() for h in hits] == order
    await aclient.close()


# -- the example --------------------------------------------------------------------------------


def test_example_runs_offline(conformance_dir: Path) -> None:
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "llama_index_rag.py"
    args = ["--provider", f"local:{conformance_dir}", "--no-progress", "--top-k", "2"]
    env = {**os.environ}
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("query: ") and len(lines) == 3, out.stdout


def test_pickle_round_trip(spec: str) -> None:
    """IngestionPipeline(num_workers=...) pickles transformations: they must survive it."""
    import pickle

    model = JinaV3Embedding(provider=spec, dimensions=16)
    before = model.get_query_embedding("x")
    restored = pickle.loads(pickle.dumps(model))
    assert restored.to_dict() == model.to_dict()
    assert _close(restored.get_query_embedding("x"), before)
    late = pickle.loads(pickle.dumps(JinaV3LateChunkingEmbedder(provider=spec, dimensions=8)))
    assert len(late(_nodes())[0].embedding or []) == 8
