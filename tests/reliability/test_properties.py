"""Property tests across whole paths (hypothesis).

Already covered elsewhere and not repeated here: ``truncate`` keeps unit norm, base64 and
binary/ubinary round trips of the vector math (tests/core/test_vecmath.py); every chunker's
spans tile the text (tests/core/test_chunking.py). Here the same guarantees are checked end to
end: through the local model's length-sorted batching, the API client's request splitting, our
server's encodings, Matryoshka sizes out of real providers, and late-chunked spans.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jv3_integrations import JinaAPIProvider, LocalProvider, embed_chunks
from tests.conftest import SERVER_API_KEY

FAST = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

WORDS = st.sampled_from(["river", "Zug", "bee", "été", "東京", "data", "x", "🙂", "42", "—"])
TEXT = st.lists(WORDS, min_size=1, max_size=30).map(" ".join)


# -- the local model: packing by tokens never reorders or drops ---------------------------------


@pytest.fixture(scope="module")
def tiny_batches(conformance_dir: Path) -> Iterator[LocalProvider]:
    provider = LocalProvider(str(conformance_dir), batch_tokens=24)  # a few short texts a pass
    yield provider
    provider.close()


@settings(FAST, max_examples=12)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=10).flatmap(
        lambda ts: st.lists(st.sampled_from(ts), min_size=len(ts), max_size=len(ts) + 6)
    )
)
def test_local_batching_never_reorders_or_drops(
    tiny_batches: LocalProvider, local_provider: LocalProvider, texts: list[str]
) -> None:
    got = tiny_batches.embed(texts, task="retrieval.passage").vectors
    assert got.shape[0] == len(texts)
    for i, text in enumerate(texts):  # each row is that text's own vector (embedded alone)
        alone = local_provider.embed([text], task="retrieval.passage").vectors[0]
        np.testing.assert_allclose(got[i], alone, atol=2e-5, err_msg=f"row {i}: {text!r}")


# -- the API client: splitting into requests never reorders or drops ----------------------------


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    raw = [(b + 1) / 256.0 for b in digest[:6]]
    norm = sum(x * x for x in raw) ** 0.5
    return [float(np.float32(x / norm)) for x in raw]  # unit: normalized is the default


def _echo_server(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["input"]
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)
    ]
    data.reverse()  # the index, not the position, says which text a vector belongs to
    usage = {"total_tokens": len(texts), "prompt_tokens": len(texts)}
    return httpx.Response(200, json={"model": "jina-embeddings-v3", "data": data, "usage": usage})


@FAST
@given(
    texts=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=60),
    max_items=st.integers(1, 7),
    concurrency=st.integers(1, 4),
    use_async=st.booleans(),
)
def test_api_batching_never_reorders_or_drops(
    texts: list[str], max_items: int, concurrency: int, use_async: bool
) -> None:
    texts = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]  # valid Unicode only
    transport = httpx.MockTransport(_echo_server)
    provider = JinaAPIProvider(
        api_key="k",
        base_url="http://echo.test",
        max_dimensions=6,
        max_batch_items=max_items,
        max_concurrency=concurrency,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )
    if use_async:
        got = asyncio.run(provider.aembed(texts)).vectors
    else:
        got = provider.embed(texts).vectors
    want = np.array([_vector(t) for t in texts], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


# -- Matryoshka sizes out of real providers: the renormalized prefix, unit norm ---------------


@FAST
@given(dims=st.integers(1, 128), texts=st.lists(TEXT, min_size=1, max_size=4))
def test_matryoshka_output_is_the_unit_norm_prefix(
    local_provider: LocalProvider, dims: int, texts: list[str]
) -> None:
    full = local_provider.embed(texts, task="text-matching", normalized=False).vectors
    small = local_provider.embed(texts, task="text-matching", dimensions=dims).vectors
    assert small.shape == (len(texts), dims)
    prefix = full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)
    np.testing.assert_allclose(small, prefix, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)


# -- our server's encodings round-trip to the same vectors --------------------------------------


@settings(FAST, max_examples=12)
@given(dims=st.sampled_from([8, 16, 64, 128]), texts=st.lists(TEXT, min_size=1, max_size=3))
def test_server_encodings_agree(jina_server_url: str, dims: int, texts: list[str]) -> None:
    body = {
        "model": "jina-embeddings-v3",
        "input": texts,
        "dimensions": dims,
        "embedding_type": ["float", "base64", "binary", "ubinary"],
    }
    r = httpx.post(
        jina_server_url + "/v1/embeddings",
        json=body,
        headers={"Authorization": f"Bearer {SERVER_API_KEY}"},
    )
    assert r.status_code == 200, r.text
    for item in r.json()["data"]:
        emb = item["embedding"]
        floats = np.array(emb["float"], dtype=np.float32)
        decoded = np.frombuffer(base64.b64decode(emb["base64"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, floats)  # base64 is exactly the float32 bytes
        bits = np.packbits(floats > 0)  # sign bits, most significant first
        assert emb["ubinary"] == bits.tolist()
        assert emb["binary"] == (bits.astype(np.int16) - 128).tolist()
        assert abs(np.linalg.norm(floats) - 1.0) < 1e-5


# -- late chunking: the embedded chunks' spans tile the document ------------------------------


@FAST
@given(
    sentences=st.lists(TEXT.map(lambda s: s + "."), min_size=1, max_size=8),
    gaps=st.sampled_from([" ", "  ", "\n", " \n\n"]),
)
def test_late_chunked_spans_tile_the_document(
    local_provider: LocalProvider, sentences: list[str], gaps: str
) -> None:
    document = gaps.join(sentences)
    chunks = embed_chunks(local_provider, document, dimensions=16)
    assert chunks
    position = 0
    for chunk in chunks:
        start, end = chunk.span
        assert start == position and end > start, (chunk.span, position)
        assert document[start:end] == chunk.text
        assert chunk.vector.shape == (16,)
        assert abs(float(np.linalg.norm(chunk.vector)) - 1.0) < 1e-5
        position = end
    assert position == len(document)
