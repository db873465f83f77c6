"""Pinecone-only behaviour, through the real SDK against the loopback Pinecone server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pinecone import Pinecone

from jv3_integrations import ConfigurationError, EmbeddingProvider, InputError
from jv3_integrations.pinecone import MAX_METADATA_BYTES, PineconeStore
from tests.integrations.test_stores_common import QUERIES, corpus
from tests.support.pinecone_server import API_VERSION, running_pinecone

TEXTS, METAS = corpus(90)


@pytest.fixture(scope="module")
def srv() -> Iterator[Any]:
    with running_pinecone() as server:
        yield server
        assert server.schema_errors == [], "responses broke the Pinecone OpenAPI schemas"


@pytest.fixture(scope="module")
def pc(srv: Any) -> Pinecone:
    return Pinecone(api_key=srv.state.api_key, host=srv.base_url)


@pytest.fixture(scope="module")
def filled(pc: Pinecone, local_provider: EmbeddingProvider) -> PineconeStore:
    store = PineconeStore(local_provider, client=pc, collection="filters", dimensions=32)
    store.add_texts(TEXTS, METAS)
    return store


def test_creates_serverless_cosine_index_with_sdk_10_requests(
    srv: Any, pc: Pinecone, local_provider: EmbeddingProvider
) -> None:
    store = PineconeStore(
        local_provider, client=pc, collection="made", dimensions=24, region="eu-west-1"
    )
    store.add_texts(TEXTS[:4], METAS[:4])
    model = pc.describe_index("made")
    assert (model.dimension, model.metric) == (24, "cosine")
    assert srv.state.indexes["made"].deployment == {
        "deployment_type": "managed",
        "cloud": "aws",
        "region": "eu-west-1",
    }
    assert all(h.get("X-Pinecone-Api-Version") == API_VERSION for _, _, h in srv.state.requests)
    assert store.stats() == {
        "dimension": 24,
        "metric": "cosine",
        "total": 4,
        "namespaces": {"": 4},
    }


def test_metadata_limit_and_types_checked_before_any_write(
    srv: Any, pc: Pinecone, local_provider: EmbeddingProvider
) -> None:
    before = len(srv.state.requests)
    store = PineconeStore(local_provider, client=pc, collection="limits", dimensions=16)
    big = "x" * (MAX_METADATA_BYTES - 5)
    with pytest.raises(InputError, match="40960 bytes of metadata"):
        store.add_texts(["short", big])
    with pytest.raises(InputError, match="must be str, number, bool or a list of str"):
        store.add_texts(["a"], metadatas=[{"nested": {"a": 1}}])
    with pytest.raises(InputError, match="must be str, number, bool or a list of str"):
        store.add_texts(["a"], metadatas=[{"missing": None}])
    with pytest.raises(InputError, match="40960"):
        store.add_documents(["Tiny. " + big])
    assert len(srv.state.requests) == before, "nothing may reach Pinecone"
    assert "limits" not in srv.state.indexes


def test_namespaces_are_separate(pc: Pinecone, local_provider: EmbeddingProvider) -> None:
    a = PineconeStore(local_provider, client=pc, collection="ns", namespace="a", dimensions=16)
    b = PineconeStore(local_provider, client=pc, collection="ns", namespace="b", dimensions=16)
    a.add_texts(TEXTS[:5])
    b.add_texts(TEXTS[5:8])
    assert (a.count(), b.count()) == (5, 3)
    assert {h.text for h in b.search(QUERIES[0], k=10)} == set(TEXTS[5:8])
    a.delete([a.search(QUERIES[0], k=1)[0].id])
    assert (a.count(), b.count()) == (4, 3)


FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"lang": {"$ne": "en"}}, lambda m: m["lang"] != "en"),
    ({"topic": {"$nin": ["bees", "chess"]}}, lambda m: m["topic"] not in ("bees", "chess")),
    ({"year": {"$gt": 2020}}, lambda m: m["year"] > 2020),
    ({"year": {"$gte": 2020}}, lambda m: m["year"] >= 2020),
    ({"year": {"$lt": 2003}}, lambda m: m["year"] < 2003),
    ({"year": {"$lte": 2003}, "lang": "de"}, lambda m: m["year"] <= 2003 and m["lang"] == "de"),
    (
        {"$or": [{"topic": {"$eq": "bees"}}, {"year": {"$in": [2001, 2002]}}]},
        lambda m: m["topic"] == "bees" or m["year"] in (2001, 2002),
    ),
    (
        {"$and": [{"lang": {"$in": ["de", "fr"]}}, {"year": {"$gte": 2010, "$lt": 2015}}]},
        lambda m: m["lang"] in ("de", "fr") and 2010 <= m["year"] < 2015,
    ),
]


@pytest.mark.parametrize(("flt", "keep"), FILTERS)
def test_native_filters(filled: PineconeStore, flt: dict[str, Any], keep: Any) -> None:
    hits = filled.search(QUERIES[2], k=90, filter=flt)
    assert {h.text for h in hits} == {t for t, m in zip(TEXTS, METAS, strict=True) if keep(m)}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_index_handle_as_client(pc: Pinecone, local_provider: EmbeddingProvider) -> None:
    PineconeStore(local_provider, client=pc, collection="handle", dimensions=16).add_texts(["a"])
    index = pc.Index(host=pc.describe_index("handle").host)
    store = PineconeStore(local_provider, client=index, dimensions=16)
    store.add_texts(["b", "c"])
    assert store.count() == 3
    with pytest.raises(ConfigurationError, match="dimension 16"):
        PineconeStore(local_provider, client=index, dimensions=8).search("q")


def test_wrong_key_surfaces_the_sdk_error(srv: Any, local_provider: EmbeddingProvider) -> None:
    from pinecone.errors import UnauthorizedError

    key = "pc-CANARY-3f9a7c1e5d"
    bad = Pinecone(api_key=key, host=srv.base_url)
    store = PineconeStore(local_provider, client=bad, collection="nope", dimensions=16)
    with pytest.raises(UnauthorizedError) as caught:
        store.add_texts(["x"])
    # the store holds a client that holds the key: none of what a user sees shows it
    for seen in (repr(store), str(store), str(caught.value), repr(caught.value)):
        assert key not in seen, seen


def test_loopback_server_checks_its_answers_against_the_openapi_schemas(
    srv: Any, filled: PineconeStore
) -> None:
    validators = srv.validators
    assert list(validators["IndexModel"].iter_errors({"name": "x"})), "missing fields must fail"
    model = srv.state.indexes["filters"].model(srv.base_url)
    assert not list(validators["IndexModel"].iter_errors(model))
    assert list(validators["QueryResponse"].iter_errors({"matches": [{"score": 1.0}]}))


async def test_async_stats_matches_sync(srv: Any, pc: Pinecone, filled: PineconeStore) -> None:
    from pinecone import AsyncPinecone

    from jv3_integrations.pinecone import AsyncPineconeStore

    apc = AsyncPinecone(api_key=srv.state.api_key, host=srv.base_url)
    store = AsyncPineconeStore(filled.provider, client=apc, collection="filters", dimensions=32)
    try:
        assert await store.stats() == filled.stats() and filled.stats()["total"] > 0
    finally:
        await store.aclose()
        await apc.close()
