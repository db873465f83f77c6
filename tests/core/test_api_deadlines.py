"""Every call of JinaAPIProvider ends within its deadline, however slowly the server talks.

A raw-socket server on 127.0.0.1 answers each request with a status line and then drips its
response *headers* one byte at a time, each byte well inside the per-read timeout: a client
whose timeout is counted per socket read (httpx's default) waits for as long as the server
likes. Issue 26.2: sync and async, embeddings and the ``/v1/models`` probe, ``timeout`` per
attempt and ``total_timeout`` per call (retries included).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from jv3_integrations.core import APITimeoutError, JinaAPIProvider

DRIP_SECONDS = 20.0  # how long the server would drip (the test must never wait for it)
BYTE_EVERY = 0.1  # seconds between two header bytes: far inside any per-read timeout


@contextmanager
def dripping_server() -> Iterator[tuple[str, list[float]]]:
    """Serve on a free loopback port; yield ``(url, request_times)``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    seen: list[float] = []

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request head (and likely its small body)
                seen.append(time.monotonic())
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                end = time.monotonic() + DRIP_SECONDS
                while time.monotonic() < end and not stop.is_set():
                    conn.sendall(b"x")
                    time.sleep(BYTE_EVERY)
            except OSError:
                return  # the client hung up: what a deadline should make it do

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def _provider(url: str, **options: object) -> JinaAPIProvider:
    settings: dict[str, object] = {"base_url": url, "api_key": "k", "backoff_base": 0.01}
    settings.update(options)
    return JinaAPIProvider(**settings)  # type: ignore[arg-type]


def _timed(mode: str, provider: JinaAPIProvider, what: str) -> float:
    start = time.monotonic()
    with pytest.raises(APITimeoutError):
        if what == "probe" and mode == "sync":
            provider.max_dimensions  # noqa: B018  (the property sends GET /v1/models)
        elif mode == "sync":
            provider.embed(["a dripped answer"])
        else:
            asyncio.run(provider.aembed(["a dripped answer"]))
    provider.close()
    return time.monotonic() - start


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("what", ["embed", "probe"])
def test_timeout_bounds_an_attempt_whose_headers_drip(mode: str, what: str) -> None:
    with dripping_server() as (url, seen):
        dims = None if what == "probe" else 4
        elapsed = _timed(mode, _provider(url, timeout=1, max_retries=0, max_dimensions=dims), what)
    assert len(seen) == 1
    assert elapsed < 2.0, f"{mode} {what}: {elapsed:.1f} s for timeout=1"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("what", ["embed", "probe"])
def test_total_timeout_bounds_the_call_with_its_retries(mode: str, what: str) -> None:
    with dripping_server() as (url, seen):
        dims = None if what == "probe" else 4
        provider = _provider(url, timeout=0.7, total_timeout=1.5, max_dimensions=dims)
        elapsed = _timed(mode, provider, what)
    assert len(seen) >= 2  # it did retry (default max_retries), within the call's bound
    assert elapsed < 2.5, f"{mode} {what}: {elapsed:.1f} s for total_timeout=1.5"


def test_an_injected_client_is_bounded_too() -> None:
    with dripping_server() as (url, _):
        client = httpx.Client()
        provider = _provider(url, timeout=1, max_retries=0, max_dimensions=4, http_client=client)
        elapsed = _timed("sync", provider, "embed")
        client.close()
    assert elapsed < 2.0


def test_a_client_behind_an_environment_proxy_is_bounded_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With HTTPS_PROXY set the plain client that honours it is used, bounded all the same."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # ...and loopback bypasses it
    with dripping_server() as (url, _):
        provider = _provider(url, timeout=1, max_retries=0, max_dimensions=4)
        elapsed = _timed("sync", provider, "embed")
    assert elapsed < 2.0
