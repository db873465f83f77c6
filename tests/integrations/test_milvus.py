"""Milvus-only behaviour: the embedding function, Milvus Lite defaults, native filters, limits.

One Milvus Lite client per module (its start-up is slow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import AsyncMilvusClient, MilvusClient

from jv3_integrations import ConfigurationError, EmbeddingProvider, InputError
from jv3_integrations.milvus import AsyncMilvusStore, JinaV3EmbeddingFunction, MilvusStore
from tests.integrations.test_stores_common import QUERIES, corpus

TEXTS, METAS = corpus(60)


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MilvusClient, str]]:
    uri = str(tmp_path_factory.mktemp("lite") / "m.db")
    client = MilvusClient(uri)
    yield client, uri
    client.close()


class CountingProvider:
    """Wraps a provider and counts embedding calls (to prove ``dim`` makes none)."""

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner, self.calls = inner, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith(("embed", "aembed")):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def test_embedding_function_interface(local_provider: EmbeddingProvider) -> None:
    counting = CountingProvider(local_provider)
    ef = JinaV3EmbeddingFunction(counting, dimensions=48)  # type: ignore[arg-type]
    assert ef.dim == 48 and counting.calls == 0
    docs = ef.encode_documents(TEXTS[:3])
    queries = ef.encode_queries(QUERIES[:2])
    assert isinstance(docs, list) and len(docs) == 3 and len(queries) == 2
    assert all(v.dtype == np.float32 and v.shape == (48,) for v in docs + queries)
    np.testing.assert_allclose(
        np.stack(docs), local_provider.embed_documents(TEXTS[:3], dimensions=48).vectors, atol=1e-6
    )
    np.testing.assert_allclose(
        np.stack(queries),
        local_provider.embed_queries(QUERIES[:2], dimensions=48).vectors,
        atol=1e-6,
    )
    np.testing.assert_allclose(np.stack(ef(TEXTS[:3])), np.stack(docs), atol=1e-6)
    assert JinaV3EmbeddingFunction(local_provider).dim == local_provider.dimensions
    with pytest.raises(InputError):
        JinaV3EmbeddingFunction(local_provider, dimensions=local_provider.dimensions + 1)


def test_default_client_is_a_lite_file_with_its_parent_created(
    local_provider: EmbeddingProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = MilvusStore(local_provider, uri="./nested/dir/jv3.db", dimensions=16)
    assert not (tmp_path / "nested").exists(), "the constructor must do no I/O"
    try:
        assert store.add_texts(TEXTS[:3]) and store.count() == 3
        assert (tmp_path / "nested" / "dir").is_dir()
        assert (tmp_path / "nested" / "dir" / "jv3.db").exists()
    finally:
        store.client.close()


def test_native_expression_filter(
    lite: tuple[MilvusClient, str], local_provider: EmbeddingProvider
) -> None:
    client, _ = lite
    store = MilvusStore(local_provider, client=client, collection="expr", dimensions=32)
    store.add_texts(TEXTS, METAS)
    hits = store.search(
        QUERIES[1], k=60, filter='metadata["year"] >= 2020 and metadata["lang"] != "en"'
    )
    expected = {
        t for t, m in zip(TEXTS, METAS, strict=True) if m["year"] >= 2020 and m["lang"] != "en"
    }
    assert {h.text for h in hits} == expected
    row = client.query("expr", ids=[hits[0].id], output_fields=["text", "metadata"])[0]
    assert row["text"] == hits[0].text and row["metadata"] == hits[0].metadata
    tricky = store.add_texts(["quote"], metadatas=[{"lang": 'x" or 1==1 or "'}])
    assert [h.id for h in store.search("quote", k=5, filter={"lang": 'x" or 1==1 or "'})] == tricky


def test_limits_are_checked_before_any_write(
    lite: tuple[MilvusClient, str], local_provider: EmbeddingProvider
) -> None:
    client, _ = lite
    store = MilvusStore(local_provider, client=client, collection="limits", dimensions=16)
    with pytest.raises(InputError, match="65535"):
        store.add_texts(["ok", "é" * 40000])
    with pytest.raises(InputError, match="JSON"):
        store.add_texts(["ok"], metadatas=[{"when": object()}])
    assert not client.has_collection("limits")


def test_async_store_on_lite(
    lite: tuple[MilvusClient, str], local_provider: EmbeddingProvider
) -> None:
    _, uri = lite

    async def run() -> None:
        aclient = AsyncMilvusClient(uri)
        try:
            store = AsyncMilvusStore(
                local_provider, client=aclient, collection="async-new", dimensions=16
            )
            with pytest.raises(ConfigurationError, match=r"MilvusStore\(\.\.\.\)\.create\(\)"):
                await store.add_texts(["x"])
        finally:
            await aclient.close()

    asyncio.run(run())
    with pytest.raises(ConfigurationError, match="AsyncMilvusClient"):
        AsyncMilvusStore(local_provider, client=lite[0])  # type: ignore[arg-type]


def test_async_store_accepts_uri_like_the_sync_store(
    lite: tuple[MilvusClient, str], local_provider: EmbeddingProvider
) -> None:
    """Issue 17: AsyncMilvusStore said "(same arguments)" but rejected ``uri=``."""
    client, uri = lite
    MilvusStore(local_provider, client=client, collection="async-uri", dimensions=16).create()

    async def run() -> None:
        store = AsyncMilvusStore(local_provider, uri=uri, collection="async-uri", dimensions=16)
        assert store._client is None, "the constructor must do no I/O"
        try:
            ids = await store.add_texts(TEXTS[:4])
            assert await store.count() == 4
            hits = await store.search(TEXTS[2], k=4)
            assert sorted(h.id for h in hits) == sorted(ids)
        finally:
            await store.client.close()

    asyncio.run(run())


def test_embedding_function_is_a_drop_in_for_pymilvus_model(
    local_provider: EmbeddingProvider, jina_server_url: str
) -> None:
    """Issue 17: the peer's options (api_key, task, late_chunking), duck-typed."""
    import inspect

    from jv3_integrations import JinaAPIProvider
    from tests.conftest import SERVER_API_KEY

    ours = set(inspect.signature(JinaV3EmbeddingFunction).parameters)
    assert {"api_key", "task", "dimensions", "late_chunking"} <= ours

    # api_key with a server spec; the key never shows in the repr
    ef = JinaV3EmbeddingFunction(jina_server_url, api_key=SERVER_API_KEY, dimensions=32)
    assert ef.dim == 32 and SERVER_API_KEY not in repr(ef.provider)
    np.testing.assert_allclose(
        np.stack(ef.encode_queries(QUERIES[:2])),
        local_provider.embed_queries(QUERIES[:2], dimensions=32).vectors,
        atol=1e-5,
    )
    # the peer's first argument, the model name, means Jina's API (no call made for dim)
    peer_style = JinaV3EmbeddingFunction("jina-embeddings-v3", api_key="jina_x")
    assert isinstance(peer_style.provider, JinaAPIProvider) and peer_style.dim == 1024

    # task= drives __call__ (default retrieval.passage, as the peer)
    sep = JinaV3EmbeddingFunction(local_provider, task="separation", dimensions=32)
    np.testing.assert_allclose(
        np.stack(sep(TEXTS[:3])),
        local_provider.embed(TEXTS[:3], task="separation", dimensions=32).vectors,
        atol=1e-6,
    )
    default = JinaV3EmbeddingFunction(local_provider, dimensions=32)
    np.testing.assert_allclose(
        np.stack(default(TEXTS[:3])),
        local_provider.embed_documents(TEXTS[:3], dimensions=32).vectors,
        atol=1e-6,
    )
    # late_chunking=True: the texts are the chunks of one document
    late = JinaV3EmbeddingFunction(local_provider, late_chunking=True, dimensions=32)
    chunks = ["Berlin is the capital of Germany. ", "Its population is 3.8 million."]
    expected = local_provider.embed(
        chunks, task="retrieval.passage", dimensions=32, late_chunking=True
    ).vectors
    np.testing.assert_allclose(np.stack(late.encode_documents(chunks)), expected, atol=1e-6)
    assert not np.allclose(np.stack(default.encode_documents(chunks)), expected, atol=1e-3)

    with pytest.raises(InputError, match="retrieval.passage"):
        JinaV3EmbeddingFunction(local_provider, task="query")
    with pytest.raises(ConfigurationError, match="api_key"):
        JinaV3EmbeddingFunction(local_provider, api_key="k")


def test_embedding_function_subclasses_pymilvus_model_when_installed() -> None:
    """With pymilvus-model installed (not an extra: it pulls transformers and onnxruntime)."""
    import inspect

    base = pytest.importorskip("pymilvus.model.base")
    peer = pytest.importorskip("pymilvus.model.dense").JinaEmbeddingFunction
    assert issubclass(JinaV3EmbeddingFunction, base.BaseEmbeddingFunction)
    peer_options = set(inspect.signature(peer).parameters) - {"model_name", "kwargs"}
    assert peer_options <= set(inspect.signature(JinaV3EmbeddingFunction).parameters)
