"""Our server's bounds under abuse: error bodies, connections, hung-up clients, overload, paths.

Every test talks to a server on 127.0.0.1 and is bounded in clients, bytes and seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jv3_integrations import LocalProvider
from jv3_integrations.core import Embeddings, EmbedRequest
from jv3_integrations.core._types import TaskLike
from tests.conftest import SERVER_API_KEY
from tests.support.server import running_server

MODEL = "jina-embeddings-v3"
AUTH = {"Authorization": f"Bearer {SERVER_API_KEY}"}
ROOT = Path(__file__).resolve().parents[2]
JV3 = [sys.executable, "-m", "jv3_integrations"]


class TallyModel(LocalProvider):
    """The local model, counting passes, embedded texts and token counts; optionally slow."""

    def __init__(self, model: str, *, delay: float = 0.0) -> None:
        super().__init__(model)
        self.delay = delay
        self.passes = 0
        self.texts = 0
        self.counted = 0
        self.lock = threading.Lock()

    def _embed(self, request: EmbedRequest) -> Embeddings:
        with self.lock:
            self.passes += 1
            self.texts += len(request.texts)
        time.sleep(self.delay)
        return super()._embed(request)

    def count_tokens(
        self, texts: Any, *, task: TaskLike = None, late_chunking: bool = False
    ) -> list[int]:
        with self.lock:
            self.counted += 1
        return super().count_tokens(texts, task=task, late_chunking=late_chunking)


@pytest.fixture(scope="module")
def tally(conformance_dir: Path) -> Iterator[TallyModel]:
    model = TallyModel(str(conformance_dir))
    yield model
    model.close()


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(url: str) -> socket.socket:
    return socket.create_connection(_host_port(url))


# -- 1. error amplification: a 422 stays small whatever the request ---------------------------


def test_422_lists_at_most_20_errors_and_cuts_every_echo(tally: TallyModel) -> None:
    # 20,000 unknown fields, each holding a 100-item list: before, every one was listed
    fields = {f"k{i}": list(range(100)) for i in range(20_000)}
    body = json.dumps({"model": MODEL, "input": ["a"], **fields}).encode()
    assert 4 << 20 < len(body) < 16 << 20
    with running_server(tally, api_key=SERVER_API_KEY, max_body_bytes=16 << 20) as url:
        started = time.perf_counter()
        r = httpx.post(url + "/v1/embeddings", content=body, headers=AUTH, timeout=60)
        elapsed = time.perf_counter() - started
        # the loop stayed free: /health answers while such a body is being refused
        assert httpx.get(url + "/health", timeout=5).status_code == 200
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) < 16_000, len(r.content)
    payload = r.json()
    assert len(payload["errors"]) == 20
    assert "20,000 fields" in payload["detail"] and "first 20" in payload["detail"]
    assert all(len(json.dumps(e["input"])) < 260 for e in payload["errors"])
    assert elapsed < 10, elapsed


def test_a_body_of_a_million_bad_items_gets_a_small_answer(tally: TallyModel) -> None:
    body = b'{"model":"jina-embeddings-v3","input":[' + b"0," * 1_000_000 + b"0]}"
    with running_server(tally, api_key=SERVER_API_KEY, max_body_bytes=16 << 20) as url:
        started = time.perf_counter()
        r = httpx.post(url + "/v1/embeddings", content=body, headers=AUTH, timeout=60)
        elapsed = time.perf_counter() - started
    assert r.status_code in (400, 422), r.text[:300]
    assert len(r.content) < 16_000, len(r.content)
    assert elapsed < 5, elapsed


def test_a_deep_echo_is_cut_not_serialized_whole(tally: TallyModel) -> None:
    # one bad field holding a list nested 500 deep around 100,000 numbers
    deep = "[" * 500 + ",".join(["1"] * 100_000) + "]" * 500
    body = ('{"model":"jina-embeddings-v3","input":["a"],"task":' + deep + "}").encode()
    with running_server(tally, api_key=SERVER_API_KEY) as url:
        r = httpx.post(url + "/v1/embeddings", content=body, headers=AUTH, timeout=30)
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) < 4_000, len(r.content)


# -- 3. connections: idle sockets, drip-feeders, floods ---------------------------------------

FAST_LIMITS: dict[str, Any] = {"head_timeout": 1.0, "timeout_keep_alive": 1, "body_timeout": 1.5}


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (read EOF/reset), or None if it stayed open."""
    sock.settimeout(seconds)
    started = time.perf_counter()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.perf_counter() - started


