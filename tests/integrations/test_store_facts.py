"""Issue 17: stores remember how they were built, in the collection's own metadata.

Qdrant collection metadata, Milvus collection properties, Pinecone index tags (on the loopback
server, per the 2026-07 OpenAPI). A store opened with another model, size or layout is refused
before any write or search, naming both values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jv3_integrations import ConfigurationError, EmbeddingProvider, LocalProvider
from tests.integrations import test_stores_common as common
from tests.integrations.test_stores_common import DIMS, Kit, corpus, name

# The per-host kits and their servers, shared with the common store tests (pytest finds
# fixtures by module attribute name).
kit = common.kit
milvus_client = common.milvus_client
milvus_uri = common.milvus_uri
pinecone_srv = common.pinecone_srv

TEXTS, METAS = corpus(6)


@pytest.fixture(scope="module")
def other_model(
    conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddingProvider]:
    """Same sizes, another model (its name is its folder's): what a mix-up looks like."""
    link = tmp_path_factory.mktemp("models") / "other-model"
    link.symlink_to(conformance_dir, target_is_directory=True)
    provider = LocalProvider(str(link))
    yield provider
    provider.close()


def _recorded(store: Any, kind: str, collection: str) -> dict[str, str]:
    """The facts as the host's own client shows them."""
    if kind == "qdrant":
        return dict(store.client.get_collection(collection).config.metadata or {})
    if kind == "milvus":
        return dict(store.client.describe_collection(collection)["properties"])
    return dict(store.client.describe_index(collection).tags or {})


def test_the_collection_records_model_and_dimensions(
    kit: Kit, local_provider: EmbeddingProvider
) -> None:
    coll = name()
    store = kit.sync(local_provider, coll)
    store.add_texts(TEXTS[:2])
    facts = _recorded(store, kit.kind, coll)
    assert facts["jv3_model"] == local_provider.model_name == "tiny-v3"
    assert facts["jv3_dimensions"] == str(DIMS)
    assert {k: v for k, v in facts.items() if k.startswith("jv3_")} == store.store_facts()


def test_another_model_is_refused_before_any_write_or_search(
    kit: Kit, local_provider: EmbeddingProvider, other_model: EmbeddingProvider
) -> None:
    coll = name()
    kit.sync(local_provider, coll).add_texts(TEXTS, METAS)
    before = kit.raw_count(coll)
    for call in (
        lambda s: s.add_texts(["one more"]),
        lambda s: s.search("anything", k=1),
        lambda s: s.delete(["x"]),
    ):
        wrong = kit.sync(other_model, coll)  # same dimensions: only the metadata tells
        with pytest.raises(ConfigurationError) as err:
            call(wrong)
        message = str(err.value)
        assert "model='tiny-v3'" in message and "model='other-model'" in message
    assert kit.raw_count(coll) == before
    assert len(kit.sync(local_provider, coll).search("anything", k=3)) == 3  # the right one works


# Qdrant's async twin is checked in tests/integrations/test_qdrant.py's stores: the kit's
# async client opens another :memory: database than its sync one.
@pytest.mark.parametrize("kit", ["milvus", "pinecone"], indirect=True)
def test_async_stores_check_too(
    kit: Kit,
    local_provider: EmbeddingProvider,
    other_model: EmbeddingProvider,
    request: pytest.FixtureRequest,
) -> None:
    import asyncio

    coll = name()
    kit.sync(local_provider, coll).add_texts(TEXTS[:2])

    async def run() -> None:
        if kit.kind == "milvus":  # the kit's async_ creates through the sync store: open directly
            from jv3_integrations.milvus import AsyncMilvusStore

            uri = request.getfixturevalue("milvus_uri")
            wrong = AsyncMilvusStore(other_model, uri=uri, collection=coll, dimensions=DIMS)
            try:
                with pytest.raises(ConfigurationError, match="model='other-model'"):
                    await wrong.search("x", k=1)
            finally:
                await wrong.client.close()
            return
        async with kit.async_(other_model, coll) as wrong:
            with pytest.raises(ConfigurationError, match="model='other-model'"):
                await wrong.add_texts(["x"])

    asyncio.run(run())
    assert kit.raw_count(coll) == 2


@pytest.mark.parametrize("kit", ["qdrant"], indirect=True)  # one host: the rule is StoreCore's
def test_collection_without_our_metadata_is_still_accepted(
    kit: Kit, local_provider: EmbeddingProvider
) -> None:
    """Made before the facts were recorded (or by another tool): size and metric still checked."""
    from qdrant_client import models

    coll = name()
    store = kit.sync(local_provider, coll)
    params = models.VectorParams(size=DIMS, distance=models.Distance.COSINE)
    store.client.create_collection(coll, vectors_config=params)
    assert store.add_texts(TEXTS[:2]) and kit.raw_count(coll) == 2


@pytest.mark.parametrize("kit", ["qdrant"], indirect=True)  # binary quantization is Qdrant's
def test_qdrant_quantization_is_part_of_the_record(
    kit: Kit, local_provider: EmbeddingProvider
) -> None:
    coll = name()
    kit.sync(local_provider, coll, binary_quantization=True).add_texts(TEXTS[:2])
    with pytest.raises(ConfigurationError, match="quantization='binary'.*quantization='none'"):
        kit.sync(local_provider, coll).search("x", k=1)
