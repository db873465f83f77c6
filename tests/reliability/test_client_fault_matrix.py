"""The API client under a random mix of faults, many callers at once.

A fault transport (``httpx.MockTransport``) plays a Jina-compatible server that knows the right
vector of every text (a hash of the text, computed here) and, for each request, looks up which
fault to play on that attempt: 429, 500, an HTML 502, 503, a timeout, a reset connection, a
reordered answer (not a fault), a refused connection, or a final one (401, 400, 402, 422, a non-JSON 200, a
200 with an item missing, a vector cut short, or an index repeated or out of range). The test knows the plan, so it knows the outcome of every call in advance:
the exact vectors, or one typed error naming what failed. 1,000 calls (sync threads and async
tasks, several batches per call) with a fixed seed, then the same check driven by hypothesis.
Backoff is tiny so it all runs in seconds; tests/core/test_api_faults.py covers each fault alone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jv3_integrations.core import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    JinaAPIProvider,
    RateLimitError,
    ServerError,
)

DIMS = 8
MAX_RETRIES = 3
BATCH_ITEMS = 4
URL = "http://faults.test"

RETRYABLE = {
    "429": RateLimitError,
    "500": ServerError,
    "502html": ServerError,
    "503": ServerError,
    "timeout": APITimeoutError,
    "reset": APIConnectionError,
    "refused": APIConnectionError,
}
FINAL = {
    "401": AuthenticationError,
    "400": BadRequestError,
    "402": InsufficientBalanceError,
    "422": BadRequestError,
    "notjson": APIResponseError,
    "missing_item": APIResponseError,
    "short_vector": APIResponseError,
    "dup_index": APIResponseError,
}
BENIGN = ("ok", "reorder")
STATUS = {"429": 429, "500": 500, "502html": 502, "503": 503, "401": 401, "400": 400}
STATUS |= {"402": 402, "422": 422, "notjson": 200}
SPOILED = ("missing_item", "short_vector", "dup_index")  # a 200 whose data cannot be trusted


def vector(text: str) -> np.ndarray:
    """The right vector of ``text``: eight floats from its SHA-256 (independent of the client)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    raw = (np.frombuffer(digest[:DIMS], dtype=np.uint8).astype(np.float32) - 127.5) / 128.0
    return (raw / np.linalg.norm(raw)).astype(np.float32)  # unit: normalized is the default


def outcome(plan: Sequence[str]) -> type[APIError] | None:
    """What the client must end with for one batch whose attempts meet ``plan`` (None = ok)."""
    for attempt in range(MAX_RETRIES + 1):
        fault = plan[attempt] if attempt < len(plan) else "ok"
        if fault in BENIGN:
            return None
        if fault in FINAL:
            return FINAL[fault]
        if attempt == MAX_RETRIES:
            return RETRYABLE[fault]
    raise AssertionError("unreachable")


