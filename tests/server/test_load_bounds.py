"""Under load: admitted work ends within a bounded time, 429s and /health stay fast (issue 26.6).

``bench/server_load.py`` measures the same at 1,000 clients; these tests keep to a few hundred
loopback connections and a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jv3_integrations import LocalProvider
from jv3_integrations.core import Embeddings, EmbedRequest
from tests.support.server import running_server

MODEL = "jina-embeddings-v3"

pytestmark = pytest.mark.network


class SlowModel(LocalProvider):
    """The local model, ``delay`` seconds per forward pass, counting the texts it embeds."""

    def __init__(self, model: str, *, delay: float) -> None:
        super().__init__(model)
        self.delay = delay
        self.texts = 0
        self.lock = threading.Lock()

    def _embed(self, request: EmbedRequest) -> Embeddings:
        with self.lock:
            self.texts += len(request.texts)
        time.sleep(self.delay)
        return super()._embed(request)


@pytest.fixture
def slow(conformance_dir: Path) -> Iterator[SlowModel]:
    model = SlowModel(str(conformance_dir), delay=3.0)
    yield model
    model.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _ask(port: int, request: bytes) -> tuple[int, float, float | None]:
    """One request on a fresh connection: (status, client seconds, server ms)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        took = time.perf_counter() - started
    finally:
        writer.close()
    status = int(head.split(b" ", 2)[1])
    server_ms = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"server-timing:"):
            server_ms = float(line.split(b"dur=")[1])
    return status, took, server_ms


def _post(port: int, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def test_default_request_timeout_is_60_seconds() -> None:
    from jv3_integrations.server._app import DEFAULT_REQUEST_TIMEOUT

    assert DEFAULT_REQUEST_TIMEOUT == 60.0


def test_admitted_work_is_answered_within_the_request_timeout(slow: SlowModel) -> None:
    # one pass takes 3 s; the second request waits behind it: both end within ~1.5 s
    with running_server(slow, request_timeout=1.0, max_wait=0.0) as url:

        async def run() -> list[tuple[int, float, float | None]]:
            port = _port(url)
            return list(
                await asyncio.gather(
                    *(
                        _ask(port, _post(port, {"model": MODEL, "input": [f"t{i}"]}))
                        for i in range(2)
                    )
                )
            )

        started = time.perf_counter()
        answers = asyncio.run(run())
        took = time.perf_counter() - started
        r = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["x"]}, timeout=30)
    assert [a[0] for a in answers] == [503, 503], answers
    assert took < 2.5, took
    # the server is fine afterwards, and the answer says what happened and when to retry
    assert r.status_code in (200, 503)
    with running_server(slow, request_timeout=1.0) as url:
        r = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["y"]}, timeout=30)
    assert r.status_code == 503
    assert r.json()["code"] == "SERVICE_OVERLOADED" and "1 s" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) >= 1


def test_a_full_queue_answers_429s_and_health_fast(slow: SlowModel) -> None:
    """200 clients at once while the model is busy: 429s and /health answered in milliseconds."""
    with running_server(slow, max_queue_requests=2, max_wait=0.0) as url:
        port = _port(url)

        async def run() -> tuple[list[tuple[int, float, float | None]], list[Any]]:
            hold = _post(port, {"model": MODEL, "input": ["hold the queue"]})
            holders = [asyncio.ensure_future(_ask(port, hold)) for _ in range(2)]
            while slow.texts == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the model is busy for 3 s, the queue is full
            crowd = [
                _ask(port, _post(port, {"model": MODEL, "input": [f"crowd {i}"]}))
                for i in range(200)
            ]
            probes = [_ask(port, HEALTH) for _ in range(20)]
            answers = await asyncio.gather(*crowd, *probes)
            await asyncio.gather(*holders)
            return list(answers[:200]), list(answers[200:])

        crowd, health = asyncio.run(run())
    assert {s for s, _, _ in crowd} == {429}
    assert {s for s, _, _ in health} == {200}
    server_429 = [ms for _, _, ms in crowd if ms is not None]
    server_health = [ms for _, _, ms in health if ms is not None]
    assert len(server_429) == 200 and len(server_health) == 20  # every answer is timed
    # server-side: from reading the request to starting the answer (the issue's < 100 ms)
    assert _median(server_429) < 100, sorted(server_429)
    assert _median(server_health) < 100, sorted(server_health)
    # and as the client saw it, on a loaded 2-core machine: well under a second
    assert _median([t for _, t, _ in health]) < 1.0


