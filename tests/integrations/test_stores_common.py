"""Behaviour every store shares (Qdrant, Milvus, Pinecone), run against each host's real client.

Qdrant runs in local mode (``:memory:``), Milvus on one Milvus Lite file per module, Pinecone
through the real SDK against the loopback server in ``tests/support/pinecone_server.py``.
Expected rankings are computed here with numpy from the same provider's vectors.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from jv3_integrations import (
    ConfigurationError,
    EmbeddingProvider,
    InputError,
    InputTypeError,
    SentenceChunker,
    embed_chunks_many,
)

DIMS = 64
SMALL = 16
_names = itertools.count()

TOPICS = ["rivers", "mountains", "trains", "bread", "music", "weather", "chess", "bees"]
CITIES = ["Berlin", "Paris", "Kyoto", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Riga", "Hanoi"]
LANGS = ["en", "de", "fr"]


MOODS = ["quietly", "loudly", "often", "rarely", "happily"]


def corpus(n: int = 200) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` distinct passages (up to 400) with metadata."""
    texts, metas = [], []
    for i in range(n):
        topic, city, mood = TOPICS[i % 8], CITIES[(i // 8) % 10], MOODS[(i // 80) % 5]
        texts.append(f"People in {city} {mood} talk about {topic}.")
        metas.append({"lang": LANGS[i % 3], "year": 2000 + i % 25, "topic": topic})
    return texts, metas


QUERIES = ["Which city talks about bees?", "trains in Oslo", "bread and music", "Wetter in Kyoto"]


def name() -> str:
    return f"c{next(_names)}-{np.random.default_rng().integers(1 << 30)}"


@functools.cache
def doc_vectors(provider: EmbeddingProvider, texts: tuple[str, ...]) -> np.ndarray:
    return provider.embed_documents(list(texts), dimensions=DIMS).vectors


def exact_ranking(
    provider: EmbeddingProvider,
    texts: list[str],
    query: str,
    k: int,
    keep: Callable[[int], bool] = lambda i: True,
) -> list[tuple[set[str], float]]:
    """The exact top ``k``: per rank, the texts scoring the same (ties) and the score."""
    docs = doc_vectors(provider, tuple(texts))
    q = provider.embed_queries([query], dimensions=DIMS).vectors[0]
    scores = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
    kept = [i for i in np.argsort(-scores, kind="stable") if keep(int(i))]
    return [
        ({texts[j] for j in kept if abs(scores[j] - scores[i]) < 1e-5}, float(scores[i]))
        for i in kept[:k]
    ]


def assert_same_ranking(hits: Any, expected: list[tuple[set[str], float]]) -> None:
    assert len(hits) == len(expected)
    got_scores = np.array([h.score for h in hits])
    np.testing.assert_allclose(got_scores, [s for _, s in expected], atol=2e-5)
    for rank, (hit, (texts, _)) in enumerate(zip(hits, expected, strict=True)):
        assert hit.text in texts, f"rank {rank}: {hit.text!r} not in {texts!r}"
    assert len({h.id for h in hits}) == len(hits)


# -- one kit per host -----------------------------------------------------------------------


@dataclass
class Kit:
    kind: str
    sync: Callable[..., Any]
    async_: Callable[..., Any]
    foreign: Callable[[str, int], None]  # make a collection with a non-cosine metric
    raw_count: Callable[[str], int]  # count points with the host's client alone
    two_stage: bool


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "stores.db")


@pytest.fixture(scope="module")
def milvus_client(milvus_uri: str) -> Iterator[Any]:
    from pymilvus import MilvusClient

    client = MilvusClient(milvus_uri)
    yield client
    client.close()


@pytest.fixture(scope="module")
def pinecone_srv() -> Iterator[Any]:
    from tests.support.pinecone_server import running_pinecone

    with running_pinecone() as srv:
        yield srv
        assert srv.schema_errors == [], "responses broke the Pinecone OpenAPI schemas"


def _qdrant_kit(request: pytest.FixtureRequest) -> Kit:
    from qdrant_client import AsyncQdrantClient, QdrantClient, models

    from jv3_integrations.qdrant import AsyncQdrantStore, QdrantStore

    client = QdrantClient(":memory:")

    def sync(provider: EmbeddingProvider, collection: str, **kw: Any) -> QdrantStore:
        kw.setdefault("dimensions", DIMS)
        return QdrantStore(provider, client=client, collection=collection, **kw)

    @asynccontextmanager
    async def async_(provider: EmbeddingProvider, collection: str, **kw: Any) -> AsyncIterator[Any]:
        kw.setdefault("dimensions", DIMS)
        aclient = AsyncQdrantClient(":memory:")
        try:
            yield AsyncQdrantStore(provider, client=aclient, collection=collection, **kw)
        finally:
            await aclient.close()

    def foreign(collection: str, dims: int) -> None:
        params = models.VectorParams(size=dims, distance=models.Distance.DOT)
        client.create_collection(collection, vectors_config=params)

    def raw_count(collection: str) -> int:
        return int(client.count(collection, exact=True).count)

    return Kit("qdrant", sync, async_, foreign, raw_count, True)


def _milvus_kit(request: pytest.FixtureRequest) -> Kit:
    from pymilvus import AsyncMilvusClient

    from jv3_integrations.milvus import AsyncMilvusStore, MilvusStore

    client = request.getfixturevalue("milvus_client")
    uri = request.getfixturevalue("milvus_uri")

    def sync(provider: EmbeddingProvider, collection: str, **kw: Any) -> MilvusStore:
        kw.setdefault("dimensions", DIMS)
        kw.setdefault("index_type", "FLAT")
        return MilvusStore(provider, client=client, collection=collection, **kw)

    @asynccontextmanager
    async def async_(provider: EmbeddingProvider, collection: str, **kw: Any) -> AsyncIterator[Any]:
        kw.setdefault("dimensions", DIMS)
        kw.setdefault("index_type", "FLAT")
        # Milvus Lite cannot create collections asynchronously: the sync store creates it.
        MilvusStore(provider, client=client, collection=collection, **kw).create()
        aclient = AsyncMilvusClient(uri)
        try:
            yield AsyncMilvusStore(provider, client=aclient, collection=collection, **kw)
        finally:
            await aclient.close()

    def foreign_ip(collection: str, dims: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims)
        params = MilvusClient.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        client.create_collection(collection, schema=schema, index_params=params)

    def raw_count(collection: str) -> int:
        return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    return Kit("milvus", sync, async_, foreign_ip, raw_count, True)


def _pinecone_kit(request: pytest.FixtureRequest) -> Kit:
    from pinecone import AsyncPinecone, Pinecone, ServerlessSpec

    from jv3_integrations.pinecone import AsyncPineconeStore, PineconeStore

    srv = request.getfixturevalue("pinecone_srv")
    pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)

    def sync(provider: EmbeddingProvider, collection: str, **kw: Any) -> PineconeStore:
        kw.setdefault("dimensions", DIMS)
        return PineconeStore(provider, client=pc, collection=collection, **kw)

    @asynccontextmanager
    async def async_(provider: EmbeddingProvider, collection: str, **kw: Any) -> AsyncIterator[Any]:
        kw.setdefault("dimensions", DIMS)
        apc = AsyncPinecone(api_key=srv.state.api_key, host=srv.base_url)
        store = AsyncPineconeStore(provider, client=apc, collection=collection, **kw)
        try:
            yield store
        finally:
            await store.aclose()
            await apc.close()

    def foreign(collection: str, dims: int) -> None:
        spec = ServerlessSpec(cloud="aws", region="us-east-1")
        pc.create_index(collection, dimension=dims, metric="dotproduct", spec=spec)

    def raw_count(collection: str) -> int:
        index = pc.Index(host=pc.describe_index(collection).host)
        return int(index.describe_index_stats().total_vector_count)

    return Kit("pinecone", sync, async_, foreign, raw_count, False)


