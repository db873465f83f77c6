"""The CLI opens stores through their public url/key options (issue 23.2): no host client is
built by the CLI, nothing is contacted until first use, keys come from the hosts' variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from jv3_integrations import ConfigurationError, EmbeddingProvider, load_provider
from jv3_integrations._cli.stores import close_store, open_store
from jv3_integrations._cli.uri import parse_store_uri
from jv3_integrations.milvus import MilvusStore
from jv3_integrations.pinecone import PineconeStore
from jv3_integrations.qdrant import QdrantStore


@pytest.fixture
def provider():  # type: ignore[no-untyped-def]
    p = load_provider("http://127.0.0.1:9", api_key="k")  # never contacted here
    yield p
    p.close()


def test_servers_open_from_their_url_and_the_hosts_key_variables(
    provider: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "qdrant-secret")
    monkeypatch.setenv("MILVUS_TOKEN", "root:milvus-secret")
    monkeypatch.setenv("PINECONE_API_KEY", "pinecone-secret")
    monkeypatch.setenv("PINECONE_HOST", "http://127.0.0.1:1")
    q = open_store(parse_store_uri("qdrant:http://127.0.0.1:1"), "c", provider, 8)  # type: ignore[arg-type]
    m = open_store(parse_store_uri("milvus:http://127.0.0.1:1"), "c", provider, 8)  # type: ignore[arg-type]
    p = open_store(parse_store_uri("pinecone:idx"), "ns", provider, 8)  # type: ignore[arg-type]
    assert isinstance(q, QdrantStore) and q.url == "http://127.0.0.1:1"
    assert isinstance(m, MilvusStore) and m.uri == "http://127.0.0.1:1"
    assert isinstance(p, PineconeStore) and (p.collection, p.namespace) == ("idx", "ns")
    for store in (q, m, p):
        assert store.traits.multi_process
        assert "secret" not in repr(store)
        close_store(store)  # never opened: closing does nothing, raises nothing


def test_local_stores_open_lazily_and_say_when_busy(
    local_provider: EmbeddingProvider, tmp_path: Path
) -> None:
    provider = local_provider
    folder = tmp_path / "q"
    store = open_store(parse_store_uri(f"qdrant:{folder}"), "c", provider, 8)
    assert isinstance(store, QdrantStore) and not store.traits.multi_process
    assert not folder.exists()  # the constructor opened nothing
    store.count()
    busy = open_store(parse_store_uri(f"qdrant:{folder}"), "c", provider, 8)
    with pytest.raises(ConfigurationError, match="another process"):
        busy.count()
    close_store(store)
    assert busy.count() == 0  # released by close
    close_store(busy)
