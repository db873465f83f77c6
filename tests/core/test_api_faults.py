"""JinaAPIProvider under injected faults (httpx.MockTransport): retries, typed errors, limits.

Every fault ends in the correct vectors or the right typed error; none ends in a silent loss.
Backoff is tiny so the whole file runs in about a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations.core import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InputError,
    InsufficientBalanceError,
    JinaAPIProvider,
    RateLimitError,
    ServerError,
    load_provider,
)
from tests.support.jina_schema import validate

DIMS = 4
KEY = "jina_canary_4f9a2b7c1d"
URL = "http://jina.test"


def expected(text: str, dims: int = DIMS) -> list[float]:
    """The unit vector our fake server gives ``text`` (so tests know the right answer)."""
    raw = [float(len(text)), float(sum(map(ord, text)) % 997), 1.0, -1.0][:dims]
    norm = sum(x * x for x in raw) ** 0.5
    return [float(np.float32(x / norm)) for x in raw]


def ok(request: httpx.Request, *, reverse: bool = False) -> httpx.Response:
    body = json.loads(request.content)
    validate("EmbeddingsV3Request", body)
    texts = body["input"]
    dims = body.get("dimensions", DIMS)
    data = [
        {"object": "embedding", "index": i, "embedding": expected(t, dims)}
        for i, t in enumerate(texts)
    ]
    if reverse:
        data.reverse()
    payload = {
        "model": "jina-embeddings-v3",
        "object": "list",
        "usage": {"total_tokens": 10 * len(texts), "prompt_tokens": 10 * len(texts)},
        "data": data,
    }
    validate("EmbeddingResponse", payload)
    return httpx.Response(200, json=payload, headers={"X-Request-Id": "ok-1"})


def err(status: int, code: str | None = None, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"detail": f"fault {status}", "request_id": f"rid-{status}"}
    if code:
        body["code"] = code
    return httpx.Response(status, json=body, headers=headers)


HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)

Fault = Callable[[httpx.Request], httpx.Response]


def _raise(exc: type[httpx.TransportError], message: str) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        raise exc(message, request=request)

    return fault


FAULTS: dict[str, Fault] = {
    "429": lambda r: err(429, "RATE_REQUEST_LIMIT_EXCEEDED"),
    "429-retry-after": lambda r: err(429, "RATE_TOKEN_LIMIT_EXCEEDED", **{"Retry-After": "0"}),
    "500": lambda r: err(500, "INTERNAL_ERROR"),
    "502-html": lambda r: httpx.Response(
        502, content=HTML_502, headers={"Content-Type": "text/html"}
    ),
    "503": lambda r: err(503, "SERVICE_UNAVAILABLE"),
    "504": lambda r: err(504, "SERVICE_TIMEOUT"),
    "read-timeout": _raise(httpx.ReadTimeout, "timed out"),
    "connection-reset": _raise(httpx.ReadError, "[Errno 104] Connection reset by peer"),
    "connect-refused": _raise(httpx.ConnectError, "[Errno 111] Connection refused"),
    "server-disconnected": _raise(httpx.RemoteProtocolError, "Server disconnected"),
}


class Script:
    """A transport handler answering from a script of faults, then ``ok`` forever."""

    def __init__(self, *steps: Fault, then: Fault | None = None) -> None:
        self.steps = list(steps)
        self.then = then or ok
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            step = self.steps.pop(0) if self.steps else self.then
        return step(request)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def make(handler: Any, *, api_key: str | None = KEY, **kwargs: Any) -> JinaAPIProvider:
    options: dict[str, Any] = {
        "base_url": URL,
        "max_dimensions": DIMS,
        "backoff_base": 0.001,
        "backoff_max": 0.005,
        "rate_limit_pause": 0.01,
        "http_client": httpx.Client(transport=httpx.MockTransport(handler)),
        "async_http_client": httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    }
    options.update(kwargs)
    return JinaAPIProvider(api_key=api_key, **options)


TEXTS = ["alpha", "beta gamma", "δέλτα", "東京"]


def check(vectors: np.ndarray, texts: list[str]) -> None:
    assert vectors.tolist() == [expected(t) for t in texts]


# -- retried faults end in the right result -----------------------------------------------


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retryable_fault_then_success(fault: str, mode: str) -> None:
    script = Script(FAULTS[fault], FAULTS[fault])
    provider = make(script)
    if mode == "sync":
        emb = provider.embed(TEXTS, task="retrieval.passage")
    else:
        emb = asyncio.run(provider.aembed(TEXTS, task="retrieval.passage"))
    check(emb.vectors, TEXTS)
    assert len(script.requests) == 3
    assert emb.usage.total_tokens == 10 * len(TEXTS)


@pytest.mark.parametrize(
    ("fault", "cls", "status", "code"),
    [
        ("429", RateLimitError, 429, "RATE_REQUEST_LIMIT_EXCEEDED"),
        ("503", ServerError, 503, "SERVICE_UNAVAILABLE"),
        ("502-html", ServerError, 502, None),
        ("read-timeout", APITimeoutError, None, None),
        ("connection-reset", APIConnectionError, None, None),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gives_up_after_max_retries_with_typed_error(
    fault: str, cls: type, status: int | None, code: str | None, mode: str
) -> None:
    script = Script(then=FAULTS[fault])
    provider = make(script, max_retries=2)
    with pytest.raises(cls) as info:
        if mode == "sync":
            provider.embed(TEXTS)
        else:
            asyncio.run(provider.aembed(TEXTS))
    assert len(script.requests) == 3
    error = info.value
    assert error.status == status and error.code == code
    if status is not None and fault != "502-html":
        assert error.request_id == f"rid-{status}"
        assert f"fault {status}" in error.detail
    if fault == "502-html":
        assert "502 Bad Gateway" in str(error)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientBalanceError),
        (403, InsufficientBalanceError),
        (422, BadRequestError),
    ],
)
def test_client_errors_are_never_retried(status: int, cls: type) -> None:
    script = Script(then=lambda r: err(status, "SOME_CODE"))
    with pytest.raises(cls) as info:
        make(script).embed(TEXTS)
    assert len(script.requests) == 1
    assert info.value.status == status and info.value.code == "SOME_CODE"
    assert info.value.request_id == f"rid-{status}"


def test_malformed_json_is_an_error_not_a_loss() -> None:
    script = Script(then=lambda r: httpx.Response(200, content=b'{"data": [{"index": 0,'))
    with pytest.raises(APIResponseError, match="not JSON"):
        make(script).embed(TEXTS)


def test_out_of_order_indexes_are_put_back_in_order() -> None:
    emb = make(Script(then=lambda r: ok(r, reverse=True))).embed(TEXTS)
    check(emb.vectors, TEXTS)


def test_wrong_item_count_is_refused() -> None:
    def short(request: httpx.Request) -> httpx.Response:
        response = ok(request)
        payload = json.loads(response.content)
        payload["data"] = payload["data"][:-1]
        return httpx.Response(200, json=payload)

    with pytest.raises(APIResponseError, match="3 embeddings for 4 inputs"):
        make(Script(then=short)).embed(TEXTS)


# -- rate-limit signals -------------------------------------------------------------------


class Sleeps(list[float]):
    """Records the provider's sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_retry_after_is_honoured() -> None:
    script = Script(lambda r: err(429, "RATE_REQUEST_LIMIT_EXCEEDED", **{"Retry-After": "7"}))
    provider = make(script)
    provider._sleep = sleeps = Sleeps()
    check(provider.embed(TEXTS).vectors, TEXTS)
    assert len(sleeps) == 1 and 6.5 <= sleeps[0] <= 7.0