def test_an_idle_socket_is_closed_after_the_head_timeout(tally: TallyModel) -> None:
    with (
        running_server(tally, **FAST_LIMITS) as url,
        socket.create_connection(_host_port(url)) as sock,
    ):
        took = _closed_within(sock, 6.0)
    assert took is not None and took < 3.0, took


def test_a_client_dripping_its_headers_is_cut_off(tally: TallyModel) -> None:
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with running_server(tally, **FAST_LIMITS) as url, _connect(url) as sock:
        started = time.perf_counter()
        closed = False
        for byte in head:  # one byte every 0.1 s: 13 s for the whole head
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.perf_counter() - started > 6:
                break
        took = time.perf_counter() - started
        if not closed:
            closed = _closed_within(sock, 0.5) is not None
    assert closed and took < 4.0, took


def test_a_client_dripping_its_body_gets_a_408(tally: TallyModel) -> None:
    body = json.dumps({"model": MODEL, "input": ["x" * 200]}).encode()
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with running_server(tally, **FAST_LIMITS) as url, _connect(url) as sock:
        sock.sendall(head)
        started = time.perf_counter()
        answer = b""
        sock.settimeout(0.05)
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer or time.perf_counter() - started > 8:
                break
        took = time.perf_counter() - started
        sock.settimeout(2.0)  # the head and the body of the answer may come in two reads
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"REQUEST_TIMEOUT" in answer
    assert took < 4.0, took


def test_a_flood_of_idle_sockets_does_not_starve_health(tally: TallyModel) -> None:
    # head_timeout long enough to outlast the test: only the connection cap can help
    limits = {"head_timeout": 60.0, "max_connections": 50}
    with running_server(tally, **limits) as url:
        socks = [socket.create_connection(_host_port(url)) for _ in range(150)]
        try:
            started = time.perf_counter()
            r = httpx.get(url + "/health", timeout=5)
            health_s = time.perf_counter() - started
            assert r.status_code == 200, r.text
            time.sleep(0.3)
            closed = sum(_closed_within(s, 0.05) is not None for s in socks)
        finally:
            for s in socks:
                s.close()
    assert health_s < 2.0, health_s
    assert closed >= 100, closed  # the oldest idle ones made room


def test_keep_alive_connections_still_serve_several_requests(tally: TallyModel) -> None:
    with running_server(tally, **FAST_LIMITS) as url, httpx.Client() as client:
        for _ in range(3):
            r = client.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["a"]})
            assert r.status_code == 200
            time.sleep(0.3)  # well inside timeout_keep_alive: the same connection is reused


# -- 4. work for clients that hung up is not computed -----------------------------------------


def test_work_of_clients_that_hung_up_never_reaches_the_model(conformance_dir: Path) -> None:
    slow = TallyModel(str(conformance_dir), delay=0.05)
    items = [f"item number {i}" for i in range(2048)]
    body = json.dumps({"model": MODEL, "input": items}).encode()
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    clients = 6
    options: dict[str, Any] = {"batch_tokens": 512, "max_queue_tokens": 10_000_000}
    try:
        with running_server(slow, **options) as url:

            def send_and_vanish() -> None:
                with socket.create_connection(_host_port(url)) as sock:
                    sock.sendall(head + body)
                    time.sleep(0.5)

            threads = [threading.Thread(target=send_and_vanish) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            started = time.perf_counter()
            r = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["next"]})
            waited = time.perf_counter() - started
            assert r.status_code == 200
        # 6 x 2048 texts were sent; only what was already in the model ran
        assert slow.texts < 2048 + 1, slow.texts
        assert waited < 2.0, waited
    finally:
        slow.close()


# -- 5. overload is answered before any parsing or tokenizing ---------------------------------