KITS = {"qdrant": _qdrant_kit, "milvus": _milvus_kit, "pinecone": _pinecone_kit}


@pytest.fixture(scope="module", params=list(KITS))
def kit(request: pytest.FixtureRequest) -> Kit:
    return KITS[request.param](request)


@pytest.fixture(scope="module")
def indexed(kit: Kit, local_provider: EmbeddingProvider) -> Any:
    """The 200-passage corpus, indexed once per store."""
    texts, metas = corpus()
    store = kit.sync(local_provider, name(), batch_size=64)
    ids = store.add_texts(texts, metas)
    return store, texts, metas, ids


# -- the tests ------------------------------------------------------------------------------


def test_search_equals_exact_cosine_ranking(
    indexed: Any, local_provider: EmbeddingProvider
) -> None:
    store, texts, _, ids = indexed
    assert store.count() == 200 and len(set(ids)) == 200
    for query in QUERIES:
        hits = store.search(query, k=10)
        assert_same_ranking(hits, exact_ranking(local_provider, texts, query, 10))
        by_text = {t: i for i, t in zip(ids, texts, strict=True)}
        assert all(h.id == by_text[h.text] for h in hits)


def test_search_many_is_search_per_query(indexed: Any) -> None:
    store = indexed[0]
    many = store.search_many(QUERIES, k=5)
    assert [[h.id for h in hits] for hits in many] == [
        [h.id for h in store.search(q, k=5)] for q in QUERIES
    ]
    assert store.search_many([], k=5) == []


