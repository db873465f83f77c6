"""Interrupted ingestion loses nothing and duplicates nothing, in Qdrant, Milvus Lite and Pinecone.

A fault hits a random batch of ``add_texts`` / ``add_documents``: the provider fails, the store's
own client fails half-way through writing a batch, or the whole process is killed (SIGKILL, in
a child process). Re-running the same ingestion must then leave exactly the expected points:
every text once, with its right vector, nothing else. The stores are the real host clients:
Qdrant local mode (on disk for the kill test), Milvus Lite files, the loopback Pinecone.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jv3_integrations import (
    BaseProvider,
    Embeddings,
    EmbedRequest,
    LocalProvider,
    SentenceChunker,
    ServerError,
)

DIMS = 32
BATCH = 8
N_TEXTS = 61  # 8 batches, the last one short
ROOT = Path(__file__).resolve().parents[2]
_names = itertools.count()

TOPICS = ["river", "train", "bee", "city"]
TEXTS = [f"Passage {i}: the {TOPICS[i % 4]} number {i}." for i in range(N_TEXTS)]


def hash_vector(text: str, dims: int = DIMS) -> np.ndarray:
    """A deterministic unit vector per text (the expected value; no model involved)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest() * 4
    v = np.frombuffer(digest[:dims], dtype=np.uint8).astype(np.float32) - 127.5
    return v / np.linalg.norm(v)


class HashProvider(BaseProvider):
    """A cheap deterministic provider for the kill test; ``die_at``: SIGKILL at that call."""

    def __init__(self, die_at: int | None = None) -> None:
        self.calls = 0
        self.die_at = die_at

    @property
    def model_name(self) -> str:
        return "hash"

    @property
    def max_dimensions(self) -> int:
        return DIMS

    def _embed(self, request: EmbedRequest) -> Embeddings:
        if self.die_at is not None and self.calls == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.calls += 1
        vectors = np.stack([hash_vector(t, request.dimensions) for t in request.texts])
        return Embeddings(vectors, self.model_name, request.task, request.dimensions)


class FlakyProvider(BaseProvider):
    """The local model, failing once with a ServerError at embedding call ``fail_at``."""

    def __init__(self, inner: LocalProvider, fail_at: int | None) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def max_dimensions(self) -> int:
        return self.inner.max_dimensions

    def count_tokens(self, texts: Any, **kwargs: Any) -> Any:
        return self.inner.count_tokens(texts, **kwargs)

    def _embed(self, request: EmbedRequest) -> Embeddings:
        call, self.calls = self.calls, self.calls + 1
        if call == self.fail_at:
            raise ServerError("injected provider failure", status=503)
        return self.inner._embed(request)


# -- one kit per store: build a store, read back everything in it, break its upsert ----------


@dataclass
class Kit:
    name: str
    store: Callable[..., Any]  # (provider, collection) -> store
    contents: Callable[[Any], dict[str, tuple[str, np.ndarray, dict[str, Any]]]]
    host_upsert: Callable[[Any], tuple[Any, str]]  # (object, attribute) doing the host write


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("milvus-faults") / "faults.db")


@pytest.fixture(scope="module")
def pinecone_srv() -> Iterator[Any]:
    from tests.support.pinecone_server import running_pinecone

    with running_pinecone() as srv:
        yield srv


def _qdrant(request: pytest.FixtureRequest) -> Kit:
    from qdrant_client import QdrantClient

    from jv3_integrations.qdrant import QdrantStore

    client = QdrantClient(":memory:")

    def contents(store: Any) -> dict[str, tuple[str, np.ndarray, dict[str, Any]]]:
        points, _ = client.scroll(store.collection, limit=100_000, with_vectors=True)
        out = {}
        for p in points:
            meta = {k: v for k, v in (p.payload or {}).items() if k != "text"}
            out[str(p.id)] = (p.payload["text"], np.asarray(p.vector, dtype=np.float32), meta)
        return out

    return Kit(
        "qdrant",
        lambda provider, collection: QdrantStore(
            provider, client=client, collection=collection, dimensions=DIMS, batch_size=BATCH
        ),
        contents,
        lambda store: (store.client, "upsert"),
    )


