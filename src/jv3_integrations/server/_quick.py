"""The answers that must stay fast under any load: /health and 429s from headers alone.

Two ways in: the outermost ASGI layer of the app (:class:`FastPath`), and, for ``jv3 serve``'s
connections, an answerer that works on the raw bytes of one read (:func:`quick_answerer`),
before the HTTP parser, a task or routing. Both answer ``GET /health`` from a prepared body and
refuse with 429 a ``POST /v1/embeddings`` with the right key that the queue or the body budget
cannot take now (:meth:`QuickRefusals.quick_refusal`); anything else goes the ordinary way.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

from ..core._wire import MODEL_NAME
from ._batcher import QueueFull
from ._request import error_body
from ._state import BODY_BYTES_PER_TOKEN, ServerState

__all__ = ["PASSED", "FastPath", "QuickRefusals", "quick_answerer"]

_HEALTH_BODY = json.dumps({"status": "ok", "model": MODEL_NAME}, separators=(",", ":")).encode()
_JSON_HEADERS = [(b"content-type", b"application/json")]
_REASONS = {200: b"OK", 429: b"Too Many Requests"}
#: What the quick answerer returns for a request it let through and counted as arriving.
PASSED = (b"", False)
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class QuickRefusals(ServerState):
    """The app's refusals decided from a request's headers alone."""

    def quick_refusal(
        self, raw_headers: list[tuple[bytes, bytes]], *, arriving: bool = False
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """A 429 for an authenticated request the queue or the budget cannot take now.

        None: anything else (a bad key, a body over the limit, room to spare) takes the
        ordinary path, which answers it in full. ``arriving``: count the requests let through
        that the app has not taken up yet as queued (a burst read in one loop iteration
        reaches the app only afterwards: without them, all of it would pass).
        """
        authorization = length = None
        for name, value in raw_headers:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        if self.api_key is not None:
            scheme, _, token = (authorization or b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                return None
        size = int(length) if length is not None and length.isdigit() else None
        if size is not None and size > self.max_body_bytes:
            return None
        rid = uuid.uuid4().hex[:16]
        try:
            self.batcher.check_room(
                (size or 0) // BODY_BYTES_PER_TOKEN, pending=self.arriving if arriving else 0
            )
        except QueueFull as exc:
            body = json.dumps(error_body(exc.detail, exc.code, rid)).encode()
            room = (exc.remaining_requests, exc.remaining_tokens)
            return 429, body, self._raw_rate_headers(rid, exc.retry_after, room)
        if size is not None and size > self.budget.free:
            response = self.over_budget(rid, size)
            return 429, bytes(response.body), self._raw_rate_headers(rid, 1)
        return None

    def _raw_rate_headers(
        self, rid: str, retry_after: int, room: tuple[int, int] | None = None
    ) -> list[tuple[bytes, bytes]]:
        requests, tokens = room or (self.batcher.remaining_requests, self.batcher.remaining_tokens)
        return [
            *_JSON_HEADERS,
            (b"x-request-id", rid.encode()),
            (b"retry-after", str(retry_after).encode()),
            (b"x-ratelimit-remaining-requests", str(requests).encode()),
            (b"x-ratelimit-remaining-tokens", str(tokens).encode()),
        ]


class FastPath:
    """The outermost layer of the app: what must stay fast under any load.

    - ``GET /health`` is answered here from a prepared body: no routing, no queue, no thread;
    - a ``POST /v1/embeddings`` with the right key that the queue or the body budget cannot
      take now is answered 429 here, from its headers alone (nothing of its body is read);
    - every answer carries ``Server-Timing: total;dur=<ms>``: the time from the moment the
      server read the request's bytes (stamped by ``jv3 serve``'s connection protocol) until
      its answer starts, so load tests can tell server time from client time.

    Everything else goes to the Starlette app unchanged.
    """

    def __init__(self, app: Any, state: QuickRefusals) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = scope.get("jv3.received") or time.perf_counter()
        if scope.pop("jv3.arriving", False):  # taken up: the queue counts it from here on
            self.state.arriving -= 1

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - received) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"total;dur={ms:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        path, method = scope["path"], scope["method"]
        if path == "/health" and method in ("GET", "HEAD"):
            await _send(timed_send, 200, _HEALTH_BODY, _JSON_HEADERS)
            return
        if path == "/v1/embeddings" and method == "POST":
            refusal = self.state.quick_refusal(scope["headers"])
            if refusal is not None:
                status, body, headers = refusal
                await _send(timed_send, status, body, headers)
                return
        await self.app(scope, receive, timed_send)


def quick_answerer(app: Any) -> Callable[[bytes, float], tuple[bytes, bool] | None] | None:
    """For ``jv3 serve``'s connections: answer the cheapest requests from raw bytes.

    Returns None unless ``app`` is an app of :func:`.build_app`. The answerer takes the bytes
    of one read (on an idle connection) and returns ``(response, close)`` when they hold
    exactly one complete, plain request that is ``GET /health`` or a ``POST /v1/embeddings``
    to refuse with 429 (see :meth:`QuickRefusals.quick_refusal`); anything else (None) goes
    the ordinary way, through the HTTP parser and the app, which answer it in full. Answering
    here costs no task, no routing and no wait behind the other requests of the same loop
    iteration, so these answers stay fast under any load.
    """
    state = getattr(getattr(app, "state", None), "jv3", None)
    if not isinstance(app, Starlette) or not isinstance(state, QuickRefusals):
        return None

    def answer(data: bytes, received: float) -> tuple[bytes, bool] | None:
        parsed = _parse_plain_request(data)
        if parsed is None:
            return None
        method, target, headers, length, close = parsed
        if method == b"GET" and target == b"/health" and length == b"0":
            status, body, extra = 200, _HEALTH_BODY, _JSON_HEADERS
        elif method == b"POST" and target == b"/v1/embeddings":
            refusal = state.quick_refusal(headers, arriving=True)
            if refusal is None:  # it goes on, counted as arriving until the app takes it up
                state.arriving += 1
                return PASSED
            status, body, extra = refusal
        else:
            return None
        return _raw_response(status, body, extra, received, close), close

    def release() -> None:
        """A request counted as arriving never reached the app (the HTTP parser refused it)."""
        state.arriving -= 1

    answer.release = release  # type: ignore[attr-defined]
    return answer


_PlainRequest = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bool]


def _parse_plain_request(data: bytes) -> _PlainRequest | None:
    """``(method, target, headers, content-length, close)`` of one complete, plain request.

    None when ``data`` holds anything else (an incomplete or pipelined request, a repeated
    sensitive header, chunked encoding, ``Expect``): the ordinary way answers those.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[2] != b"HTTP/1.1":
        return None
    headers = _parse_headers(lines[1:])
    if headers is None:
        return None
    seen = dict(headers)
    if b"host" not in seen or b"transfer-encoding" in seen or b"expect" in seen:
        return None
    length = seen.get(b"content-length", b"0")
    if not length.isdigit() or len(data) - end - 4 != int(length):
        return None  # the body is not all here (or more follows): the ordinary way
    close = seen.get(b"connection", b"").lower() == b"close"
    return request_line[0], request_line[1], headers, length, close


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]] | None:
    """Header lines as ``(lowercase name, value)``; None for a malformed or risky repeat."""
    headers: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or not _TOKEN_CHARS.issuperset(name):
            return None
        name = name.lower()
        if name in seen and name in (b"content-length", b"authorization", b"host"):
            return None
        seen.add(name)
        headers.append((name, value.strip(b" \t")))
    return headers


def _raw_response(
    status: int, body: bytes, extra: list[tuple[bytes, bytes]], received: float, close: bool
) -> bytes:
    """The bytes of a complete HTTP/1.1 response, with its Server-Timing since ``received``."""
    ms = (time.perf_counter() - received) * 1000
    out = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
    out += [b"%s: %s" % (k, v) for k, v in extra]
    out.append(b"content-length: %d" % len(body))
    out.append(b"server-timing: total;dur=%.2f" % ms)
    if close:
        out.append(b"connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n" + body


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
