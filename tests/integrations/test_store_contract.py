"""The store contract (issue 23): open from a URL and a key, no I/O in constructors, public
write/delete/close and ``with``, declared traits, per-document chunk ids.

Real parts only: Qdrant local mode, Milvus Lite, the loopback Pinecone server, the tiny model.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from jv3_integrations import (
    ConfigurationError,
    EmbeddingProvider,
    InputError,
    InputTypeError,
    load_provider,
)
from jv3_integrations.milvus import AsyncMilvusStore, MilvusStore
from jv3_integrations.pinecone import AsyncPineconeStore, PineconeStore
from jv3_integrations.qdrant import AsyncQdrantStore, QdrantStore
from jv3_integrations.stores import Record, StoreTraits, SyncStore, chunk_point_id, point_id
from tests.support.pinecone_server import running_pinecone

DIMS = 32


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A TCP port that accepts connections but never answers: every attempt is recorded."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock
    sock.close()


def _connections(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def test_constructors_do_no_io_on_an_unreachable_provider_and_store(
    listener: tuple[str, socket.socket], tmp_path: Path
) -> None:
    """A self-hosted provider (whose size needs GET /v1/models) and a store server that never
    answer: every constructor returns at once, and nothing has connected anywhere."""
    url, sock = listener
    stores: list[Any] = [
        QdrantStore(url, url=url, api_key="qdrant-secret"),
        AsyncQdrantStore(url, url=url, api_key="qdrant-secret"),
        QdrantStore(url, path=str(tmp_path / "never-made")),
        MilvusStore(url, uri=url, token="user:milvus-secret"),
        AsyncMilvusStore(url, uri=url, token="user:milvus-secret"),
        MilvusStore(url, uri=str(tmp_path / "sub" / "never.db")),
        PineconeStore(url, api_key="pinecone-secret", host=url),
        AsyncPineconeStore(url, api_key="pinecone-secret", host=url),
        QdrantStore(url, url=url, small_dimensions=8, hybrid=True),
    ]
    # a provider instance too (on Python 3.11 a Protocol isinstance would read its
    # max_dimensions, which asks the server)
    provider = load_provider(url, api_key="k")
    stores += [QdrantStore(provider, url=url), MilvusStore(provider, uri=url)]
    assert _connections(sock) == 0
    assert not (tmp_path / "never-made").exists() and not (tmp_path / "sub").exists()
    for store in stores:  # keys never show
        assert "secret" not in repr(store) and "secret" not in str(store)


def test_a_bad_option_fails_in_the_constructor_before_any_io() -> None:
    with pytest.raises(ConfigurationError, match="url"):
        QdrantStore("local:x", api_key="k")  # a key without a server
    with pytest.raises(ConfigurationError, match="one of"):
        QdrantStore("local:x", url="http://127.0.0.1:1", path="./q")
    with pytest.raises(ConfigurationError, match="token"):
        MilvusStore("local:x", uri="./lite.db", token="t")
    with pytest.raises(ConfigurationError, match="client="):
        PineconeStore("local:x", client=_pinecone_handle(), api_key="k")
    with pytest.raises(ConfigurationError, match="dimensions"):
        QdrantStore("local:x", dimensions=0)


def _pinecone_handle() -> Any:
    from pinecone import Pinecone

    return Pinecone(api_key="k", host="http://127.0.0.1:1")


def test_a_too_large_size_fails_on_first_use_before_any_write(
    local_provider: EmbeddingProvider,
) -> None:
    store = QdrantStore(local_provider, dimensions=local_provider.max_dimensions + 1)
    with pytest.raises(ConfigurationError, match="dimensions"):
        store.add_texts(["never written"])


def test_traits_are_declared_from_the_configuration(tmp_path: Path) -> None:
    spec = "http://127.0.0.1:1"
    assert QdrantStore(spec).traits == StoreTraits(multi_process=False, persistent=False)
    assert QdrantStore(spec, path=str(tmp_path)).traits == StoreTraits(multi_process=False)
    assert QdrantStore(spec, url=spec).traits == StoreTraits(multi_process=True)
    memory = QdrantClient(":memory:")
    assert QdrantStore(spec, client=memory).traits.multi_process is False
    assert MilvusStore(spec, uri=str(tmp_path / "a.db")).traits.multi_process is False
    assert MilvusStore(spec, uri="http://127.0.0.1:19530").traits.multi_process is True
    assert PineconeStore(spec, api_key="k").traits.multi_process is True


@pytest.fixture(params=["qdrant", "milvus"])
def local_store(
    request: pytest.FixtureRequest, tmp_path: Path, local_provider: EmbeddingProvider
) -> Iterator[SyncStore]:
    if request.param == "qdrant":
        store: SyncStore = QdrantStore(
            local_provider, path=str(tmp_path / "q"), dimensions=DIMS, exact=True
        )
    else:
        store = MilvusStore(local_provider, uri=str(tmp_path / "m.db"), dimensions=DIMS)
    with store:
        yield store


def test_write_then_search_delete_and_stale_chunks(
    local_store: SyncStore, local_provider: EmbeddingProvider
) -> None:
    texts = ["Berlin is in Germany.", "Paris is in France.", "Bees make honey."]
    vectors = local_provider.embed_documents(texts, dimensions=DIMS).vectors
    records = [
        Record(chunk_point_id("doc", j), t, {"doc_id": "doc", "chunk_index": j})
        for j, t in enumerate(texts)
    ]
    local_store.write(records, vectors)
    local_store.write(records, vectors)  # the same ids again: overwritten, not added
    assert local_store.count() == 3
    found = {h.id: (h.text, h.metadata["chunk_index"]) for h in local_store.search("x", k=5)}
    assert found == {chunk_point_id("doc", j): (t, j) for j, t in enumerate(texts)}
    # own ids go through point_id, as add_texts makes them
    local_store.write([Record("mine", "Rome is in Italy.", {})], vectors[:1])
    assert point_id("mine") in {h.id for h in local_store.search("Rome", k=4)}
    local_store.delete(["mine"])
    # a shorter new version of "doc": keep its first chunk only
    local_store.delete(keep_chunks={"doc": 1})
    assert local_store.count() == 1
    assert [h.id for h in local_store.search("Berlin", k=5)] == [chunk_point_id("doc", 0)]


def test_write_checks_everything_before_writing(
    local_store: SyncStore, local_provider: EmbeddingProvider
) -> None:
    vectors = local_provider.embed_documents(["a", "b"], dimensions=DIMS).vectors
    good = [Record("a", "a", {}), Record("b", "b", {})]
    with pytest.raises(ConfigurationError, match=f"{DIMS // 2}-dimensional"):
        local_store.write(good, vectors[:, : DIMS // 2])
    with pytest.raises(InputError, match="one row per record"):
        local_store.write(good, vectors[:1])
    with pytest.raises(InputTypeError, match=r"records\[1\]"):
        local_store.write([good[0], ("b", "b")], vectors)  # type: ignore[list-item]
    with pytest.raises(InputError, match="text"):
        local_store.write([Record("a", "a", {"text": "x"}), good[1]], vectors)
    bad = vectors.copy()
    bad[1, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        local_store.write(good, bad)
    with pytest.raises(InputTypeError, match="keep_chunks"):
        local_store.delete(keep_chunks={"doc": -1})
    assert local_store.count() == 0


def test_add_documents_returns_each_documents_chunk_ids(local_store: SyncStore) -> None:
    docs = ["One. Two. Three.", "Alpha. Beta."]
    ids = local_store.add_documents(docs, ids=["d1", "d2"])
    assert len(ids) == 2 and all(ids)
    assert ids[0] == [chunk_point_id("d1", j) for j in range(len(ids[0]))]
    assert ids[1] == [chunk_point_id("d2", j) for j in range(len(ids[1]))]
    assert local_store.count() == len(ids[0]) + len(ids[1])


def test_with_closes_what_the_store_opened(
    tmp_path: Path, local_provider: EmbeddingProvider
) -> None:
    path = str(tmp_path / "q")
    with QdrantStore(local_provider, path=path, dimensions=DIMS) as store:
        store.add_texts(["kept after close"])
    # the folder lock is released: another store (another client) opens the same folder
    with QdrantStore(local_provider, path=path, dimensions=DIMS) as again:
        assert again.count() == 1
        # and a second one while it is open is refused in our words
        busy = QdrantStore(local_provider, path=path, dimensions=DIMS)
        with pytest.raises(ConfigurationError, match="another process"):
            busy.count()
    # a client you pass stays yours: closing the store leaves it open
    client = QdrantClient(":memory:")
    with QdrantStore(local_provider, client=client, dimensions=DIMS) as mine:
        mine.add_texts(["x"])
    assert client.count("jv3").count == 1
    client.close()


async def test_async_with_closes_and_reopens(
    tmp_path: Path, local_provider: EmbeddingProvider
) -> None:
    path = str(tmp_path / "aq")
    async with AsyncQdrantStore(local_provider, path=path, dimensions=DIMS) as store:
        await store.add_texts(["one"])
        await store.write([Record("two", "two", {})], np.eye(1, DIMS, dtype=np.float32))
        assert await store.count() == 2
    async with AsyncQdrantStore(local_provider, path=path, dimensions=DIMS) as again:
        assert await again.count() == 2


def test_pinecone_opens_from_a_key_and_host(local_provider: EmbeddingProvider) -> None:
    with (
        running_pinecone() as srv,
        PineconeStore(
            local_provider,
            api_key=srv.state.api_key,
            host=srv.base_url,
            collection="from-key",
            dimensions=DIMS,
        ) as store,
    ):
        ids = store.add_texts(["Berlin is in Germany."])
        assert [h.id for h in store.search("Berlin", k=3)] == ids


def test_the_contract_module_loads_no_host_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jv3_integrations.stores\n"
        "heavy = ('torch', 'qdrant_client', 'pymilvus', 'pinecone', 'ray')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