def _milvus(request: pytest.FixtureRequest) -> Kit:
    from pymilvus import MilvusClient

    from jv3_integrations.milvus import MilvusStore

    client = MilvusClient(request.getfixturevalue("milvus_uri"))
    request.addfinalizer(client.close)

    def contents(store: Any) -> dict[str, tuple[str, np.ndarray, dict[str, Any]]]:
        rows = client.query(
            store.collection,
            filter="",
            output_fields=["id", "text", "metadata", "vector"],
            limit=16_384,
        )
        return {
            r["id"]: (r["text"], np.asarray(r["vector"], dtype=np.float32), r["metadata"])
            for r in rows
        }

    return Kit(
        "milvus",
        lambda provider, collection: MilvusStore(
            provider,
            client=client,
            collection=collection,
            dimensions=DIMS,
            batch_size=BATCH,
            index_type="FLAT",
        ),
        contents,
        lambda store: (store.client, "upsert"),
    )


def _pinecone(request: pytest.FixtureRequest) -> Kit:
    from pinecone import Pinecone

    from jv3_integrations.pinecone import PineconeStore

    srv = request.getfixturevalue("pinecone_srv")
    pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)

    def contents(store: Any) -> dict[str, tuple[str, np.ndarray, dict[str, Any]]]:
        index = srv.state.indexes.get(store.collection)
        if index is None:
            return {}
        vectors = index.namespaces.get("", {})
        out = {}
        for pid, (vec, meta) in vectors.items():
            rest = {k: v for k, v in meta.items() if k != "text"}
            out[pid] = (meta["text"], np.asarray(vec, dtype=np.float32), rest)
        return out

    def host_upsert(store: Any) -> tuple[Any, str]:
        store.create()  # the data-plane handle exists only after create()
        return store.index, "upsert"

    return Kit(
        "pinecone",
        lambda provider, collection: PineconeStore(
            provider, client=pc, collection=collection, dimensions=DIMS, batch_size=BATCH
        ),
        contents,
        host_upsert,
    )


KITS = {"qdrant": _qdrant, "milvus": _milvus, "pinecone": _pinecone}


@pytest.fixture(params=list(KITS))
def kit(request: pytest.FixtureRequest) -> Kit:
    return KITS[request.param](request)


def collection_name() -> str:
    return f"faults-{next(_names)}-{random.randrange(1 << 30)}"


@pytest.fixture(scope="module")
def local_vectors(local_provider: LocalProvider) -> dict[str, np.ndarray]:
    vectors = local_provider.embed_documents(TEXTS, dimensions=DIMS).vectors
    return dict(zip(TEXTS, vectors, strict=True))


def assert_exactly(
    contents: dict[str, tuple[str, np.ndarray, dict[str, Any]]],
    expected: dict[str, np.ndarray],
    atol: float = 2e-5,
) -> None:
    """Every expected text stored once, with its vector; nothing else."""
    texts = sorted(t for t, _, _ in contents.values())
    assert texts == sorted(expected), (
        f"{len(texts)} points for {len(expected)} texts; missing "
        f"{sorted(set(expected) - set(texts))[:3]}, unexpected/duplicated "
        f"{[t for t in set(texts) if texts.count(t) > 1 or t not in expected][:3]}"
    )
    for text, vector, _ in contents.values():
        np.testing.assert_allclose(vector, expected[text], atol=atol, err_msg=text)


def _fault_batch(label: str, n_batches: int) -> int:
    """A random batch (fixed per test), never the first: something is written before the fault."""
    return 1 + random.Random(label).randrange(n_batches - 1)


