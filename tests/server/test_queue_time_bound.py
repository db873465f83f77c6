"""The queue holds no more work than the model can finish within the request timeout (26.6).

At 200 heavy clients, requests admitted by the default queue bounds (256 requests, 1,048,576
tokens) waited their whole ``--request-timeout`` and ended as 503s. Once the server has measured
its speed, work it could not finish in time is refused at once with a 429 instead.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jv3_integrations import LocalProvider
from jv3_integrations.core import Embeddings, EmbedRequest
from tests.support.server import running_server

MODEL = "jina-embeddings-v3"
PASS_SECONDS = 0.4
TEXT = "ocean tide"

pytestmark = pytest.mark.network


class SlowModel(LocalProvider):
    """The local model, ``delay`` seconds per forward pass, counting its passes."""

    def __init__(self, model: str, *, delay: float) -> None:
        super().__init__(model)
        self.delay = delay
        self.passes = 0
        self.lock = threading.Lock()

    def _embed(self, request: EmbedRequest) -> Embeddings:
        with self.lock:
            self.passes += 1
        time.sleep(self.delay)
        return super()._embed(request)


@pytest.fixture
def slow(conformance_dir: Path) -> Iterator[SlowModel]:
    model = SlowModel(str(conformance_dir), delay=PASS_SECONDS)
    yield model
    model.close()


def _request(text: str) -> bytes:
    body = json.dumps({"model": MODEL, "input": [text]}).encode()
    return (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body


async def _ask(port: int, request: bytes) -> tuple[int, float, bytes]:
    """One request on its own connection: (status, seconds until answered, whole answer)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), time.perf_counter() - started, answer


def _burst(port: int, n: int) -> list[tuple[int, float, bytes]]:
    async def run() -> list[tuple[int, float, bytes]]:
        return list(await asyncio.gather(*(_ask(port, _request(TEXT)) for _ in range(n))))

    return asyncio.run(run())


def test_work_that_cannot_finish_in_time_is_refused_at_once(slow: SlowModel) -> None:
    # one text per pass (batch_tokens=1), 0.4 s a pass: about 7 passes fit in the 3 s timeout
    with running_server(slow, request_timeout=3.0, max_wait=0.0, batch_tokens=1) as url:
        for _ in range(2):
            warm = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": [TEXT]})
            assert warm.status_code == 200  # the server measures its speed
        answers = _burst(int(url.rsplit(":", 1)[1]), 30)
    statuses = sorted(status for status, _, _ in answers)
    assert 503 not in statuses, statuses  # nothing admitted waits out its timeout
    assert 2 <= statuses.count(200) <= 8, statuses  # what fits in time is served
    refused = [(took, answer) for status, took, answer in answers if status == 429]
    assert len(refused) == 30 - statuses.count(200)
    assert max(took for took, _ in refused) < 1.5, refused  # refused at once, not after 3 s
    head, _, body = refused[0][1].partition(b"\r\n\r\n")
    assert json.loads(body)["code"] == "RATE_CONCURRENCY_LIMIT_EXCEEDED"
    assert b"request timeout" in body
    retry_after = next(
        line for line in head.lower().split(b"\r\n") if line.startswith(b"retry-after:")
    )
    assert int(retry_after.split(b":")[1]) >= 1


def test_before_any_measurement_the_queue_bounds_alone_apply(slow: SlowModel) -> None:
    # no pass measured yet: the burst is admitted as before and what cannot finish gets 503
    with running_server(slow, request_timeout=1.0, max_wait=0.0, batch_tokens=1) as url:
        answers = _burst(int(url.rsplit(":", 1)[1]), 6)
    statuses = sorted(status for status, _, _ in answers)
    assert 429 not in statuses, statuses
    assert statuses.count(503) >= 3, statuses


def test_the_queue_holds_at_most_80_percent_of_the_request_timeout_in_work() -> None:
    from jv3_integrations.server._app import QUEUE_SHARE_OF_TIMEOUT

    assert QUEUE_SHARE_OF_TIMEOUT == 0.8