def test_exhausted_budget_header_pauses_the_next_request() -> None:
    def empty_budget(request: httpx.Request) -> httpx.Response:
        response = ok(request)
        response.headers["X-RateLimit-Remaining-Requests"] = "0"
        return response

    script = Script(empty_budget)
    provider = make(script, rate_limit_pause=3.0)
    provider._sleep = sleeps = Sleeps()
    provider.embed(TEXTS[:1])
    assert sleeps == []
    provider.embed(TEXTS[1:2])
    assert len(sleeps) == 1 and 2.5 <= sleeps[0] <= 3.0
    assert len(script.requests) == 2


def test_429_without_retry_after_backs_off_exponentially() -> None:
    script = Script(*[lambda r: err(429, "RATE_CONCURRENCY_LIMIT_EXCEEDED")] * 4)
    provider = make(script, backoff_base=1.0, backoff_max=100.0)
    provider._sleep = sleeps = Sleeps()
    provider.embed(TEXTS)
    assert len(sleeps) == 4
    for attempt, slept in enumerate(sleeps):
        assert 0.5 * 2**attempt - 0.1 <= slept <= 2**attempt


# -- batching and concurrency ---------------------------------------------------------------


def test_batches_by_items_in_order_and_sums_usage() -> None:
    texts = [f"text number {i}" for i in range(5000)]
    script = Script()
    emb = make(script).embed(texts)
    sizes = [len(b["input"]) for b in script.bodies()]
    assert sum(sizes) == 5000 and max(sizes) <= 2048 and len(sizes) >= 3
    check(emb.vectors, texts)
    assert emb.usage.total_tokens == 10 * 5000


