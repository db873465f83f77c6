"""Awkward inputs through every public embed path: the local model, the API client against our
server, and one adapter per framework (Haystack, LlamaIndex, LangChain).

Decision for lone surrogates (``"\\ud800"``: not valid Unicode, cannot be UTF-8 encoded): a clear
:class:`InputError` naming the text, on every path, before any model or network call; our server
answers 422 for a JSON-escaped one. Everything else that is a valid ``str`` is embedded: one
vector per text, in order, duplicates included, equal to what the local model gives that text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations import InputError, JinaAPIProvider, LocalProvider
from jv3_integrations.core import BadRequestError

DIMS = 32

EDGE_TEXTS = [
    "   \t\n  ",  # whitespace only
    "👍🏽 family: 👨\u200d👩\u200d👧 flags 🇩🇪🇯🇵",  # emoji, ZWJ sequences, regional indicators
    "مرحبا بالعالم، هذا نص عربي",  # RTL (Arabic)
    "שלום Hello мир 世界 こんにちは नमस्ते",  # mixed scripts incl. RTL Hebrew
    "bell\x07 nul\x00 esc\x1b[31m del\x7f c1\x85 end",  # control characters
    "\u200b\u200c\u200d\ufeff",  # zero-width only
    "e\u0301 vs \u00e9, Å vs A\u030a",  # combining marks
    "x",  # shortest
]
SURROGATES = ["lone high \ud800 here", "lone low \udfff", "\udc80"]  # \udc80: surrogateescape


Embed = Callable[[list[str]], np.ndarray]


@pytest.fixture(scope="module")
def reference(local_provider: LocalProvider) -> Callable[[str], np.ndarray]:
    """The local model's vector for one text on its own (the expected value on every path)."""
    cache: dict[str, np.ndarray] = {}

    def one(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = local_provider.embed_documents([text], dimensions=DIMS).vectors[0]
        return cache[text]

    return one


def _paths(local: LocalProvider, api: JinaAPIProvider) -> dict[str, Embed]:
    from haystack import Document

    from jv3_integrations.haystack import JinaV3DocumentEmbedder
    from jv3_integrations.langchain import JinaV3Embeddings
    from jv3_integrations.llama_index import JinaV3Embedding

    haystack = JinaV3DocumentEmbedder(provider=local, dimensions=DIMS, progress_bar=False)
    llama = JinaV3Embedding(local, dimensions=DIMS)
    langchain = JinaV3Embeddings(local, dimensions=DIMS)

    def run_haystack(texts: list[str]) -> np.ndarray:
        docs = haystack.run(documents=[Document(content=t) for t in texts])["documents"]
        return np.array([d.embedding for d in docs], dtype=np.float32)

    return {
        "local": lambda t: local.embed_documents(t, dimensions=DIMS).vectors,
        "api": lambda t: api.embed_documents(t, dimensions=DIMS).vectors,
        "haystack": run_haystack,
        "llama_index": lambda t: np.array(llama.get_text_embedding_batch(t), dtype=np.float32),
        "langchain": lambda t: np.array(langchain.embed_documents(t), dtype=np.float32),
    }


PATHS = ["local", "api", "haystack", "llama_index", "langchain"]


@pytest.fixture
def embed_path(
    request: pytest.FixtureRequest, local_provider: LocalProvider, api_provider: JinaAPIProvider
) -> Embed:
    return _paths(local_provider, api_provider)[request.param]


@pytest.mark.parametrize("embed_path", PATHS, indirect=True)
def test_edge_texts_each_get_their_own_vector_in_order(
    embed_path: Embed, reference: Callable[[str], np.ndarray]
) -> None:
    # duplicates (same text three times, interleaved) must each get a vector, in input order
    texts = [*EDGE_TEXTS, EDGE_TEXTS[1], EDGE_TEXTS[0], EDGE_TEXTS[1]]
    vectors = embed_path(texts)
    assert vectors.shape == (len(texts), DIMS)
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(vectors[i], reference(text), atol=2e-4, err_msg=repr(text))
    # the edge texts are not all mapped to one vector (the tokenizer did not drop them)
    assert len({tuple(np.round(v, 4)) for v in vectors[: len(EDGE_TEXTS)]}) == len(EDGE_TEXTS)


@pytest.mark.parametrize("embed_path", PATHS, indirect=True)
@pytest.mark.parametrize("bad", SURROGATES)
def test_lone_surrogate_is_a_clear_input_error(
    embed_path: Embed, bad: str, request: pytest.FixtureRequest, local_provider: LocalProvider
) -> None:
    if "haystack" in request.node.name:
        # Haystack's own Document() cannot hold a lone surrogate (it hashes content as UTF-8),
        # so the Haystack path for raw strings is the text embedder.
        from jv3_integrations.haystack import JinaV3TextEmbedder

        embedder = JinaV3TextEmbedder(provider=local_provider, dimensions=DIMS)
        with pytest.raises(InputError, match=r"texts\[0\] has a lone surrogate"):
            embedder.run(text=bad)
        return
    with pytest.raises(InputError, match=r"texts\[1\] has a lone surrogate"):
        embed_path(["fine", bad])


def test_lone_surrogate_never_reaches_the_network() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    provider = JinaAPIProvider(
        api_key="k", base_url="http://jina.test", http_client=client, max_dimensions=8
    )
    with pytest.raises(InputError, match="lone surrogate"):
        provider.embed(["ok", "a\udcffb"])
    assert calls == []


def test_server_answers_422_for_an_escaped_lone_surrogate(jina_server_url: str) -> None:
    from tests.conftest import SERVER_API_KEY

    headers = {"Authorization": f"Bearer {SERVER_API_KEY}", "Content-Type": "application/json"}
    for body in (
        b'{"model":"jina-embeddings-v3","input":["ok","a\\ud800b"]}',
        b'{"model":"jina-embeddings-v3","input":[{"text":"\\udfff"}]}',
        b'{"model":"jina-embeddings-v3","input":["ok"],"task":"\\ud800"}',  # echoed in the error
    ):
        r = httpx.post(jina_server_url + "/v1/embeddings", content=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"], r.text


# -- 100,000-character texts: truncate or a clear error, as configured -----------------------

LONG = " ".join(f"w{i}" for i in range(17_000))  # ~100,000 characters, no repetition


@pytest.fixture(scope="module")
def short_local(conformance_dir: Any) -> Iterator[LocalProvider]:
    provider = LocalProvider(str(conformance_dir), max_length=128)
    yield provider
    provider.close()


def test_local_truncates_long_text_to_max_length_keeping_the_head(
    short_local: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(LONG) >= 100_000
    with caplog.at_level(logging.INFO):
        a = short_local.embed_documents([LONG, LONG + " A different tail."]).vectors
    np.testing.assert_allclose(a[0], a[1], atol=1e-6)  # the tail lies beyond max_length
    head = LONG[:40]  # ~25 tokens, far fewer than max_length
    b = short_local.embed_documents([head]).vectors[0]
    assert not np.allclose(a[0], b, atol=1e-3)  # ... but more than the head was read
    assert LONG not in caplog.text and LONG[:1000] not in caplog.text  # counts, never texts


def test_api_long_text_is_truncated_by_the_server_like_the_local_model(
    short_local: LocalProvider,
) -> None:
    # the server truncates at its model's max_length (128 here, to keep the test fast)
    from tests.support.server import running_server

    with (
        running_server(short_local, api_key="k") as url,
        JinaAPIProvider(api_key="k", base_url=url) as api,
    ):
        got = api.embed_documents([LONG, "short"], dimensions=DIMS).vectors
    want = short_local.embed_documents([LONG, "short"], dimensions=DIMS).vectors
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_api_long_text_without_truncate_is_a_400_naming_the_input(jina_server_url: str) -> None:
    from tests.conftest import SERVER_API_KEY

    provider = JinaAPIProvider(api_key=SERVER_API_KEY, base_url=jina_server_url, truncate=False)
    try:
        with pytest.raises(BadRequestError, match=r"input\[1\] has \d+ tokens") as info:
            provider.embed(["short", LONG])
        assert info.value.status == 400
    finally:
        provider.close()