N_BATCHES = -(-N_TEXTS // BATCH)


# -- provider fails at a random batch ----------------------------------------------------------


@pytest.mark.parametrize("with_ids", [False, True], ids=["text-ids", "caller-ids"])
def test_provider_failure_then_rerun_leaves_exactly_the_texts(
    kit: Kit, with_ids: bool, local_provider: LocalProvider, local_vectors: dict[str, np.ndarray]
) -> None:
    k = _fault_batch(f"provider-{kit.name}-{with_ids}", N_BATCHES)
    ids = [f"doc-{i}" for i in range(N_TEXTS)] if with_ids else None
    name = collection_name()
    flaky = FlakyProvider(local_provider, fail_at=k)
    store = kit.store(flaky, name)
    with pytest.raises(ServerError, match="injected provider failure"):
        store.add_texts(TEXTS, ids=ids)
    partial = kit.contents(store)
    assert len(partial) == k * BATCH  # the batches before the fault, whole; nothing after
    returned = kit.store(FlakyProvider(local_provider, None), name).add_texts(TEXTS, ids=ids)
    contents = kit.contents(store)
    assert_exactly(contents, local_vectors)
    assert sorted(returned) == sorted(contents)  # the ids add_texts returned are the stored ones


# -- the store's own client fails half-way through a batch --------------------------------------


def test_store_failure_mid_batch_then_rerun_leaves_exactly_the_texts(
    kit: Kit, local_provider: LocalProvider, local_vectors: dict[str, np.ndarray]
) -> None:
    k = _fault_batch(f"store-{kit.name}", N_BATCHES)
    name = collection_name()
    store = kit.store(local_provider, name)
    target, attr = kit.host_upsert(store)
    original = getattr(target, attr)
    calls = itertools.count()

    def half_then_fail(*args: Any, **kwargs: Any) -> Any:
        if next(calls) != k:
            return original(*args, **kwargs)
        # write the first half of this batch, then lose the connection
        key = next(key for key in ("points", "vectors") if key in kwargs) if kwargs else None
        if key is not None:
            items = kwargs[key]
            original(*args, **{**kwargs, key: items[: len(items) // 2]})
        else:
            *head, items = args
            original(*head, items[: len(items) // 2], **kwargs)
        raise ConnectionResetError("injected: connection reset by the store")

    setattr(target, attr, half_then_fail)
    try:
        with pytest.raises(ConnectionResetError, match="injected"):
            store.add_texts(TEXTS)
    finally:
        setattr(target, attr, original)
    size = min(BATCH, N_TEXTS - k * BATCH)
    assert len(kit.contents(store)) == k * BATCH + size // 2
    store.add_texts(TEXTS)
    assert_exactly(kit.contents(store), local_vectors)


# -- late-chunked documents: a fault, then a re-run with one document shortened ---------------

DOCS = [
    " ".join(f"Document {d} sentence {s} talks about item {d * 10 + s}." for s in range(2 + d % 4))
    for d in range(12)
]


def test_documents_fault_then_rerun_leaves_exactly_the_current_chunks(
    kit: Kit, local_provider: LocalProvider
) -> None:
    name = collection_name()
    ids = [f"doc-{d}" for d in range(len(DOCS))]
    chunker = SentenceChunker()
    # A complete first ingestion: doc 5 is in the store with all of its chunks.
    kit.store(local_provider, name).add_documents(DOCS, ids=ids)
    before = kit.contents(kit.store(local_provider, name))
    doc5 = [meta for _, _, meta in before.values() if meta["doc_id"] == "doc-5"]
    assert len(doc5) == len(chunker.chunk(DOCS[5])) == 3  # the claim below is exercised
    # The edit: doc 5 shrinks to its first sentence. A fault interrupts its ingestion...
    docs = list(DOCS)
    docs[5] = docs[5].split(". ")[0] + "."
    groups = 4  # batch_size=BATCH chunks -> about this many document groups; fail in one
    k = _fault_batch(f"docs-{kit.name}", groups)
    with pytest.raises(ServerError):
        kit.store(FlakyProvider(local_provider, fail_at=k), name).add_documents(docs, ids=ids)
    # ... and the re-run must leave doc 5 with one chunk: its two old chunks are deleted.
    store = kit.store(local_provider, name)
    store.add_documents(docs, ids=ids)
    contents = kit.contents(store)
    expected = {
        (ids[d], j): (c.text, c.start, c.end)
        for d, doc in enumerate(docs)
        for j, c in enumerate(chunker.chunk(doc))
    }
    got = {
        (meta["doc_id"], int(meta["chunk_index"])): (text, int(meta["start"]), int(meta["end"]))
        for text, _, meta in contents.values()
    }
    assert len(contents) == len(expected)  # no stale chunk of doc 5, no duplicate
    assert got == expected
    for (doc_id, _), (text, start, end) in got.items():
        assert docs[ids.index(doc_id)][start:end] == text


# -- the process is killed (SIGKILL) at a random batch, then the ingestion is re-run -----------

CHILD = textwrap.dedent(
    """
    import sys
    from tests.reliability.test_ingest_faults import HashProvider, TEXTS, DIMS, BATCH
    kind, where, collection, die_at = sys.argv[1:5]
    provider = HashProvider(die_at=int(die_at))
    if kind == "qdrant":
        from jv3_integrations.qdrant import QdrantStore
        store = QdrantStore(provider, path=where, collection=collection, dimensions=DIMS,
                            batch_size=BATCH)
    elif kind == "milvus":
        from jv3_integrations.milvus import MilvusStore
        store = MilvusStore(provider, uri=where, collection=collection, dimensions=DIMS,
                            batch_size=BATCH, index_type="FLAT")
    else:
        from pinecone import Pinecone
        from jv3_integrations.pinecone import PineconeStore
        store = PineconeStore(provider, client=Pinecone(api_key="pc-test-key", host=where),
                              collection=collection, dimensions=DIMS, batch_size=BATCH)
    store.add_texts(TEXTS)
    print("NOT KILLED")
    """
)


def _store_for_kill(kind: str, where: str, collection: str, provider: BaseProvider) -> Any:
    if kind == "qdrant":
        from jv3_integrations.qdrant import QdrantStore

        return QdrantStore(
            provider, path=where, collection=collection, dimensions=DIMS, batch_size=BATCH
        )
    if kind == "milvus":
        from jv3_integrations.milvus import MilvusStore

        return MilvusStore(
            provider,
            uri=where,
            collection=collection,
            dimensions=DIMS,
            batch_size=BATCH,
            index_type="FLAT",
        )
    from pinecone import Pinecone

    from jv3_integrations.pinecone import PineconeStore

    pc = Pinecone(api_key="pc-test-key", host=where)
    return PineconeStore(
        provider, client=pc, collection=collection, dimensions=DIMS, batch_size=BATCH
    )


@pytest.mark.parametrize("kind", list(KITS))
def test_killed_process_then_rerun_leaves_exactly_the_texts(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    die_at = _fault_batch(f"kill-{kind}", N_BATCHES)
    collection = collection_name()
    if kind == "qdrant":
        where = str(tmp_path / "qdrant")
    elif kind == "milvus":
        where = str(tmp_path / "killed.db")
    else:
        where = request.getfixturevalue("pinecone_srv").base_url
    child = subprocess.run(
        [sys.executable, "-c", CHILD, kind, where, collection, str(die_at)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert "NOT KILLED" not in child.stdout
    store = _store_for_kill(kind, where, collection, HashProvider())
    try:
        before = store.count()
        # the batches before the kill were written as they went (streaming), none after
        assert before <= die_at * BATCH
        if kind == "pinecone":  # the server outlives the client: nothing written was lost
            assert before == die_at * BATCH
        store.add_texts(TEXTS)
        assert store.count() == N_TEXTS  # no duplicates ...
        hits = store.search_many(TEXTS, k=1)  # ... and each text is there with its own vector
        assert [row[0].text for row in hits] == TEXTS
        np.testing.assert_allclose([row[0].score for row in hits], 1.0, atol=1e-4)
    finally:
        client = getattr(store, "client", None)
        if kind != "pinecone" and client is not None:
            client.close()


# -- the async store: same guarantee ----------------------------------------------------------


async def test_async_store_provider_failure_then_rerun_leaves_exactly_the_texts(
    local_provider: LocalProvider, local_vectors: dict[str, np.ndarray]
) -> None:
    from qdrant_client import AsyncQdrantClient

    from jv3_integrations.qdrant import AsyncQdrantStore

    client = AsyncQdrantClient(":memory:")
    name = collection_name()
    k = _fault_batch("async-qdrant", N_BATCHES)
    try:
        flaky = AsyncQdrantStore(
            FlakyProvider(local_provider, fail_at=k),
            client=client,
            collection=name,
            dimensions=DIMS,
            batch_size=BATCH,
        )
        with pytest.raises(ServerError, match="injected"):
            await flaky.add_texts(TEXTS)
        assert await flaky.count() == k * BATCH
        store = AsyncQdrantStore(
            local_provider, client=client, collection=name, dimensions=DIMS, batch_size=BATCH
        )
        await store.add_texts(TEXTS)
        points, _ = await client.scroll(name, limit=100_000, with_vectors=True)
        contents = {
            str(p.id): (p.payload["text"], np.asarray(p.vector, dtype=np.float32), {})
            for p in points
        }
        assert_exactly(contents, local_vectors)
    finally:
        await client.close()