def _read_answers(sock: Any, n: int) -> list[bytes]:
    """``n`` complete answers from a keep-alive socket (heads with their bodies)."""
    data = b""
    answers: list[bytes] = []
    sock.settimeout(10)
    while len(answers) < n:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(data) >= end + 4 + length:
                answers.append(data[: end + 4 + length])
                data = data[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, answers
        data += chunk
    return answers


def test_quick_answers_and_ordinary_ones_share_a_keep_alive_connection(
    local_provider: LocalProvider,
) -> None:
    import socket

    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with running_server(local_provider, max_queue_requests=1) as url:
        with socket.create_connection(("127.0.0.1", _port(url))) as sock:
            post = _post(_port(url), {"model": MODEL, "input": ["a"]}).replace(
                b"Connection: close\r\n", b""
            )
            for request in (health, post, health, health + health, post, health):
                sock.sendall(request)  # one read may hold two requests: the ordinary way
                answers = _read_answers(sock, request.count(b"HTTP/1.1"))
                for answer in answers:
                    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
                    assert b"server-timing: total;dur=" in answer.lower()
        models = httpx.get(url + "/v1/models", timeout=10)
    assert models.status_code == 200


def test_a_bad_key_gets_the_401_never_a_quick_429(slow: SlowModel) -> None:
    with running_server(slow, api_key="right-key", max_queue_requests=1, max_wait=0.0) as url:
        port = _port(url)

        async def run() -> list[tuple[int, float, float | None]]:
            auth = b"Authorization: Bearer right-key\r\n"
            hold = _post(port, {"model": MODEL, "input": ["hold"]}).replace(
                b"Host: x\r\n", b"Host: x\r\n" + auth
            )
            holder = asyncio.ensure_future(_ask(port, hold))
            while slow.texts == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            request = _post(port, {"model": MODEL, "input": ["b"]})
            wrong = request.replace(b"Host: x\r\n", b"Host: x\r\nAuthorization: Bearer nope\r\n")
            right = request.replace(b"Host: x\r\n", b"Host: x\r\n" + auth)
            answers = [await _ask(port, r) for r in (request, wrong, right)]
            await holder
            return answers

        answers = asyncio.run(run())
    assert [a[0] for a in answers] == [401, 401, 429]


def test_a_burst_on_an_empty_queue_is_refused_from_its_bytes(slow: SlowModel) -> None:
    """300 requests at once on an idle server: the queue takes 4, the rest get quick 429s."""
    with running_server(slow, max_queue_requests=4, max_wait=0.0) as url:
        port = _port(url)

        async def burst() -> list[tuple[int, float, float | None]]:
            request = _post(port, {"model": MODEL, "input": ["burst"]})
            return list(await asyncio.gather(*(_ask(port, request) for _ in range(300))))

        answers = asyncio.run(burst())
        # nothing is left counted as arriving: once the queue drains, requests are served
        after = httpx.post(
            url + "/v1/embeddings", json={"model": MODEL, "input": ["z"]}, timeout=30
        )
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 429} and statuses.count(200) <= 4, statuses
    quick = [ms for s, _, ms in answers if s == 429 and ms is not None and ms < 5]
    assert len(quick) >= 0.8 * statuses.count(429), sorted(ms for _, _, ms in answers if ms)
    assert after.status_code == 200, after.text


def test_a_refusal_reports_the_room_it_was_refused_on(conformance_dir: Path) -> None:
    """429's X-RateLimit-Remaining-* say what the refusal saw, requests on their way included.

    The quick answerer counts requests it has let through but the app has not yet admitted;
    a refusal on that count must not report a free place (CI once saw '1' on a 429).
    """
    from jv3_integrations.server._batcher import DynamicBatcher, QueueFull

    batcher = DynamicBatcher(LocalProvider(str(conformance_dir)), max_queue_requests=2)
    batcher.admit(10)
    with pytest.raises(QueueFull) as refused:
        batcher.check_room(5, pending=1)
    assert refused.value.remaining_requests == 0
    assert refused.value.remaining_tokens == batcher.remaining_tokens