def test_a_full_queue_answers_429_fast_without_tokenizing(conformance_dir: Path) -> None:
    slow = TallyModel(str(conformance_dir), delay=4.0)
    limit, crowd = 4, 200
    try:  # max_wait: the 4 holders share one pass of 4 s, the crowd comes meanwhile
        with running_server(slow, max_queue_requests=limit, max_wait=0.3) as url:

            async def run() -> tuple[list[int], int]:
                limits = httpx.Limits(max_connections=crowd + limit)
                async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                    body = {"model": MODEL, "input": ["hold the queue"]}
                    holders = [
                        asyncio.ensure_future(client.post(url + "/v1/embeddings", json=body))
                        for _ in range(limit)
                    ]
                    while slow.passes == 0 or slow.counted < limit:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)  # until the queue is full and the model busy
                    counted_before = slow.counted

                    async def one(i: int) -> int:
                        text = "a much longer text that would take a while to count " * 20
                        r = await client.post(
                            url + "/v1/embeddings", json={"model": MODEL, "input": [text, str(i)]}
                        )
                        return r.status_code

                    answers = await asyncio.gather(*(one(i) for i in range(crowd)))
                    counted = slow.counted - counted_before
                    await asyncio.gather(*holders)
                return list(answers), counted

            statuses, counted = asyncio.run(run())
    finally:
        slow.close()
    # all refused while the holders' pass ran (one finishing would have let a request in),
    # and none of them reached the tokenizer; bench/server_load.py measures the latency
    assert statuses == [429] * crowd
    assert counted == 0


def test_requests_being_tokenized_count_against_the_queue(conformance_dir: Path) -> None:
    # max_queue_requests=2: of 30 simultaneous requests at most 2 are ever tokenized at once
    model = TallyModel(str(conformance_dir))
    active = peak = 0
    lock = threading.Lock()
    original = model.count_tokens

    def counting(texts: Any, **kw: Any) -> list[int]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.05)
            return original(texts, **kw)
        finally:
            with lock:
                active -= 1

    model.count_tokens = counting  # type: ignore[method-assign]
    try:
        with running_server(model, max_queue_requests=2) as url:

            async def run() -> list[int]:
                async with httpx.AsyncClient(timeout=30) as client:
                    rs = await asyncio.gather(
                        *(
                            client.post(
                                url + "/v1/embeddings", json={"model": MODEL, "input": [str(i)]}
                            )
                            for i in range(30)
                        )
                    )
                return [r.status_code for r in rs]

            statuses = asyncio.run(run())
    finally:
        model.close()
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses
    assert peak <= 2, peak


# -- 6. the limits are options of `jv3 serve` --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_jv3_serve_takes_the_limits_as_options(conformance_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "JV3_SERVER_API_KEY": ""}
    cmd = [
        sys.executable,
        "-m",
        "jv3_integrations",
        "serve",
        "--model",
        str(conformance_dir),
        "--port",
        str(port),
        "--max-body-bytes",
        "300",
        "--max-queue-requests",
        "7",
        "--max-queue-tokens",
        "5000",
        "--head-timeout",
        "1",
        "--body-timeout",
        "2",
        "--timeout-keep-alive",
        "1",
        "--max-connections",
        "20",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "jv3 serve did not start"
                time.sleep(0.2)
        small = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["ok"]})
        assert small.status_code == 200
        assert small.headers["X-RateLimit-Remaining-Requests"] == "7"
        assert small.headers["X-RateLimit-Remaining-Tokens"] == "5000"
        big = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["x" * 400]})
        assert big.status_code == 413 and "300 bytes" in big.json()["detail"]
        with socket.create_connection(("127.0.0.1", port)) as sock:
            took = _closed_within(sock, 5.0)
        assert took is not None and took < 3.0, took
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_jv3_serve_refuses_a_nonsense_limit(conformance_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [*JV3, "serve", "--model", str(conformance_dir), "--head-timeout", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "head" in out.stderr and "Traceback" not in out.stderr, out.stderr


# -- 7. no redirect built from the Host header -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/embeddings/"), ("GET", "/v1/models/"), ("GET", "/health/")],
)
def test_trailing_slash_gets_the_json_404_not_a_redirect(
    method: str, path: str, tally: TallyModel
) -> None:
    with running_server(tally, api_key=SERVER_API_KEY) as url:
        r = httpx.request(
            method,
            url + path,
            json={"model": MODEL, "input": ["a"]} if method == "POST" else None,
            headers={**AUTH, "Host": "evil.example"},
            follow_redirects=False,
        )
    assert r.status_code == 404, (r.status_code, r.headers)
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["code"] == "NOT_FOUND"