def test_hits_carry_text_and_metadata(indexed: Any) -> None:
    store, texts, metas, _ = indexed
    for hit in store.search("People in Oslo", k=20):
        i = texts.index(hit.text)
        assert hit.metadata == metas[i]


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        ({"lang": "de"}, lambda m: m["lang"] == "de"),
        (
            {"lang": ["de", "fr"], "topic": "bees"},
            lambda m: m["lang"] != "en" and m["topic"] == "bees",
        ),
        ({"year": 2003}, lambda m: m["year"] == 2003),
    ],
)
def test_filters(indexed: Any, local_provider: EmbeddingProvider, flt: Any, keep: Any) -> None:
    store, texts, metas, _ = indexed
    for query in QUERIES[:2]:
        hits = store.search(query, k=5, filter=flt)
        expected = exact_ranking(local_provider, texts, query, 5, lambda i: keep(metas[i]))
        assert hits and all(keep(h.metadata) for h in hits)
        assert_same_ranking(hits, expected)


def test_reingest_never_duplicates(kit: Kit, local_provider: EmbeddingProvider) -> None:
    store = kit.sync(local_provider, name())
    texts = ["alpha beta.", "gamma delta.", "epsilon."]
    first = store.add_texts(texts)
    assert store.add_texts(texts) == first and store.count() == 3
    with_ids = store.add_texts(["new text for a"], ids=["doc-a"])
    again = store.add_texts(["newer text for a"], ids=["doc-a"])
    assert with_ids == again and store.count() == 4
    assert store.search("newer text for a", k=10)[0].id == again[0]
    assert all(h.text != "new text for a" for h in store.search("text", k=10))
    store.delete(["doc-a", first[0]])  # a caller id and a returned id both work
    assert store.count() == 2
    assert store.add_texts([]) == []


