"""JinaAPIProvider against our own server (real HTTP on 127.0.0.1, conformance model).

Every request the client sends and every response it gets is validated against the official
OpenAPI schema, and vectors are compared with the local model in-process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations.core import (
    AuthenticationError,
    EmbeddingProvider,
    JinaAPIProvider,
    LocalProvider,
    Task,
    load_provider,
)
from tests.conftest import SERVER_API_KEY
from tests.contracts import TEXTS, ProviderContract
from tests.support.jina_schema import validate


class TestJinaAPIProviderContract(ProviderContract):
    @pytest.fixture
    def provider(self, api_provider: JinaAPIProvider) -> EmbeddingProvider:
        return api_provider


class Recorder:
    """httpx event hooks that validate every embeddings request and response on the wire."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []

    def on_request(self, request: httpx.Request) -> None:
        if request.url.path == "/v1/embeddings":
            body = json.loads(request.content)
            validate("EmbeddingsV3Request", body)
            self.requests.append(body)

    def on_response(self, response: httpx.Response) -> None:
        if response.request.url.path != "/v1/embeddings":
            return
        response.read()
        body = response.json()
        self.statuses.append(response.status_code)
        validate("EmbeddingResponse" if response.status_code == 200 else "ErrorResponse", body)

    async def aon_request(self, request: httpx.Request) -> None:
        self.on_request(request)

    async def aon_response(self, response: httpx.Response) -> None:
        if response.request.url.path != "/v1/embeddings":
            return
        await response.aread()
        self.on_response(response)


@pytest.fixture
def recorded(jina_server_url: str) -> Any:
    rec = Recorder()
    client = httpx.Client(event_hooks={"request": [rec.on_request], "response": [rec.on_response]})
    provider = JinaAPIProvider(
        api_key=SERVER_API_KEY, base_url=jina_server_url, http_client=client, max_batch_items=2
    )
    yield provider, rec
    provider.close()
    client.close()


CALLS: list[dict[str, Any]] = [
    {"task": None},
    {"task": "retrieval.query", "dimensions": 16},
    {"task": "retrieval.passage", "normalized": False},
    {"task": "text-matching", "late_chunking": True},
]
FIVE = [*TEXTS, "A fourth text.", "Ein fünfter Text."]


@pytest.mark.parametrize("wire_format", ["float", "base64"])
def test_all_traffic_matches_the_official_schema(
    recorded: Any, local_provider: LocalProvider, jina_server_url: str, wire_format: str
) -> None:
    provider, rec = recorded
    provider._wire_format = wire_format
    for kwargs in CALLS:
        got = provider.embed(FIVE, **kwargs)
        want = local_provider.embed(FIVE, **kwargs)
        assert np.allclose(got.vectors, want.vectors, atol=1e-5), kwargs
        assert got.usage.total_tokens == want.usage.total_tokens

    async def run_async() -> None:
        hooks = {"request": [rec.aon_request], "response": [rec.aon_response]}
        async with (
            httpx.AsyncClient(event_hooks=hooks) as aclient,
            JinaAPIProvider(
                api_key=SERVER_API_KEY,
                base_url=jina_server_url,
                async_http_client=aclient,
                max_batch_items=2,
                wire_format=wire_format,
            ) as aprovider,
        ):
            for kwargs in CALLS:
                got = await aprovider.aembed(FIVE, **kwargs)
                want = local_provider.embed(FIVE, **kwargs)
                assert np.allclose(got.vectors, want.vectors, atol=1e-5), kwargs

    asyncio.run(run_async())
    assert set(rec.statuses) == {200}
    # 5 texts in batches of 2 -> 3 requests per call, except late chunking: one request
    assert len(rec.requests) == 2 * (3 + 3 + 3 + 1)
    late = [r for r in rec.requests if r.get("late_chunking")]
    assert len(late) == 2 and all(len(r["input"]) == 5 for r in late)
    assert all("encoding_type" not in r for r in rec.requests)
    assert all(r.get("embedding_type", "float") == wire_format for r in rec.requests)


def test_error_responses_are_typed_and_schema_valid(recorded: Any) -> None:
    provider, rec = recorded
    provider._api_key = "wrong-key"
    with pytest.raises(AuthenticationError) as info:
        provider.embed(["x"])
    assert info.value.code == "AUTH_INVALID_API_KEY" and info.value.request_id
    assert rec.statuses == [401]  # never retried


def test_model_size_is_read_from_the_server(jina_server_url: str) -> None:
    provider = load_provider(jina_server_url, api_key=SERVER_API_KEY)
    assert isinstance(provider, JinaAPIProvider)
    assert provider.dimensions == 128
    emb = provider.embed_queries(["Wo ist Berlin?"])
    assert emb.vectors.shape == (1, 128) and emb.task is Task.RETRIEVAL_QUERY
    provider.close()


def test_async_discovers_model_size_without_blocking(jina_server_url: str) -> None:
    async def run() -> tuple[int, int]:
        async with JinaAPIProvider(api_key=SERVER_API_KEY, base_url=jina_server_url) as provider:
            emb = await provider.aembed_documents(TEXTS)
            return emb.dimensions, provider.dimensions

    assert asyncio.run(run()) == (128, 128)


def test_default_request_timeout_is_60_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "Request timeout: 60 s, configurable" (httpx's own default is a silent 5 s)."""
    seen: list[dict[str, Any]] = []

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        body = {
            "model": "jina-embeddings-v3",
            "object": "list",
            "usage": {"total_tokens": 1, "prompt_tokens": 1},
            "data": [{"object": "embedding", "index": 0, "embedding": [1.0] + [0.0] * 1023}],
        }
        return httpx.Response(200, json=body, request=request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    with JinaAPIProvider(api_key="k", base_url="http://127.0.0.1:9") as provider:
        provider.embed(["hello"], task="retrieval.passage")
    # (the client passes what is left of the attempt's 60 s deadline)
    assert seen and seen[-1]["read"] == pytest.approx(60.0, abs=0.5), seen
    with JinaAPIProvider(api_key="k", base_url="http://127.0.0.1:9", timeout=7) as provider:
        provider.embed(["hello"], task="retrieval.passage")
    assert seen[-1]["read"] == pytest.approx(7.0, abs=0.5), seen