def test_batches_by_token_budget() -> None:
    provider = make(Script(), max_batch_tokens=60)
    texts = ["word " * 10] * 40
    script = Script()
    provider = make(script, max_batch_tokens=60)
    provider.embed(texts)
    per_text = provider.estimate_tokens(texts[0])
    for body in script.bodies():
        assert sum(provider.estimate_tokens(t) for t in body["input"]) <= max(60, per_text)
    assert len(script.requests) >= 40 * per_text // 60


def _tracking(delay: float) -> tuple[Script, list[int]]:
    state = {"now": 0}
    peak = [0]
    lock = threading.Lock()

    def slow(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            peak[0] = max(peak[0], state["now"])
        time.sleep(delay)
        with lock:
            state["now"] -= 1
        return ok(request)

    return Script(then=slow), peak


def test_sync_concurrency_is_bounded_and_used() -> None:
    script, peak = _tracking(0.02)
    emb = make(script, max_batch_items=1, max_concurrency=3).embed([f"t{i}" for i in range(15)])
    check(emb.vectors, [f"t{i}" for i in range(15)])
    assert len(script.requests) == 15
    assert peak[0] == 3


def test_async_concurrency_is_bounded_by_a_semaphore() -> None:
    now = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.01)
        now -= 1
        return ok(request)

    provider = make(
        None,
        max_batch_items=1,
        max_concurrency=2,
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)),
    )
    texts = [f"t{i}" for i in range(12)]

    async def run() -> Any:
        # two calls at once still share the provider's bound
        return await asyncio.gather(provider.aembed(texts), provider.aembed(texts[:4]))

    a, b = asyncio.run(run())
    check(a.vectors, texts)
    check(b.vectors, texts[:4])
    assert peak == 2


# -- late chunking ---------------------------------------------------------------------------


def test_late_chunking_sends_one_document_in_one_request() -> None:
    script = Script()
    chunks = [f"Sentence {i} of the document." for i in range(300)]
    emb = make(script, max_batch_items=10, max_batch_tokens=100).embed(
        chunks, late_chunking=True, task="retrieval.passage"
    )
    assert len(script.requests) == 1
    body = script.bodies()[0]
    assert body["input"] == chunks and body["late_chunking"] is True
    check(emb.vectors, chunks)


