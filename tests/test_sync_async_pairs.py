"""Every sync/async pair takes the same parameters (in the spirit of httpcore's unasync --check).

A parameter added to one twin and forgotten in the other is a bug a user meets only on the path
they did not test; this file compares the twins' signatures (names, kinds, defaults and
annotations) so such a drift fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from jv3_integrations.core import (
    BaseProvider,
    JinaAPIProvider,
    LocalProvider,
    aembed_chunks,
    aembed_chunks_many,
    embed_chunks,
    embed_chunks_many,
)


def _params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    """Name, kind, default and annotation of each parameter; like unasync, an async twin's
    ``AsyncX`` types (``AsyncQdrantClient``) count as the sync ``X``."""
    sig = inspect.signature(fn)
    return [
        (p.name, p.kind, p.default, str(p.annotation).replace("Async", ""))
        for p in sig.parameters.values()
    ]


def _pairs() -> list[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    pairs: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        ("embed_chunks", embed_chunks, aembed_chunks),
        ("embed_chunks_many", embed_chunks_many, aembed_chunks_many),
    ]
    for cls in (BaseProvider, JinaAPIProvider, LocalProvider):
        for name in ("embed", "embed_documents", "embed_queries", "close"):
            pairs.append((f"{cls.__name__}.{name}", getattr(cls, name), getattr(cls, "a" + name)))
    return pairs


def _store_pairs() -> list[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    from jv3_integrations.integrations._store import AsyncStore, SyncStore
    from jv3_integrations.milvus import AsyncMilvusStore, MilvusStore
    from jv3_integrations.pinecone import AsyncPineconeStore, PineconeStore
    from jv3_integrations.qdrant import AsyncQdrantStore, QdrantStore

    pairs: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = []
    for sync, async_ in (
        (SyncStore, AsyncStore),
        (QdrantStore, AsyncQdrantStore),
        (MilvusStore, AsyncMilvusStore),
        (PineconeStore, AsyncPineconeStore),
    ):
        public = [n for n in dir(sync) if not n.startswith("_") and callable(getattr(sync, n))]
        assert public, sync
        for name in public:
            twin = "aclose" if name == "close" else name  # close/aclose, like the providers
            assert hasattr(async_, twin), f"{async_.__name__} has no {twin}"
            if getattr(sync, name) is getattr(async_, twin):
                continue  # one pure method shared by both (no I/O), not a twin
            pairs.append((f"{sync.__name__}.{name}", getattr(sync, name), getattr(async_, twin)))
        # The async Milvus and Pinecone stores need a client (the sync ones can build one:
        # Milvus Lite from uri=, Pinecone from the environment), so only Qdrant's match.
        if sync is QdrantStore:
            pairs.append((f"{sync.__name__}.__init__", sync.__init__, async_.__init__))
    return pairs


def _adapter_pairs() -> list[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    from haystack_integrations.components.embedders.jina_v3 import (
        JinaV3DocumentEmbedder,
        JinaV3TextEmbedder,
    )
    from jv3_integrations.langchain import JinaV3Embeddings
    from jv3_integrations.llama_index import JinaV3LateChunkingEmbedder

    pairs: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = []
    for cls in (JinaV3TextEmbedder, JinaV3DocumentEmbedder):
        for sync, async_ in (("run", "run_async"), ("warm_up", "warm_up_async")):
            pairs.append((f"{cls.__name__}.{sync}", getattr(cls, sync), getattr(cls, async_)))
        pairs.append((f"{cls.__name__}.close", cls.close, cls.close_async))
    for sync, async_ in (("embed_documents", "aembed_documents"), ("embed_query", "aembed_query")):
        pairs.append(
            (
                f"JinaV3Embeddings.{sync}",
                getattr(JinaV3Embeddings, sync),
                getattr(JinaV3Embeddings, async_),
            )
        )
    pairs.append(
        (
            "JinaV3LateChunkingEmbedder.__call__",
            JinaV3LateChunkingEmbedder.__call__,
            JinaV3LateChunkingEmbedder.acall,
        )
    )
    return pairs


@pytest.mark.parametrize("name, sync, async_", _pairs(), ids=[p[0] for p in _pairs()])
def test_core_pairs_have_the_same_parameters(
    name: str, sync: Callable[..., Any], async_: Callable[..., Any]
) -> None:
    assert inspect.iscoroutinefunction(async_), f"{name}: the async twin is not async"
    assert _params(sync) == _params(async_), name


def test_store_pairs_have_the_same_parameters() -> None:
    pairs = _store_pairs()
    assert len(pairs) > 20
    for name, sync, async_ in pairs:
        if not name.endswith("__init__"):
            assert inspect.iscoroutinefunction(async_), f"{name}: the async twin is not async"
        assert _params(sync) == _params(async_), name


def test_adapter_pairs_have_the_same_parameters() -> None:
    for name, sync, async_ in _adapter_pairs():
        assert inspect.iscoroutinefunction(async_), f"{name}: the async twin is not async"
        assert _params(sync) == _params(async_), name


def test_the_check_catches_a_drift() -> None:
    def sync(texts: list[str], *, task: str | None = None) -> None: ...

    async def drifted(texts: list[str], *, task: str | None = "retrieval.query") -> None: ...

    assert _params(sync) != _params(drifted)