def test_dimension_mismatch_raises_before_any_write(
    kit: Kit, local_provider: EmbeddingProvider
) -> None:
    collection = name()
    kit.sync(local_provider, collection).add_texts(["one.", "two."])
    other = kit.sync(local_provider, collection, dimensions=DIMS // 2)
    with pytest.raises(ConfigurationError, match=f"dimension.*{DIMS}"):
        other.add_texts(["three."])
    with pytest.raises(ConfigurationError):
        other.search("x")
    assert kit.raw_count(collection) == 2


def test_metric_mismatch_raises_before_any_write(
    kit: Kit, local_provider: EmbeddingProvider
) -> None:
    collection = name()
    kit.foreign(collection, DIMS)
    store = kit.sync(local_provider, collection)
    with pytest.raises(ConfigurationError, match="(?i)cosine"):
        store.add_texts(["one."])
    assert kit.raw_count(collection) == 0


def test_bad_input_raises_before_any_write(kit: Kit, local_provider: EmbeddingProvider) -> None:
    store = kit.sync(local_provider, name())
    with pytest.raises(InputTypeError):
        store.add_texts("a bare string")
    with pytest.raises(InputError, match="metadatas has 1 entries for 2"):
        store.add_texts(["a.", "b."], metadatas=[{}])
    with pytest.raises(InputError, match="'text'"):
        store.add_texts(["a.", "b."], metadatas=[{}, {"text": "x"}])
    with pytest.raises(InputError, match="twice"):
        store.add_texts(["a.", "b."], ids=["x", "x"])
    with pytest.raises(InputError, match="k must be"):
        store.search("q", k=0)
    assert store.count() == 0


def _doc(n: int) -> str:
    return " ".join(
        f"Sentence {i} says the {TOPICS[i % 8]} of {CITIES[i % 10]} are remarkable."
        for i in range(n)
    )


def test_add_documents_late_chunking(kit: Kit, local_provider: EmbeddingProvider) -> None:
    store = kit.sync(local_provider, name())
    docs = [_doc(6), _doc(3)]
    ids = store.add_documents(docs, ids=["long", "short"], metadatas=[{"lang": "en"}, None])
    chunks = [SentenceChunker().chunk(d) for d in docs]
    assert [len(i) for i in ids] == [len(c) for c in chunks] == [6, 3]
    assert store.count() == 9

    late = embed_chunks_many(
        local_provider, [[c.text for c in cs] for cs in chunks], dimensions=DIMS
    )
    q = local_provider.embed_queries(["bees of Berlin"], dimensions=DIMS).vectors[0]
    expected = sorted(
        ((float(ec.vector @ q), d, j) for d, doc in enumerate(late) for j, ec in enumerate(doc)),
        reverse=True,
    )
    hits = store.search("bees of Berlin", k=9)
    np.testing.assert_allclose([h.score for h in hits], [s for s, _, _ in expected], atol=2e-5)
    for hit in hits:
        m = hit.metadata
        d = ["long", "short"].index(m["doc_id"])
        assert docs[d][m["start"] : m["end"]] == hit.text == chunks[d][m["chunk_index"]].text
        assert (m.get("lang") == "en") == (d == 0)

    # A shorter new version of "long" leaves no stale chunk behind.
    store.add_documents([_doc(2)], ids=["long"])
    assert store.count() == 2 + 3
    long_hits = store.search("Sentence", k=10, filter={"doc_id": "long"})
    assert sorted(h.metadata["chunk_index"] for h in long_hits) == [0, 1]


def test_add_documents_without_late_chunking(kit: Kit, local_provider: EmbeddingProvider) -> None:
    store = kit.sync(local_provider, name())
    store.add_documents([_doc(3)], ids=["d"], late_chunking=False)
    texts = [c.text for c in SentenceChunker().chunk(_doc(3))]
    hits = store.search("chess in Paris", k=3)
    assert_same_ranking(hits, exact_ranking(local_provider, texts, "chess in Paris", 3))
    with pytest.raises(InputError, match="repeats"):
        store.add_documents(["x.", "x."])
    with pytest.raises(InputError, match="chunk_index"):
        store.add_documents(["x."], metadatas=[{"chunk_index": 3}])


# Pinecone indexes hold one dense vector per record: two-stage search is Qdrant's and Milvus'.
@pytest.mark.parametrize("kit", [k for k in KITS if k != "pinecone"], indirect=True)
def test_two_stage_search_rescores_prefetched_candidates(
    kit: Kit, local_provider: EmbeddingProvider
) -> None:
    assert kit.two_stage
    texts, metas = corpus(120)
    factor = 2
    option = "prefetch_factor" if kit.kind == "qdrant" else "funnel_factor"
    store = kit.sync(local_provider, name(), small_dimensions=SMALL, **{option: factor})
    store.add_texts(texts, metas)
    docs = doc_vectors(local_provider, tuple(texts))
    for query in QUERIES:
        q = local_provider.embed_queries([query], dimensions=DIMS).vectors[0]
        small_docs = docs[:, :SMALL] / np.linalg.norm(docs[:, :SMALL], axis=1, keepdims=True)
        small_q = q[:SMALL] / np.linalg.norm(q[:SMALL])
        candidates = np.argsort(-(small_docs @ small_q), kind="stable")[: 5 * factor]
        full_scores = docs[candidates] @ q
        order = candidates[np.argsort(-full_scores, kind="stable")][:5]
        hits = store.search(query, k=5)
        assert_same_ranking(hits, [({texts[i]}, float(docs[i] @ q)) for i in order])
    with pytest.raises(ConfigurationError):
        kit.sync(local_provider, store.collection).add_texts(["layout differs"])


async def test_async_twin_agrees_with_sync(
    kit: Kit, indexed: Any, local_provider: EmbeddingProvider
) -> None:
    sync_store, texts, metas, ids = indexed
    async with kit.async_(local_provider, name()) as store:
        assert await store.add_texts(texts, metas) == ids
        assert await store.count() == 200
        many = await store.search_many(QUERIES, k=5, filter={"lang": "de"})
        expected = sync_store.search_many(QUERIES, k=5, filter={"lang": "de"})
        for got, want in zip(many, expected, strict=True):
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=2e-5)
        hits = await store.search(QUERIES[0], k=3)
        assert [h.id for h in hits] == [h.id for h in sync_store.search(QUERIES[0], k=3)]
        doc_ids = await store.add_documents([_doc(4)], ids=["adoc"])
        assert [len(d) for d in doc_ids] == [4] and await store.count() == 204
        await store.add_documents([_doc(2)], ids=["adoc"])
        await store.delete(ids[:10])
        assert await store.count() == 192


def test_api_provider_smoke(
    kit: Kit, api_provider: EmbeddingProvider, local_provider: EmbeddingProvider
) -> None:
    """The same store over JinaAPIProvider (our server, same checkpoint): same hits as local."""
    texts, metas = corpus(30)
    collection = name()
    remote = kit.sync(api_provider, collection)
    ids = remote.add_texts(texts, metas)
    assert remote.count() == 30
    hits = remote.search(QUERIES[0], k=5, filter={"lang": "fr"})
    keep = [m["lang"] == "fr" for m in metas]
    assert_same_ranking(hits, exact_ranking(local_provider, texts, QUERIES[0], 5, keep.__getitem__))
    assert {h.id for h in hits} <= set(ids)
    chunk_ids = remote.add_documents([_doc(3)], ids=["api-doc"])
    assert [len(c) for c in chunk_ids] == [3] and remote.count() == 33