def test_late_chunking_too_long_is_refused_before_any_request() -> None:
    script = Script()
    provider = make(script)
    with pytest.raises(InputError, match="ONE request") as info:
        provider.embed(["word " * 3000, "more words " * 3000], late_chunking=True)
    assert "LocalProvider" in str(info.value)
    with pytest.raises(InputError, match="2048"):
        provider.embed(["x"] * 2049, late_chunking=True)
    assert script.requests == []


# -- the key ----------------------------------------------------------------------------------


def test_missing_key_fails_at_first_call_not_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    script = Script()
    provider = JinaAPIProvider(
        dimensions=DIMS, http_client=httpx.Client(transport=httpx.MockTransport(script))
    )
    assert provider.max_dimensions == 1024  # known without a key or a request
    with pytest.raises(ConfigurationError, match="JINA_API_KEY"):
        provider.embed(["x"])
    assert script.requests == []
    monkeypatch.setenv("JINA_API_KEY", "jina_from_env")
    provider.embed(["x"])
    assert script.requests[0].headers["Authorization"] == "Bearer jina_from_env"
    assert provider.base_url == "https://api.jina.ai"
    assert str(script.requests[0].url) == "https://api.jina.ai/v1/embeddings"


def test_self_hosted_server_may_run_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    script = Script()
    make(script, api_key=None).embed(["x"])
    assert "authorization" not in script.requests[0].headers


def test_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(
        FAULTS["503"],
        then=lambda r: httpx.Response(401, json={"detail": f"key {KEY} rejected"}),
    )
    provider = make(script)
    with pytest.raises(AuthenticationError) as info:
        provider.embed(TEXTS)
    assert script.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    error = info.value
    seen = [repr(provider), str(provider), str(error), repr(error), error.detail, caplog.text]
    seen.append(pickle.dumps(provider).decode("latin-1"))
    for text in seen:
        assert KEY not in text
    assert "***" in repr(provider)


def test_pickled_provider_keeps_config_but_not_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    clone = pickle.loads(pickle.dumps(make(Script(), dimensions=2, wire_format="base64")))
    assert clone.dimensions == 2 and "wire_format='base64'" in repr(clone)
    assert "api_key=None" in repr(clone)


# -- wire details ------------------------------------------------------------------------------


def test_base64_wire_format_and_only_set_fields() -> None:
    def b64(request: httpx.Request) -> httpx.Response:
        from jv3_integrations.core import b64_encode_f32

        body = json.loads(request.content)
        assert body["embedding_type"] == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": b64_encode_f32(expected(t))}
            for i, t in enumerate(body["input"])
        ]
        return httpx.Response(200, json={"model": "m", "usage": {"total_tokens": 1}, "data": data})

    script = Script(then=b64)
    emb = make(script, wire_format="base64").embed(TEXTS)
    check(emb.vectors, TEXTS)
    assert set(script.bodies()[0]) == {"model", "input", "embedding_type"}


def test_dimensions_and_normalized_sent_only_when_set() -> None:
    script = Script()
    provider = make(script)
    provider.embed(["x"])
    provider.embed(["x"], dimensions=2, normalized=False, task="text-matching")
    first, second = script.bodies()
    assert set(first) == {"model", "input"}
    assert second == {
        "model": "jina-embeddings-v3",
        "input": ["x"],
        "task": "text-matching",
        "dimensions": 2,
        "normalized": False,
    }


def test_long_text_asks_the_server_to_truncate() -> None:
    script = Script()
    make(script).embed(["short", "word " * 9000])
    assert script.bodies()[0].get("truncate") is True
    make(script).embed(["short"])
    assert "truncate" not in script.bodies()[1]


def test_close_closes_only_clients_we_created() -> None:
    injected = httpx.Client(transport=httpx.MockTransport(Script()))
    provider = JinaAPIProvider(api_key=KEY, base_url=URL, max_dimensions=DIMS, http_client=injected)
    provider.embed(["x"])
    provider.close()
    assert not injected.is_closed
    own = JinaAPIProvider(api_key=KEY, base_url=URL, max_dimensions=DIMS)
    client = own._clients.get_client()
    own.close()
    assert client.is_closed


