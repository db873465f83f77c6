"""Jina's newer models through every adapter (issue 24.3): the provider's facts flow through.

Each adapter gets a JinaAPIProvider for a v5 or v4 model, talking to a loopback server that
validates every request with the official schema for that model (``tests/core/
test_api_models.py``'s ``schema_server``) and has no ``GET /v1/models``, like Jina's API.
Late chunking, which v5 does not offer, is refused before any request (and before a store
creates its collection), naming the model and the option; vectors come at the model's size.
A store records the model: a collection built with one model refuses another before any
request or search, naming both (Qdrant local mode and Milvus Lite).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jv3_integrations import ConfigurationError, InputError, JinaAPIProvider
from jv3_integrations.core._models import model_info
from tests.core.test_api_models import schema_server
from tests.support.rate_limited_api import RateLimitedAPI, rate_limited_api

V5 = "jina-embeddings-v5-text-small"
DOCS = ["Rivers run to the sea. Bees make honey.", "Trains leave Oslo at noon. Bread is baked."]


@pytest.fixture
def api_for(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``api_for(model)`` -> ``(server, provider)``: a schema-checking loopback API."""
    opened: list[Any] = []

    def make(model: str) -> tuple[RateLimitedAPI, JinaAPIProvider]:
        api = schema_server(model)
        cm = rate_limited_api(api)
        url = cm.__enter__()
        provider = JinaAPIProvider(api_key="k", base_url=url, model=model)
        opened.append((cm, provider))
        return api, provider

    yield make
    for cm, provider in reversed(opened):
        provider.close()
        cm.__exit__(None, None, None)


def _late_refusal(exc: BaseException, model: str = V5) -> None:
    message = str(exc)
    assert model in message and "late chunking" in message, message


# -- stores -------------------------------------------------------------------------------


def _qdrant(provider: Any, collection: str = "docs") -> Any:
    from qdrant_client import QdrantClient

    from jv3_integrations.qdrant import QdrantStore

    return QdrantStore(provider, client=QdrantClient(":memory:"), collection=collection)


def test_a_store_on_v5_refuses_late_chunking_before_any_request_or_write(api_for: Any) -> None:
    api, provider = api_for(V5)
    store = _qdrant(provider)
    with pytest.raises(InputError) as err:
        store.add_documents(DOCS, late_chunking=True)
    _late_refusal(err.value)
    assert api.bodies == []
    assert not store.client.collection_exists("docs")  # nothing created either


@pytest.mark.parametrize(
    ("model", "late"),
    [
        (V5, False),  # the default follows the model: v5 offers no late chunking
        ("jina-embeddings-v5-text-nano", False),
        ("jina-embeddings-v4", True),
    ],
)
def test_a_store_embeds_at_the_models_size_and_late_chunks_where_offered(
    api_for: Any, model: str, late: bool
) -> None:
    api, provider = api_for(model)
    store = _qdrant(provider)
    assert store.dimensions == model_info(model).dim  # 1024, 768, 2048: no option given
    ids = store.add_documents(DOCS)
    hits = store.search("honey", k=2)
    assert len(hits) == 2 and {h.id for h in hits} <= {i for doc in ids for i in doc}
    size = store.client.get_collection("docs").config.params.vectors.size
    assert size == model_info(model).dim
    assert [e.status for e in api.log] == [200] * len(api.log)
    assert all(b["model"] == model for b in api.bodies)
    assert {bool(b.get("late_chunking")) for b in api.bodies[:-1]} == {late}
    assert api.bodies[-1]["task"] == "retrieval.query"


def test_async_store_on_v5_refuses_late_chunking_too(api_for: Any) -> None:
    from qdrant_client import AsyncQdrantClient

    from jv3_integrations.qdrant import AsyncQdrantStore

    api, provider = api_for(V5)

    async def run() -> None:
        client = AsyncQdrantClient(":memory:")
        store = AsyncQdrantStore(provider, client=client, collection="docs")
        try:
            with pytest.raises(InputError) as err:
                await store.add_documents(DOCS, late_chunking=True)
            _late_refusal(err.value)
            assert not await client.collection_exists("docs")
        finally:
            await client.close()

    asyncio.run(run())
    assert api.bodies == []


def _milvus(provider: Any, uri: str, collection: str) -> Any:
    from jv3_integrations.milvus import MilvusStore

    return MilvusStore(provider, uri=uri, collection=collection)


