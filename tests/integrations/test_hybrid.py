"""Hybrid search (dense + BM25 keyword) on Qdrant local mode, Milvus Lite and the loopback
Pinecone, with the real clients.

The corpus is made of words the tiny test tokenizer knows whole, plus one passage with the
error code ``ERR-4471``: only that passage shares a keyword with the query, while the random
test model cannot find it densely. Expected rankings are computed here: dense from exact numpy
cosines, keyword BM25 from the tokenizer itself (Qdrant) or the store's keyword-only results,
fused with a numpy reciprocal rank fusion.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jv3_integrations import (
    ConfigurationError,
    EmbeddingProvider,
    InputError,
    JinaAPIProvider,
    SentenceChunker,
    TermEncoder,
    embed_chunks_many,
)
from tests.conftest import CONFORMANCE_DIR
from tests.integrations.test_stores_common import name

DIMS = 32
K = 5
FACTOR = 4  # prefetch_factor / funnel_factor: N = K * FACTOR candidates per side
WORDS = [
    "the",
    "river",
    "city",
    "berlin",
    "germany",
    "capital",
    "weather",
    "rabbit",
    "white",
    "model",
    "long",
    "text",
    "vector",
]
RARE = "the model of berlin is not ERR-4471 today"
RARE_AT = 17
QUERIES = ["ERR-4471", "white rabbit in berlin", "long river text", "capital of germany"]


def make_corpus(n: int = 41) -> tuple[list[str], list[dict[str, Any]]]:
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(n)]
    texts[RARE_AT] = RARE
    texts = list(dict.fromkeys(texts))  # distinct passages
    assert texts[RARE_AT] == RARE
    return texts, [{"g": i % 2, "n": i} for i in range(len(texts))]


TEXTS, METAS = make_corpus()


class Counting:
    """Wraps a provider and counts its embedding calls."""

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner, self.calls = inner, 0

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self.inner, attr)
        if not attr.startswith(("embed", "aembed")):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return value(*args, **kwargs)

        return counted


# -- references (numpy, independent of the stores) ------------------------------------------


def dense_ranking(
    provider: EmbeddingProvider, query: str, keep: list[int], small: int | None = None
) -> list[int]:
    """Indices of TEXTS by exact cosine (two-stage: top N on the prefix, rescored in full)."""
    docs = provider.embed_documents(TEXTS, dimensions=DIMS).vectors
    q = provider.embed_queries([query], dimensions=DIMS).vectors[0]

    def cos(d: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (d @ v) / (np.linalg.norm(d, axis=1) * np.linalg.norm(v))

    scores = cos(docs[keep], q)
    order = [keep[i] for i in np.argsort(-scores, kind="stable")]
    if small is None:
        return order
    s = cos(docs[keep][:, :small], q[:small])
    cands = [keep[i] for i in np.argsort(-s, kind="stable")[: K * FACTOR]]
    full = dict(zip(keep, scores, strict=True))
    return sorted(cands, key=lambda i: -full[i])


def rrf(rankings: list[list[str]], const: float) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score = sum of 1 / (const + rank), rank from 0, best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for pos, key in enumerate(ranking):
            scores[key] = scores.get(key, 0.0) + 1.0 / (const + pos)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def assert_matches_reference(hits: Any, expected: list[tuple[str, float]]) -> None:
    """Same scores rank by rank; each hit's text among the reference texts with its score."""
    assert len(hits) == min(K, len(expected))
    got = [h.score for h in hits]
    np.testing.assert_allclose(got, [s for _, s in expected[: len(hits)]], rtol=1e-5)
    for rank, hit in enumerate(hits):
        tied = {t for t, s in expected if math.isclose(s, hit.score, rel_tol=1e-5)}
        assert hit.text in tied, f"rank {rank}: {hit.text!r} not among {tied!r}"


