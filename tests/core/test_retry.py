"""The retry loop of JinaAPIProvider on its own (core/_retry.py): what is retried, how often,
what is final, and the call deadline. Requests go to httpx.MockTransport (faults injected)."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import numpy as np
import pytest

from jv3_integrations.core._budget import RateBudget
from jv3_integrations.core._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
)
from jv3_integrations.core._retry import HostNotFoundError, Retrier, Sent

URL = "http://127.0.0.1:9/v1/embeddings"


def _retrier(max_retries: int = 3, total_timeout: float | None = None) -> Retrier:
    budget = RateBudget(max_concurrency=2, start_concurrency=2, pause=0.0)
    return Retrier(
        budget=budget,
        base_url="http://127.0.0.1:9",
        timeout=5.0,
        total_timeout=total_timeout,
        max_retries=max_retries,
        backoff_base=0.0,
        backoff_max=0.0,
    )


def _parse(response: httpx.Response) -> Sent:
    if response.status_code != 200:
        raise APIError(f"status {response.status_code}", status=response.status_code)
    return np.ones((1, 2), dtype=np.float32), int(response.json()["tokens"])


def _run(
    retrier: Retrier, handler: httpx.MockTransport, call_deadline: float | None = None
) -> Sent:
    client = httpx.Client(transport=handler)
    return retrier.run(
        tokens=3,
        split=lambda: None,
        post=lambda end: client.post(URL),
        parse=_parse,
        serial_lock=threading.Lock(),
        pause=lambda seconds, abort: None,
        abort=None,
        call_deadline=call_deadline,
    )


def test_a_retryable_status_is_retried_until_answered() -> None:
    answers = iter([503, 502, 200])
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        calls.append(status)
        return httpx.Response(status, json={"tokens": 7})

    vectors, tokens = _run(_retrier(), httpx.MockTransport(handle))
    assert calls == [503, 502, 200]
    assert tokens == 7 and vectors.shape == (1, 2)


def test_retries_stop_at_max_retries_with_the_last_error() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, json={})

    with pytest.raises(APIError) as info:
        _run(_retrier(max_retries=2), httpx.MockTransport(handle))
    assert info.value.status == 503
    assert len(calls) == 3  # the first attempt and two retries


def test_a_bad_answer_is_final() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"tokens": 1})

    def parse(response: httpx.Response) -> Sent:
        raise APIResponseError("unreadable", status=200)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    with pytest.raises(APIResponseError):
        _retrier().run(
            tokens=1,
            split=lambda: None,
            post=lambda end: client.post(URL),
            parse=parse,
            serial_lock=threading.Lock(),
            pause=lambda seconds, abort: None,
            abort=None,
            call_deadline=None,
        )
    assert len(calls) == 1


def test_a_host_that_does_not_resolve_is_final_and_named() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("lookup failed") from socket.gaierror(-2, "Name not known")

    with pytest.raises(HostNotFoundError, match="does not resolve") as info:
        _run(_retrier(), httpx.MockTransport(handle))
    assert isinstance(info.value, APIConnectionError)
    assert len(calls) == 1


def test_a_spent_call_deadline_stops_before_sending() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"tokens": 1})

    with pytest.raises(APITimeoutError, match="total_timeout"):
        _run(_retrier(total_timeout=1.0), httpx.MockTransport(handle), call_deadline=0.0)
    assert calls == []


def test_the_async_loop_retries_the_same_way() -> None:
    answers = iter([500, 200])

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={"tokens": 4})

    async def main() -> Sent:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handle))

        async def split() -> Sent | None:
            return None

        async def post(end: float) -> httpx.Response:
            return await client.post(URL)

        async def sleep(seconds: float) -> None:
            return None

        try:
            return await _retrier().arun(
                tokens=3,
                split=split,
                post=post,
                parse=_parse,
                serial_lock=asyncio.Lock(),
                sleep=sleep,
                call_deadline=None,
            )
        finally:
            await client.aclose()

    _, tokens = asyncio.run(main())
    assert tokens == 4