@pytest.mark.parametrize("host", ["qdrant", "milvus"])
def test_an_index_built_with_one_model_refuses_another_before_any_request(
    api_for: Any, host: str, tmp_path: Path
) -> None:
    """v3 and v5-text-small both give 1024 dimensions: only the recorded model tells."""
    v3_api, v3 = api_for("jina-embeddings-v3")
    v5_api, v5 = api_for(V5)
    if host == "qdrant":
        from qdrant_client import QdrantClient

        from jv3_integrations.qdrant import QdrantStore

        client = QdrantClient(":memory:")

        def open_store(provider: Any) -> Any:
            return QdrantStore(provider, client=client, collection="docs")
    else:
        uri = str(tmp_path / "milvus.db")

        def open_store(provider: Any) -> Any:
            return _milvus(provider, uri, "docs")

    built = open_store(v3)
    built.add_texts(["Bees make honey.", "Trains leave Oslo."])
    if host == "milvus":
        built.close()
    for call in (lambda s: s.search("honey", k=1), lambda s: s.add_texts(["one more"])):
        wrong = open_store(v5)
        with pytest.raises(ConfigurationError) as err:
            call(wrong)
        if host == "milvus":
            wrong.close()
        message = str(err.value)
        assert "model='jina-embeddings-v3'" in message and f"model='{V5}'" in message, message
    assert v5_api.bodies == []  # refused before any query was embedded
    right = open_store(v3)
    assert len(right.search("honey", k=2)) == 2  # the model it was built with still works
    if host == "milvus":
        right.close()
    assert all(b["model"] == "jina-embeddings-v3" for b in v3_api.bodies)


# -- embedders ----------------------------------------------------------------------------


def test_haystack_document_embedder_on_v5_refuses_late_chunking_before_any_request(
    api_for: Any,
) -> None:
    from haystack import Document

    from haystack_integrations.components.embedders.jina_v3 import (
        JinaV3DocumentEmbedder,
        JinaV3TextEmbedder,
    )

    api, provider = api_for(V5)
    docs = [Document(content=t, meta={"source_id": "s", "split_id": i}) for i, t in enumerate(DOCS)]
    late = JinaV3DocumentEmbedder(provider=provider, late_chunking=True)
    with pytest.raises(InputError) as err:
        late.run(documents=docs)
    _late_refusal(err.value)
    assert api.bodies == []
    out = JinaV3DocumentEmbedder(provider=provider).run(documents=docs)["documents"]
    assert [len(d.embedding) for d in out] == [1024, 1024]
    query = JinaV3TextEmbedder(provider=provider).run(text="honey")["embedding"]
    assert len(query) == 1024
    assert [b.get("task") for b in api.bodies] == ["retrieval.passage", "retrieval.query"]


def test_llama_index_late_chunking_on_v5_is_refused_before_any_request(api_for: Any) -> None:
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from jv3_integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingEmbedder

    api, provider = api_for(V5)
    nodes = [TextNode(text=t) for t in DOCS]
    for n in nodes:
        n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="src")
    with pytest.raises(InputError) as err:
        JinaV3LateChunkingEmbedder(provider=provider)(nodes)
    _late_refusal(err.value)
    assert api.bodies == []
    vectors = JinaV3Embedding(provider=provider).get_text_embedding_batch(DOCS)
    assert [len(v) for v in vectors] == [1024, 1024]


def test_langchain_embeds_at_the_models_size(api_for: Any) -> None:
    from jv3_integrations.langchain import JinaV3Embeddings

    api, provider = api_for("jina-embeddings-v4")
    emb = JinaV3Embeddings(provider=provider)
    assert [len(v) for v in emb.embed_documents(DOCS)] == [2048, 2048]
    assert len(emb.embed_query("honey")) == 2048
    assert [b.get("task") for b in api.bodies] == ["retrieval.passage", "retrieval.query"]


def test_milvus_embedding_function_on_v5_refuses_late_chunking(api_for: Any) -> None:
    from jv3_integrations.milvus import JinaV3EmbeddingFunction

    api, provider = api_for("jina-embeddings-v5-text-nano")
    fn = JinaV3EmbeddingFunction(provider=provider, late_chunking=True)
    with pytest.raises(InputError) as err:
        fn.encode_documents(DOCS)
    _late_refusal(err.value, "jina-embeddings-v5-text-nano")
    assert api.bodies == []
    plain = JinaV3EmbeddingFunction(provider=provider)
    assert plain.dim == 768
    assert np.asarray(plain.encode_documents(DOCS)).shape == (2, 768)
