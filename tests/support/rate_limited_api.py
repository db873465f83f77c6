"""A loopback embeddings API with per-key limits, like Jina's, over a short sliding window.

A trimmed test copy of ``bench/api_throughput.py``'s fake: ``tokens`` and ``requests`` per
``window`` seconds (the window is the server's setting: tests use a second, not a minute),
``max_concurrent`` requests in flight, 429 bodies with the official codes and messages
(``"... {current}/{limit} tokens per {window} s"``), ``X-RateLimit-Remaining-*`` headers on
every answer. A text counts ``len(text.split()) + 2`` tokens. Every request is logged.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIMS = 4


def server_tokens(text: str) -> int:
    """What the fake counts for one text."""
    return len(text.split()) + 2


def answer(text: str, dims: int = DIMS) -> list[float]:
    """The unit vector the fake gives ``text`` (its first component marks the text)."""
    a = (sum(text.encode()) % 997) / 997.0
    b = math.sqrt(1.0 - a * a)
    return [a, b] + [0.0] * (dims - 2)


@dataclass
class Entry:
    """One request as the server saw it."""

    arrived: float
    tokens: int
    texts: int
    status: int = 0
    code: str | None = None
    done: float = 0.0


@dataclass
class RateLimitedAPI:
    """The server's limits (mutable while it runs) and its log."""

    tokens: int | None = None
    requests: int | None = None
    window: float = 1.0
    max_concurrent: int | None = None
    latency: float = 0.01
    say_limits: bool = True  # 429 messages name the numbers (Jina's do)
    headers: bool = True  # X-RateLimit-Remaining-* on every answer
    full_dims: int = DIMS  # the size answered when the request names none
    check: Callable[[dict[str, Any]], None] | None = None  # raise AssertionError: 422
    bodies: list[dict[str, Any]] = field(default_factory=list)
    log: list[Entry] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _spent: deque[tuple[float, int]] = field(default_factory=deque)

    def admit(
        self, texts: list[str], dims: int = DIMS
    ) -> tuple[int, dict[str, Any], dict[str, str], Entry]:
        """Decide on one request: ``(status, body, headers, entry)``; counts it if admitted."""
        tokens = sum(server_tokens(t) for t in texts)
        now = time.monotonic()
        entry = Entry(now, tokens, len(texts))
        with self._lock:
            while self._spent and self._spent[0][0] <= now - self.window:
                self._spent.popleft()
            used = sum(n for _, n in self._spent)
            failure: tuple[str, str] | None = None
            if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
                failure = (
                    "RATE_CONCURRENCY_LIMIT_EXCEEDED",
                    f"Concurrency limit exceeded: {self.in_flight + 1}/{self.max_concurrent} "
                    "concurrent requests.",
                )
            elif self.requests is not None and len(self._spent) >= self.requests:
                failure = (
                    "RATE_REQUEST_LIMIT_EXCEEDED",
                    f"Request rate limit exceeded: {len(self._spent) + 1}/{self.requests} "
                    f"requests per {self.window:g} s."
                    if self.say_limits
                    else "Request rate limit exceeded.",
                )
            elif self.tokens is not None and used + tokens > self.tokens:
                failure = (
                    "RATE_TOKEN_LIMIT_EXCEEDED",
                    f"Token rate limit exceeded: {used + tokens:,}/{self.tokens:,} tokens per "
                    f"{self.window:g} s. Reduce batch sizes or upgrade your plan."
                    if self.say_limits
                    else "Token rate limit exceeded.",
                )
            headers: dict[str, str] = {}
            if self.headers and self.tokens is not None:
                left = self.tokens - used - (0 if failure else tokens)
                headers["X-RateLimit-Remaining-Tokens"] = str(max(0, left))
            if self.headers and self.requests is not None:
                left = self.requests - len(self._spent) - (0 if failure else 1)
                headers["X-RateLimit-Remaining-Requests"] = str(max(0, left))
            self.log.append(entry)
            if failure is not None:
                entry.status, entry.code, entry.done = 429, failure[0], now
                body = {"detail": failure[1], "code": failure[0], "request_id": "r"}
                return 429, body, headers, entry
            self._spent.append((now, tokens))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        time.sleep(self.latency)
        with self._lock:
            self.in_flight -= 1
            entry.status, entry.done = 200, time.monotonic()
        data = [
            {"object": "embedding", "index": i, "embedding": answer(t, dims)}
            for i, t in enumerate(texts)
        ]
        body = {
            "model": "jina-embeddings-v3",
            "object": "list",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "data": data,
        }
        return 200, body, headers, entry

    def accepted(self) -> list[Entry]:
        """The requests that were answered 200."""
        return [e for e in self.log if e.status == 200]

    def refused(self, code: str | None = None) -> list[Entry]:
        """The requests that were answered 429 (with ``code``, if given)."""
        return [e for e in self.log if e.status == 429 and (code is None or e.code == code)]


@contextmanager
def rate_limited_api(api: RateLimitedAPI) -> Iterator[str]:
    """Serve ``api`` on a free loopback port; yield its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:  # no GET /v1/models, like Jina's API: the model's full size
            raw = b'{"detail": "Not Found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            request = json.loads(self.rfile.read(length))
            api.bodies.append(request)
            try:
                if api.check is not None:
                    api.check(request)
            except AssertionError as exc:
                status, body, headers = 422, {"detail": str(exc), "code": "INVALID"}, {}
            else:
                dims = request.get("dimensions") or api.full_dims
                status, body, headers, _ = api.admit(request["input"], dims)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