@dataclass
class FaultServer:
    """Plays ``plans[first text of the request][attempt]`` for every request it gets.

    Every text has a plan, because which texts head a batch is the client's choice; the
    server records the heads it saw (``attempts``), and a batch keeps its head on retries.
    """

    plans: dict[str, list[str]]
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _fault(self, key: str) -> str:
        with self.lock:
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
        plan = self.plans.get(key, [])
        return plan[attempt] if attempt < len(plan) else "ok"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        texts: list[str] = body["input"]
        fault = self._fault(texts[0])
        if fault == "timeout":
            raise httpx.ReadTimeout("injected read timeout", request=request)
        if fault == "reset":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if fault == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if fault == "502html":
            return httpx.Response(502, content=b"<html><body>502 Bad Gateway</body></html>")
        if fault == "notjson":
            return httpx.Response(200, content=b'{"data": [truncated')
        if fault not in BENIGN and fault not in SPOILED:
            headers = {"Retry-After": "0"} if fault == "429" else {}
            payload = {"detail": f"injected {fault}", "request_id": f"rid-{fault}"}
            return httpx.Response(STATUS[fault], json=payload, headers=headers)
        b64 = body.get("embedding_type") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = vector(text)
            value: object = (
                base64.b64encode(vec.astype("<f4").tobytes()).decode() if b64 else vec.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        if fault == "reorder":
            data.reverse()
        if fault == "missing_item":
            data.pop()
        if fault == "short_vector":
            data[-1]["embedding"] = value[: len(value) // 2]  # type: ignore[index]
        if fault == "dup_index":
            data[-1]["index"] = data[0]["index"] if len(data) > 1 else 5
        usage = {"total_tokens": 3 * len(texts), "prompt_tokens": 3 * len(texts)}
        return httpx.Response(
            200,
            json={"model": "jina-embeddings-v3", "object": "list", "usage": usage, "data": data},
        )


ALL_FAULTS = [*BENIGN, *RETRYABLE, *FINAL]
WEIGHTS = [40, 6] + [6] * len(RETRYABLE) + [1] * len(FINAL)


def make_calls(rng: random.Random, n: int) -> tuple[list[list[str]], dict[str, list[str]]]:
    """``n`` calls of 1..10 unique texts, and a fault plan for every text."""
    calls, plans = [], {}
    for c in range(n):
        texts = [f"call {c} text {j} ✓" for j in range(rng.randint(1, 10))]
        calls.append(texts)
        for text in texts:
            length = rng.choice([0, 0, 1, 1, 2, 3, 4, 5])
            plans[text] = rng.choices(ALL_FAULTS, WEIGHTS, k=length)
    return calls, plans


def check(texts: list[str], server: FaultServer, result: object) -> None:
    """``result`` (vectors or the raised error) is exactly what the plans imply."""
    heads = [t for t in texts if t in server.attempts]  # the batches the client sent
    assert heads and heads[0] == texts[0]
    expected = [outcome(server.plans.get(k, [])) for k in heads]
    failures = {e for e in expected if e is not None}
    if not failures:
        assert isinstance(result, np.ndarray), f"{texts[0]!r}: expected vectors, got {result!r}"
        want = np.stack([vector(t) for t in texts])
        np.testing.assert_array_equal(result, want)
        return
    assert isinstance(result, APIError), f"{texts[0]!r}: expected one of {failures}, got vectors"
    assert type(result) in failures, f"{texts[0]!r}: {type(result).__name__} not in {failures}"
    message = str(result)
    if isinstance(result, APITimeoutError):
        assert "timed out" in message
    elif isinstance(result, APIConnectionError):
        assert "could not reach" in message and URL in message
    elif isinstance(result, APIResponseError):
        assert result.status == 200
    else:
        assert result.status is not None and f"status={result.status}" in message


def provider(server: FaultServer, wire_format: str) -> JinaAPIProvider:
    transport = httpx.MockTransport(server)
    return JinaAPIProvider(
        api_key="fault-key",
        base_url=URL,
        max_dimensions=DIMS,
        max_batch_items=BATCH_ITEMS,
        max_concurrency=4,
        max_retries=MAX_RETRIES,
        backoff_base=0.0002,
        backoff_max=0.001,
        rate_limit_pause=0.001,
        wire_format=wire_format,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )


def run_sync(p: JinaAPIProvider, calls: list[list[str]], threads: int) -> list[object]:
    def one(texts: list[str]) -> object:
        try:
            return p.embed(texts).vectors
        except APIError as exc:
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, calls))


async def run_async(p: JinaAPIProvider, calls: list[list[str]]) -> list[object]:
    async def one(texts: list[str]) -> object:
        try:
            return (await p.aembed(texts)).vectors
        except APIError as exc:
            return exc

    return await asyncio.gather(*(one(t) for t in calls))


def test_thousand_calls_under_random_faults_end_correct_or_with_one_typed_error() -> None:
    rng = random.Random(20261127)
    calls, plans = make_calls(rng, 1000)
    server = FaultServer(plans)
    sync_calls, async_calls = calls[:500], calls[500:]
    p_sync, p_async = provider(server, "float"), provider(server, "base64")
    sync_results = run_sync(p_sync, sync_calls, threads=16)
    async_results = asyncio.run(run_async(p_async, async_calls))
    outcomes: dict[str, int] = {}
    for texts, result in zip(calls, sync_results + async_results, strict=True):
        check(texts, server, result)
        name = "ok" if isinstance(result, np.ndarray) else type(result).__name__
        outcomes[name] = outcomes.get(name, 0) + 1
    # the mix really exercised every branch
    assert outcomes["ok"] > 500
    for cls in {*RETRYABLE.values(), *FINAL.values()}:
        assert outcomes.get(cls.__name__, 0) > 0, (cls.__name__, outcomes)
    # every batch was retried exactly as planned: never more than max_retries + 1 attempts,
    # and a final fault was never retried
    assert len(server.attempts) > len(calls)  # many calls were split into several batches
    for key, attempts in server.attempts.items():
        plan = plans[key]
        assert attempts <= MAX_RETRIES + 1
        first_final = next((i for i, f in enumerate(plan) if f in FINAL), None)
        if first_final is not None and first_final <= MAX_RETRIES:
            assert attempts <= first_final + 1


PLAN = st.lists(st.sampled_from(ALL_FAULTS), max_size=5)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    data=st.data(),
    use_async=st.booleans(),
    wire_format=st.sampled_from(["float", "base64"]),
)
def test_any_fault_plan_ends_correct_or_with_one_typed_error(
    sizes: list[int], data: st.DataObject, use_async: bool, wire_format: str
) -> None:
    calls = [[f"h{c}-{j}" for j in range(n)] for c, n in enumerate(sizes)]
    plans = {text: data.draw(PLAN, label=text) for texts in calls for text in texts}
    server = FaultServer(plans)
    p = provider(server, wire_format)
    if use_async:
        results = asyncio.run(run_async(p, calls))
    else:
        results = run_sync(p, calls, threads=4)
    for texts, result in zip(calls, results, strict=True):
        check(texts, server, result)
