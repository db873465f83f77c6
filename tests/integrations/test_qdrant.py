"""Qdrant-only behaviour: client handling, native filters, quantization and two-stage layout.

Local mode is exact brute force and ignores HNSW and quantization, so the collection layout and
the requests the store builds are also run in Qdrant Edge (the real engine, in-process) when
``qdrant-edge-py`` is installed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from jv3_integrations import ConfigurationError, EmbeddingProvider, InputError, truncate
from jv3_integrations.qdrant import AsyncQdrantStore, QdrantStore
from tests.integrations.test_stores_common import QUERIES, corpus

TEXTS, METAS = corpus(200)


def test_default_client_is_in_memory_and_path_mode_persists(
    local_provider: EmbeddingProvider, tmp_path: Path
) -> None:
    store = QdrantStore(local_provider, collection="mem")
    assert isinstance(store.client, QdrantClient) and store.count() == 0
    disk = QdrantStore(local_provider, path=str(tmp_path / "q"), collection="disk")
    assert not (tmp_path / "q").exists(), "the constructor must do no I/O"
    ids = disk.add_texts(TEXTS[:5])
    disk.client.close()
    reopened = QdrantStore(local_provider, path=str(tmp_path / "q"), collection="disk")
    assert reopened.count() == 5
    assert {h.id for h in reopened.search(QUERIES[0], k=10)} == set(ids)
    reopened.client.close()


def test_wrong_client_type_is_a_clear_error(local_provider: EmbeddingProvider) -> None:
    with pytest.raises(ConfigurationError, match="AsyncQdrantStore"):
        QdrantStore(local_provider, client=AsyncQdrantClient(":memory:"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="QdrantStore"):
        AsyncQdrantStore(local_provider, client=QdrantClient(":memory:"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="small_dimensions"):
        QdrantStore(local_provider, dimensions=8, small_dimensions=9)
    # against the provider's size: on first use (the constructor does no I/O), before writing
    store = QdrantStore(local_provider, small_dimensions=local_provider.dimensions + 1)
    with pytest.raises(ConfigurationError, match="small_dimensions"):
        store.add_texts(["never written"])


def test_native_filter_and_payload_layout(local_provider: EmbeddingProvider) -> None:
    client = QdrantClient(":memory:")
    store = QdrantStore(local_provider, client=client, collection="f", dimensions=32)
    ids = store.add_texts(TEXTS[:40], METAS[:40])
    point = client.retrieve("f", [ids[7]])[0]
    assert point.payload == {"text": TEXTS[7], **METAS[7]}
    native = models.Filter(
        must=[models.FieldCondition(key="year", range=models.Range(gte=2010, lt=2020))]
    )
    hits = store.search(QUERIES[0], k=40, filter=native)
    expected = {t for t, m in zip(TEXTS[:40], METAS[:40], strict=True) if 2010 <= m["year"] < 2020}
    assert {h.text for h in hits} == expected
    assert client.get_collection("f").config.params.vectors.size == 32  # type: ignore[union-attr]


def test_binary_quantization_and_two_stage_layout(local_provider: EmbeddingProvider) -> None:
    client = QdrantClient(":memory:")
    store = QdrantStore(
        local_provider,
        client=client,
        collection="bq",
        dimensions=64,
        small_dimensions=16,
        binary_quantization=True,
    )
    config = store.collection_config()
    assert config["quantization_config"] == models.BinaryQuantization(
        binary=models.BinaryQuantizationConfig(always_ram=True)
    )
    store.create()
    params = client.get_collection("bq").config.params
    assert isinstance(params.vectors, dict)
    assert params.vectors["small"].size == 16 and params.vectors["full"].size == 64
    assert params.vectors["full"].hnsw_config == models.HnswConfigDiff(m=0)
    request = store._requests(np.ones((1, 64), np.float32), np.ones((1, 16), np.float32), 3, None)[
        0
    ]
    assert isinstance(request.prefetch, models.Prefetch) and request.prefetch.limit == 12
    assert request.prefetch.params.quantization == models.QuantizationSearchParams(  # type: ignore[union-attr]
        rescore=True, oversampling=2.0
    )


# -- Qdrant Edge: the same layout and requests in the real engine ---------------------------

try:
    import qdrant_edge
except ImportError:  # only the real-engine check below needs it; every other test still runs
    qdrant_edge = None

needs_edge = pytest.mark.skipif(
    qdrant_edge is None,
    reason="qdrant-edge-py not installed (pip install qdrant-edge-py): only the real-engine "
    "HNSW / binary-quantization check test_edge_runs_two_stage_and_binary_quantization is skipped",
)


def _edge_params(params: models.VectorParams) -> Any:
    hnsw = None
    if params.hnsw_config is not None and params.hnsw_config.m is not None:
        hnsw = qdrant_edge.HnswIndexConfig(
            m=params.hnsw_config.m, ef_construct=100, full_scan_threshold=10
        )
    assert params.distance == models.Distance.COSINE
    return qdrant_edge.EdgeVectorParams(params.size, qdrant_edge.Distance.Cosine, hnsw_config=hnsw)


def _edge_config(config: dict[str, Any]) -> Any:
    vectors = config["vectors_config"]
    edge_vectors = (
        {name: _edge_params(p) for name, p in vectors.items()}
        if isinstance(vectors, dict)
        else _edge_params(vectors)
    )
    quant = None
    if isinstance(config.get("quantization_config"), models.BinaryQuantization):
        quant = qdrant_edge.BinaryQuantizationConfig(always_ram=True)
    return qdrant_edge.EdgeConfig(
        vectors=edge_vectors,
        hnsw_config=qdrant_edge.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10),
        quantization_config=quant,
        optimizers=qdrant_edge.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1),
    )


def _edge_search_params(params: models.SearchParams | None) -> Any:
    quant = None
    if params is not None and params.quantization is not None:
        quant = qdrant_edge.QuantizationSearchParams(
            rescore=params.quantization.rescore, oversampling=params.quantization.oversampling
        )
    return qdrant_edge.SearchParams(hnsw_ef=256, quantization=quant)


def _edge_request(req: models.QueryRequest) -> Any:
    assert isinstance(req.prefetch, models.Prefetch)
    pre = req.prefetch
    prefetch = qdrant_edge.Prefetch(
        limit=pre.limit,
        query=qdrant_edge.Query.Nearest(list(pre.query), using=pre.using),  # type: ignore[arg-type]
        params=_edge_search_params(pre.params),
    )
    return qdrant_edge.QueryRequest(
        limit=req.limit,
        query=qdrant_edge.Query.Nearest(list(req.query), using=req.using),  # type: ignore[arg-type]
        prefetches=[prefetch],
        with_payload=True,
    )


@needs_edge
@pytest.mark.parametrize("binary", [False, True])
def test_edge_runs_two_stage_and_binary_quantization(
    local_provider: EmbeddingProvider, tmp_path: Path, binary: bool
) -> None:
    """The store's collection config and queries, run by the real engine on isotropic vectors.

    (The tiny random test model's vectors all share one direction, so their sign bits are
    nearly identical: binary codes of them cannot rank anything. Real jina-embeddings-v3
    vectors, like these random ones, spread over the sphere.)
    """
    full_dims, small_dims, k, n = 128, 32, 5, 1000
    store = QdrantStore(
        local_provider,
        collection="edge",
        dimensions=full_dims,
        small_dimensions=small_dims,
        binary_quantization=binary,
        prefetch_factor=4,
    )
    rng = np.random.default_rng(7)
    docs = truncate(rng.standard_normal((n, full_dims)), full_dims)
    small = truncate(docs, small_dims)
    config = _edge_config(store.collection_config())
    shard = qdrant_edge.EdgeShard.create(str(tmp_path / "shard"), config)
    points = [
        qdrant_edge.Point(
            str(uuid.UUID(int=i)), {"full": docs[i].tolist(), "small": small[i].tolist()}, {"i": i}
        )
        for i in range(n)
    ]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
    shard.optimize()
    assert shard.info().points_count == n

    queries = truncate(
        docs[:20] + 0.8 * rng.standard_normal((20, full_dims)) / np.sqrt(full_dims), full_dims
    )
    requests = store._requests(queries, truncate(queries, small_dims), k, None)
    recalls, found = [], []
    for j, (q, req) in enumerate(zip(queries, requests, strict=True)):
        got = shard.query(_edge_request(req))
        got_ids = [int(p.payload["i"]) for p in got]
        # Rescoring really ran on the full vectors: scores are exact full-size cosines.
        np.testing.assert_allclose([p.score for p in got], docs[got_ids] @ q, atol=1e-4)
        candidates = np.argsort(-(small @ truncate(q[None], small_dims)[0]), kind="stable")[: 4 * k]
        want = candidates[np.argsort(-(docs[candidates] @ q), kind="stable")][:k]
        recalls.append(len(set(got_ids) & {int(i) for i in want}) / k)
        found.append(got_ids[0] == j)
    if binary:
        # Quantization is really on: without rescoring the engine returns binary-code scores.
        raw = qdrant_edge.QueryRequest(
            limit=k,
            query=qdrant_edge.Query.Nearest(
                truncate(queries[:1], small_dims)[0].tolist(), using="small"
            ),
            params=qdrant_edge.SearchParams(
                hnsw_ef=256, quantization=qdrant_edge.QuantizationSearchParams(rescore=False)
            ),
            with_payload=True,
        )
        got = shard.query(raw)
        exact = small[[int(p.payload["i"]) for p in got]] @ truncate(queries[:1], small_dims)[0]
        assert not np.allclose([p.score for p in got], exact, atol=1e-3)
    # Each query is a noisy copy of document j: the engine must rank it first.
    assert np.mean(found) >= 0.9, found
    if not binary:
        assert np.mean(recalls) >= 0.98, recalls  # HNSW with a large ef: the exact prefetch
    shard.close()


def test_ingestion_streams_in_batches_with_a_progress_bar(
    local_provider: EmbeddingProvider,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Shared by every store (_store.py): embed one batch, upsert it, then the next."""
    client = QdrantClient(":memory:")
    store = QdrantStore(
        local_provider, client=client, collection="b", dimensions=16, progress_bar=True
    )
    events: list[tuple[str, int]] = []
    embed = local_provider.embed

    def spy_embed(texts: Any, **kw: Any) -> Any:
        events.append(("embed", len(texts)))
        return embed(texts, **kw)

    upsert = client.upsert

    def spy_upsert(name: str, points: Any, **kw: Any) -> Any:
        events.append(("upsert", len(points)))
        return upsert(name, points=points, **kw)

    monkeypatch.setattr(local_provider, "embed", spy_embed)
    monkeypatch.setattr(client, "upsert", spy_upsert)
    store.add_texts(TEXTS[:10], batch_size=4)
    assert events == [
        ("embed", 4),
        ("upsert", 4),
        ("embed", 4),
        ("upsert", 4),
        ("embed", 2),
        ("upsert", 2),
    ]
    assert "Indexing" in capsys.readouterr().err

    events.clear()
    docs = ["One. Two. Three.", "Four. Five.", "Six. Seven. Eight."]
    store.add_documents(docs, batch_size=4, late_chunking=False)
    # Whole documents per batch: 3 chunks, then 2 (3 + 2 > 4), then 3.
    assert [n for kind, n in events if kind == "upsert"] == [3, 2, 3]
    with pytest.raises(InputError, match="batch_size"):
        store.add_texts(["x"], batch_size=0)
