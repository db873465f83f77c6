"""What one query may cost and what it must say (issue 26 item 7).

* An empty (or white-space) query is refused by every store's search, sync and async, with the
  message the ``jv3`` CLI prints, before any embedding call: it has no words, and a search with
  it returned five arbitrary hits.
* The keyword side of a query is bounded: at most ``TermEncoder.max_query_terms`` distinct terms
  (default 1,024) go to the store, the first ones in the query, so one pasted document cannot
  make a query cost seconds (10,000 distinct terms took 4-12 s on 300 points in Qdrant local
  mode). The dense side is already bounded by the model's token limit.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jv3_integrations import EmbeddingProvider, InputError
from jv3_integrations.core._query import EMPTY_QUERY
from jv3_integrations.core._sparse import DEFAULT_MAX_QUERY_TERMS, TermEncoder

EMPTY = ["", "   ", "\n\t"]
TEXTS = ["The Spree flows through Berlin.", "Trains leave Paris at noon.", "Bees make honey."]


class NoEmbedding:
    """Wraps a provider; any embedding call fails the test (the refusal comes first)."""

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("embed", "aembed")):
            raise AssertionError(f"{name} called for an empty query")
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def pinecone_srv() -> Iterator[Any]:
    from tests.support.pinecone_server import running_pinecone

    with running_pinecone() as srv:
        yield srv


def _stores(kind: str, provider: EmbeddingProvider, tmp: Path, srv: Any) -> Any:
    if kind == "qdrant":
        from qdrant_client import QdrantClient

        from jv3_integrations.qdrant import QdrantStore

        return QdrantStore(provider, client=QdrantClient(":memory:"), dimensions=32, hybrid=True)
    if kind == "milvus":
        from jv3_integrations.milvus import MilvusStore

        return MilvusStore(provider, uri=str(tmp / "m.db"), dimensions=32, index_type="FLAT")
    from pinecone import Pinecone

    from jv3_integrations.pinecone import PineconeStore

    pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
    return PineconeStore(provider, client=pc, collection="empty-q", dimensions=32)


@pytest.mark.parametrize("kind", ["qdrant", "milvus", "pinecone"])
def test_an_empty_query_is_refused_like_the_cli(
    kind: str, local_provider: EmbeddingProvider, tmp_path: Path, pinecone_srv: Any
) -> None:
    store = _stores(kind, local_provider, tmp_path, pinecone_srv)
    store.add_texts(TEXTS)
    assert store.search("Berlin", k=2)  # the store answers real queries
    store.provider = NoEmbedding(local_provider)
    for query in EMPTY:
        with pytest.raises(InputError) as err:
            store.search(query, k=5)
        assert str(err.value) == EMPTY_QUERY
        with pytest.raises(InputError, match="the query is empty"):
            store.search_many(["Berlin", query], k=5)
    if getattr(store, "hybrid", False):
        with pytest.raises(InputError, match="the query is empty"):
            store.search("", k=5, mode="keyword")
    assert store.search_many([], k=5) == []


def test_async_stores_refuse_it_too(local_provider: EmbeddingProvider) -> None:
    from qdrant_client import AsyncQdrantClient

    from jv3_integrations.qdrant import AsyncQdrantStore

    async def main() -> None:
        client = AsyncQdrantClient(":memory:")
        store = AsyncQdrantStore(local_provider, client=client, dimensions=32)
        await store.add_texts(TEXTS)
        store.provider = NoEmbedding(local_provider)  # type: ignore[assignment]
        with pytest.raises(InputError) as err:
            await store.search(" ", k=5)
        assert str(err.value) == EMPTY_QUERY
        await client.close()

    asyncio.run(main())


def test_the_cli_says_the_same(tmp_path: Path) -> None:
    from jv3_integrations._cli.search import SearchOptions, run_search

    with pytest.raises(InputError) as err:
        run_search(SearchOptions(queries=[" "], store=f"qdrant:{tmp_path}/q"), lambda _m: None)
    assert str(err.value) == EMPTY_QUERY


# -- the keyword side's budget ----------------------------------------------------------------


def _cjk_words(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct words the tiny tokenizer cannot split: one distinct term each."""
    rnd = random.Random(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        w = "".join(chr(rnd.randrange(0x4E00, 0x9FFF)) for _ in range(3))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def test_default_budget_is_pinned(local_provider: EmbeddingProvider) -> None:
    assert DEFAULT_MAX_QUERY_TERMS == 1024
    assert TermEncoder(provider=local_provider).max_query_terms == 1024


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_budget_is_validated(local_provider: EmbeddingProvider, bad: Any) -> None:
    from jv3_integrations import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_query_terms"):
        TermEncoder(provider=local_provider, max_query_terms=bad)


def test_a_long_query_keeps_its_first_terms(
    local_provider: EmbeddingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    enc = TermEncoder(provider=local_provider, max_query_terms=100)
    words = _cjk_words(10_000)
    query = " ".join(words)
    with caplog.at_level("WARNING", logger="jv3_integrations.core._sparse"):
        (vec,) = enc.encode_queries([query])
    assert len(vec) == 100
    first = enc.encode_queries([" ".join(words[:100])])[0]
    assert vec.indices == first.indices and vec.values == [1.0] * 100
    assert "10000 distinct keyword terms" in caplog.text and "first 100" in caplog.text
    # documents are never cut: a passage keeps every term
    assert len(enc.encode_documents([query])[0]) == 10_000
    # a query under the budget is untouched, and says nothing
    caplog.clear()
    with caplog.at_level("WARNING", logger="jv3_integrations.core._sparse"):
        assert len(enc.encode_queries([" ".join(words[:100])])[0]) == 100
    assert not caplog.text


def test_qdrant_keyword_search_uses_the_budget(local_provider: EmbeddingProvider) -> None:
    """A term past the budget does not match; one inside it does."""
    from qdrant_client import QdrantClient

    from jv3_integrations.qdrant import QdrantStore

    words = _cjk_words(3000, seed=1)
    inside, outside = words[5], words[2500]
    store = QdrantStore(
        local_provider,
        client=QdrantClient(":memory:"),
        dimensions=32,
        hybrid=True,
        term_encoder=TermEncoder(provider=local_provider, max_query_terms=1024),
    )
    store.add_texts([f"passage {inside}", f"passage {outside}"], ids=["in", "out"])
    hits = store.search(" ".join(words), k=5, mode="keyword")
    assert [h.text for h in hits] == [f"passage {inside}"]