def bm25_reference(query: str, keep: list[int]) -> dict[str, float]:
    """BM25 over TEXTS[keep] with the tokenizer directly (k1=1.2, b=0.75, avgdl=256)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(CONFORMANCE_DIR / "tokenizer.json"))

    def terms(text: str) -> list[str]:
        low = text.lower()
        enc = tok.encode(low, add_special_tokens=False)
        out = []
        for piece, (a, b) in zip(enc.tokens, enc.offsets, strict=True):
            if piece == "\u2581":
                continue
            out.append("unk:" + low[a:b].strip("\u2581 ") if piece == "<unk>" else piece)
        return out

    docs = {TEXTS[i]: terms(TEXTS[i]) for i in keep}
    n = len(docs)
    df = Counter(t for ts in docs.values() for t in set(ts))
    k1, b, avgdl = 1.2, 0.75, 256.0
    out = {}
    for text, ts in docs.items():
        tf = Counter(ts)
        norm = k1 * (1 - b + b * len(ts) / avgdl)
        score = sum(
            math.log((n - df[t] + 0.5) / (df[t] + 0.5) + 1) * tf[t] * (k1 + 1) / (tf[t] + norm)
            for t in set(terms(query))
            if t in tf
        )
        if score > 0:
            out[text] = score
    return out


# -- stores ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    from pymilvus import MilvusClient

    uri = str(tmp_path_factory.mktemp("hybrid") / "h.db")
    client = MilvusClient(uri)
    yield client, uri
    client.close()


@pytest.fixture(scope="module")
def pinecone_srv() -> Iterator[Any]:
    from tests.support.pinecone_server import running_pinecone

    with running_pinecone() as srv:
        yield srv
        assert srv.schema_errors == [], "responses broke the Pinecone OpenAPI schemas"


def qdrant_store(provider: Any, **kw: Any) -> Any:
    from qdrant_client import QdrantClient

    from jv3_integrations.qdrant import QdrantStore

    kw.setdefault("client", QdrantClient(":memory:"))
    kw.setdefault("hybrid", True)
    kw.setdefault("collection", name())
    return QdrantStore(provider, dimensions=DIMS, prefetch_factor=FACTOR, exact=True, **kw)


def milvus_store(provider: Any, milvus: tuple[Any, str], **kw: Any) -> Any:
    from jv3_integrations.milvus import MilvusStore

    kw.setdefault("hybrid", True)
    kw.setdefault("collection", name())
    return MilvusStore(
        provider,
        client=milvus[0],
        dimensions=DIMS,
        index_type="FLAT",
        funnel_factor=FACTOR,
        **kw,
    )


def pinecone_store(provider: Any, srv: Any, **kw: Any) -> Any:
    from pinecone import Pinecone

    from jv3_integrations.pinecone import PineconeStore

    kw.setdefault("hybrid", True)
    pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
    return PineconeStore(provider, client=pc, collection=name(), dimensions=DIMS, **kw)


STORES = ["qdrant", "qdrant-two-stage-bq", "milvus", "pinecone"]


@pytest.fixture(scope="module", params=STORES)
def indexed(request: pytest.FixtureRequest, local_provider: EmbeddingProvider) -> Any:
    """The corpus indexed once per store layout."""
    kind = request.param
    if kind == "qdrant":
        store = qdrant_store(local_provider)
    elif kind == "qdrant-two-stage-bq":
        store = qdrant_store(local_provider, small_dimensions=8, binary_quantization=True)
    elif kind == "milvus":
        store = milvus_store(local_provider, request.getfixturevalue("milvus"))
    else:
        store = pinecone_store(local_provider, request.getfixturevalue("pinecone_srv"))
    ids = store.add_texts(TEXTS, METAS)
    return kind, store, ids


# -- the proof ------------------------------------------------------------------------------


def test_rare_token_ranks_first_with_keyword_and_hybrid(indexed: Any) -> None:
    _kind, store, _ = indexed
    assert store.search("ERR-4471", k=K, mode="keyword")[0].text == RARE
    assert store.search("ERR-4471", k=K, mode="hybrid")[0].text == RARE
    assert store.search("ERR-4471", k=K)[0].text == RARE, "hybrid is the default mode"
    dense = [h.text for h in store.search("ERR-4471", k=K, mode="dense")]
    assert dense[0] != RARE, "the random test model was meant to miss it densely"


@pytest.mark.parametrize("flt", [None, {"g": 0}], ids=["all", "filtered"])
def test_fused_ranking_equals_numpy_rrf(
    indexed: Any, local_provider: EmbeddingProvider, flt: Any
) -> None:
    kind, store, _ = indexed
    if kind == "pinecone":
        pytest.skip("Pinecone fuses by weights, not ranks: see the alpha test")
    keep = [i for i in range(len(TEXTS)) if flt is None or METAS[i]["g"] == flt["g"]]
    n = K * FACTOR
    small = 8 if kind == "qdrant-two-stage-bq" else None
    const = 2.0 if kind.startswith("qdrant") else 61.0  # Qdrant's RRF constant; Milvus' k + 1
    for query in QUERIES:
        dense = [TEXTS[i] for i in dense_ranking(local_provider, query, keep, small)[:n]]
        keyword = [h.text for h in store.search(query, k=n, filter=flt, mode="keyword")]
        expected = rrf([dense, keyword], const)
        hits = store.search(query, k=K, filter=flt, mode="hybrid")
        assert_matches_reference(hits, expected)
        assert all(flt is None or h.metadata["g"] == flt["g"] for h in hits)


def test_qdrant_keyword_scores_are_bm25(local_provider: EmbeddingProvider) -> None:
    store = qdrant_store(local_provider)
    store.add_texts(TEXTS, METAS)
    keep = list(range(len(TEXTS)))
    for query in QUERIES:
        ref = bm25_reference(query, keep)
        expected = sorted(ref.items(), key=lambda kv: -kv[1])
        hits = store.search(query, k=K, mode="keyword")
        assert_matches_reference(hits, expected)


def test_pinecone_hybrid_is_the_alpha_weighted_sum(
    local_provider: EmbeddingProvider, pinecone_srv: Any
) -> None:
    store = pinecone_store(local_provider, pinecone_srv, alpha=0.3)
    store.add_texts(TEXTS, METAS)
    keep = list(range(len(TEXTS)))
    docs = local_provider.embed_documents(TEXTS, dimensions=DIMS).vectors
    for query in QUERIES:
        q = local_provider.embed_queries([query], dimensions=DIMS).vectors[0]
        cos = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
        keyword = {h.text: h.score for h in store.search(query, k=len(TEXTS), mode="keyword")}
        fused = {TEXTS[i]: 0.3 * float(cos[i]) + 0.7 * keyword.get(TEXTS[i], 0.0) for i in keep}
        expected = sorted(fused.items(), key=lambda kv: -kv[1])
        assert_matches_reference(store.search(query, k=K, mode="hybrid"), expected)


def test_filters_and_deletes_apply_to_both_sides(indexed: Any) -> None:
    kind, store, ids = indexed
    assert METAS[RARE_AT]["g"] == 1
    for mode in ("keyword", "hybrid"):
        hits = store.search("ERR-4471", k=K, filter={"g": 0}, mode=mode)
        assert RARE not in [h.text for h in hits]
        assert all(h.metadata["g"] == 0 for h in hits)
    # deletes (the passage is added back afterwards: the module's index stays whole)
    if kind == "milvus":
        return  # Milvus: see test_milvus_delete_removes_keyword_side
    before = store.count()
    store.delete([ids[RARE_AT]])
    try:
        assert store.count() == before - 1
        assert RARE not in [h.text for h in store.search("ERR-4471", k=K, mode="keyword")]
        assert RARE not in [h.text for h in store.search("ERR-4471", k=K, mode="hybrid")]
    finally:
        store.add_texts([RARE], [METAS[RARE_AT]])
    assert store.search("ERR-4471", k=K, mode="keyword")[0].text == RARE


def test_milvus_delete_removes_keyword_side(
    local_provider: EmbeddingProvider, milvus: tuple[Any, str]
) -> None:
    store = milvus_store(local_provider, milvus)
    ids = store.add_texts(TEXTS, METAS)
    store.delete([ids[RARE_AT]])
    assert store.count() == len(TEXTS) - 1
    assert RARE not in [h.text for h in store.search("ERR-4471", k=K, mode="keyword")]
    assert RARE not in [h.text for h in store.search("ERR-4471", k=K, mode="hybrid")]


def test_one_embedding_call_per_batch_of_queries(
    local_provider: EmbeddingProvider, milvus: tuple[Any, str]
) -> None:
    counting = Counting(local_provider)
    for store in (qdrant_store(counting), milvus_store(counting, milvus)):
        store.add_texts(TEXTS, METAS)
        counting.calls = 0
        rows = store.search_many(QUERIES, k=K, mode="hybrid")
        assert len(rows) == len(QUERIES) and counting.calls == 1
        counting.calls = 0
        store.search_many(QUERIES, k=K, mode="keyword")
        assert counting.calls == 0, "keyword search needs no embedding"


@pytest.mark.parametrize("kind", ["qdrant", "milvus", "pinecone"])
def test_store_without_hybrid_refuses_keyword_modes(
    kind: str, local_provider: EmbeddingProvider, milvus: Any, pinecone_srv: Any
) -> None:
    counting = Counting(local_provider)
    if kind == "qdrant":
        store = qdrant_store(counting, hybrid=False)
    elif kind == "milvus":
        store = milvus_store(counting, milvus, hybrid=False)
    else:
        store = pinecone_store(counting, pinecone_srv, hybrid=False)
    for mode in ("hybrid", "keyword"):
        with pytest.raises(ConfigurationError, match="without hybrid=True"):
            store.search("ERR-4471", mode=mode)
    with pytest.raises(InputError, match="mode must be one of"):
        store.search("ERR-4471", mode="bm25")
    assert counting.calls == 0, "refused before any embedding call"
    store.add_texts(TEXTS[:3])
    assert len(store.search("river", k=2)) == 2, "dense is the default without hybrid"


def test_layout_mismatch_is_refused_before_any_write(
    local_provider: EmbeddingProvider, milvus: tuple[Any, str]
) -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    plain = qdrant_store(local_provider, client=client, hybrid=False)
    plain.add_texts(TEXTS[:3])
    again = qdrant_store(local_provider, client=client, collection=plain.collection)
    with pytest.raises(ConfigurationError, match="without hybrid=True"):
        again.add_texts(TEXTS[3:6])
    hybrid = qdrant_store(local_provider, client=client)
    hybrid.add_texts(TEXTS[:3])
    dense_only = qdrant_store(
        local_provider, client=client, collection=hybrid.collection, hybrid=False
    )
    with pytest.raises(ConfigurationError, match="open it with hybrid=True"):
        dense_only.add_texts(TEXTS[3:6])
    assert plain.count() == 3 and hybrid.count() == 3

    mplain = milvus_store(local_provider, milvus, hybrid=False)
    mplain.add_texts(TEXTS[:3])
    with pytest.raises(ConfigurationError, match="no BM25 field"):
        milvus_store(local_provider, milvus, collection=mplain.collection).add_texts(TEXTS[3:6])
    assert mplain.count() == 3
    with pytest.raises(ConfigurationError, match="small_dimensions"):
        milvus_store(local_provider, milvus, small_dimensions=8)


def test_late_chunking_one_point_both_representations(
    local_provider: EmbeddingProvider, milvus: tuple[Any, str]
) -> None:
    chunker = SentenceChunker()
    doc = "The river is long. The white rabbit is in berlin. The model is not ERR-4471 today."
    chunks = [c.text for c in chunker.chunk(doc) if c.text]
    assert len(chunks) >= 2 and any("ERR-4471" in c for c in chunks)
    late = embed_chunks_many(local_provider, [chunks], task="retrieval.passage", dimensions=DIMS)
    expected = {c.text: c.vector for c in late[0]}
    store = qdrant_store(local_provider)
    store.add_documents([doc, "The capital of germany is berlin."], ids=["d1", "d2"])
    hit = store.search("ERR-4471", k=1, mode="keyword")[0]
    assert "ERR-4471" in hit.text and hit.metadata["doc_id"] == "d1"
    assert doc[hit.metadata["start"] : hit.metadata["end"]].strip() == hit.text.strip()
    point = store.client.retrieve(store.collection, [hit.id], with_vectors=True)[0]
    vectors: Any = point.vector
    np.testing.assert_allclose(vectors[""], expected[hit.text], atol=1e-5)
    assert TermEncoder(CONFORMANCE_DIR / "tokenizer.json").encode_documents([hit.text])[
        0
    ].indices == list(vectors["bm25"].indices)

    mstore = milvus_store(local_provider, milvus)
    mstore.add_documents([doc, "The capital of germany is berlin."], ids=["d1", "d2"])
    mhit = mstore.search("ERR-4471", k=1, mode="keyword")[0]
    assert mhit.id == hit.id and mhit.text == hit.text
    row = milvus[0].query(mstore.collection, ids=[mhit.id], output_fields=["vector"])[0]
    np.testing.assert_allclose(row["vector"], expected[hit.text], atol=1e-5)


async def test_async_twins_agree_with_sync(
    local_provider: EmbeddingProvider, milvus: tuple[Any, str], pinecone_srv: Any
) -> None:
    from pinecone import AsyncPinecone
    from pymilvus import AsyncMilvusClient
    from qdrant_client import AsyncQdrantClient

    from jv3_integrations.milvus import AsyncMilvusStore
    from jv3_integrations.pinecone import AsyncPineconeStore
    from jv3_integrations.qdrant import AsyncQdrantStore

    sync_q = qdrant_store(local_provider)
    sync_q.add_texts(TEXTS, METAS)
    aq = AsyncQdrantClient(":memory:")
    q = AsyncQdrantStore(
        local_provider, client=aq, dimensions=DIMS, prefetch_factor=FACTOR, hybrid=True
    )
    sync_m = milvus_store(local_provider, milvus)
    sync_m.create()  # Milvus Lite cannot create collections asynchronously
    am = AsyncMilvusClient(milvus[1])
    m = AsyncMilvusStore(
        local_provider,
        client=am,
        collection=sync_m.collection,
        dimensions=DIMS,
        funnel_factor=FACTOR,
        hybrid=True,
    )
    apc = AsyncPinecone(api_key=pinecone_srv.state.api_key, host=pinecone_srv.base_url)
    sync_p = pinecone_store(local_provider, pinecone_srv)
    sync_p.add_texts(TEXTS, METAS)
    p = AsyncPineconeStore(
        local_provider, client=apc, collection=name(), dimensions=DIMS, hybrid=True
    )
    try:
        await asyncio.gather(q.add_texts(TEXTS, METAS), m.add_texts(TEXTS, METAS))
        await p.add_texts(TEXTS, METAS)
        for astore, sstore in ((q, sync_q), (m, sync_m), (p, sync_p)):
            for mode in ("keyword", "hybrid"):
                got = await astore.search_many(QUERIES, k=K, filter={"g": 0}, mode=mode)
                want = sstore.search_many(QUERIES, k=K, filter={"g": 0}, mode=mode)
                assert [len(r) for r in got] == [len(r) for r in want]
                assert [h.score for r in got for h in r] == pytest.approx(
                    [h.score for r in want for h in r], rel=1e-5
                )
            assert (await astore.search("ERR-4471", k=K))[0].text == RARE
    finally:
        await p.aclose()
        await apc.close()
        await aq.close()
        await am.close()


def test_api_provider_needs_a_local_tokenizer_before_any_request(
    api_provider: JinaAPIProvider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    monkeypatch.delenv("JV3_TOKENIZER", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # empty
    counting = Counting(api_provider)
    store = qdrant_store(counting)
    with pytest.raises(ConfigurationError, match="tokenizer_file=PATH"):
        store.add_texts(TEXTS)
    with pytest.raises(ConfigurationError, match="tokenizer_file=PATH"):
        store.search("ERR-4471")
    assert counting.calls == 0 and store.count() == 0

    monkeypatch.setenv("JV3_TOKENIZER", str(CONFORMANCE_DIR / "tokenizer.json"))
    store = qdrant_store(api_provider)
    store.add_texts(TEXTS, METAS)
    assert store.search("ERR-4471", k=K)[0].text == RARE

    # the Hugging Face cache's copy of the model's tokenizer is found without any setting
    monkeypatch.delenv("JV3_TOKENIZER")
    repo = tmp_path / "models--jinaai--jina-embeddings-v3"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc", encoding="utf-8")
    (repo / "snapshots" / "abc").mkdir(parents=True)
    shutil.copy(CONFORMANCE_DIR / "tokenizer.json", repo / "snapshots" / "abc")
    assert api_provider.tokenizer_file() == repo / "snapshots" / "abc" / "tokenizer.json"


@pytest.mark.parametrize("kind", ["qdrant", "milvus", "pinecone"])
def test_different_codes_are_different_terms(
    kind: str, local_provider: EmbeddingProvider, milvus: Any, pinecone_srv: Any
) -> None:
    """Two passages that differ only in their code: each code finds its own passage first
    (the tiny tokenizer knows no digits: unknown pieces must keep their identity)."""
    decoy = RARE.replace("ERR-4471", "ERR-9150")
    if kind == "qdrant":
        store = qdrant_store(local_provider)
    elif kind == "milvus":
        store = milvus_store(local_provider, milvus)
    else:
        store = pinecone_store(local_provider, pinecone_srv)
    store.add_texts([*TEXTS, decoy])
    for code, text in (("ERR-4471", RARE), ("ERR-9150", decoy)):
        hits = store.search(code, k=2, mode="keyword")
        assert hits[0].text == text
        assert len(hits) == 1 or hits[1].score < hits[0].score