def test_bad_configuration_is_refused_without_io() -> None:
    for kwargs in (
        {"max_batch_items": 4096},
        {"max_concurrency": 0},
        {"wire_format": "binary"},
        {"timeout": 0},
        {"base_url": "api.jina.ai"},
        {"dimensions": 2048},
    ):
        with pytest.raises(ConfigurationError):
            JinaAPIProvider(api_key=KEY, **kwargs)  # type: ignore[arg-type]


def test_load_provider_specs() -> None:
    api = load_provider("api", api_key=KEY)
    assert isinstance(api, JinaAPIProvider) and api.base_url == "https://api.jina.ai"
    local = load_provider("http://127.0.0.1:8080/", max_dimensions=DIMS)
    assert isinstance(local, JinaAPIProvider) and local.base_url == "http://127.0.0.1:8080"
    pasted = JinaAPIProvider(base_url="http://h:1/v1/embeddings", max_dimensions=DIMS)
    assert pasted.base_url == "http://h:1"


def test_server_without_models_endpoint_is_asked_once() -> None:
    gets: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            gets.append(request)
            return httpx.Response(404, json={"detail": "Not found"})
        return ok(request)

    provider = JinaAPIProvider(
        api_key=KEY, base_url=URL, http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert provider.dimensions == 1024
    provider.embed(["x"], dimensions=DIMS)
    provider.embed(["y"], dimensions=DIMS)
    assert len(gets) == 1 and gets[0].url.path == "/v1/models"


def test_spent_per_minute_budget_backs_off_longer_than_concurrency() -> None:
    waits = {}
    for code in ("RATE_TOKEN_LIMIT_EXCEEDED", "RATE_CONCURRENCY_LIMIT_EXCEEDED"):
        provider = make(Script(lambda r, c=code: err(429, c)), backoff_base=1.0, backoff_max=30.0)
        provider._sleep = sleeps = Sleeps()
        check(provider.embed(TEXTS).vectors, TEXTS)
        (waits[code],) = sleeps
    # a per-minute budget frees over a minute: wait seconds, not a fraction of one
    assert 5.0 <= waits["RATE_TOKEN_LIMIT_EXCEEDED"] <= 10.0
    assert 0.5 <= waits["RATE_CONCURRENCY_LIMIT_EXCEEDED"] <= 1.0


def test_spent_budget_makes_requests_take_turns() -> None:
    """After a per-minute 429 only one request probes; the others wait instead of failing."""
    lock = threading.Lock()
    state = {"seen": 0, "now": 0, "peak_after": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["seen"] += 1
            first_wave = state["seen"] <= 4
            if not first_wave:
                state["now"] += 1
                state["peak_after"] = max(state["peak_after"], state["now"])
        time.sleep(0.02)
        if first_wave:
            return err(429, "RATE_TOKEN_LIMIT_EXCEEDED")
        with lock:
            state["now"] -= 1
        return ok(request)

    texts = [f"t{i}" for i in range(8)]
    emb = make(Script(then=handler), max_batch_items=1, max_concurrency=4).embed(texts)
    check(emb.vectors, texts)
    assert state["peak_after"] == 1, "requests kept racing for a spent budget"


def test_a_failed_batch_stops_the_others_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["input"] == ["bad"]:
            time.sleep(0.05)  # the others are already waiting out their Retry-After
            return err(400, "INPUT_TOO_LONG")
        return err(503, "SERVICE_UNAVAILABLE", **{"Retry-After": "30"})

    provider = make(Script(then=handler), max_batch_items=1)
    started = time.perf_counter()
    with pytest.raises(BadRequestError):
        provider.embed(["a", "bad", "c"])
    assert time.perf_counter() - started < 5, "the call waited for the other batches' retries"
