"""The ASGI app: Jina's ``/v1/embeddings`` API in front of a local provider.

Same path, same strict validation and error bodies, same encodings as the official API
(``spec/API.md``), so any Jina client works against it unchanged. Requests are authenticated
before the body is read; the body must arrive within ``body_timeout`` (408) and fit
``max_body_bytes`` (413). Its place in the bounded queue is then reserved on an estimate from its
size (429 at once past the bound, before any parsing or tokenizing), the request validated by the
pure request parser (``_request.py``), counted with the model's tokenizer, re-checked against the
queue with the real count and embedded by the dynamic batcher. A client that hangs up meanwhile
has its queued work dropped before it reaches the model.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..core._errors import ConfigurationError
from ..core._provider import BaseProvider
from ..core._types import JINA_EMBEDDINGS_V3
from ..core._vecmath import truncate as matryoshka
from ..core._wire import MODEL_NAME, encode_embedding
from ._batcher import DynamicBatcher, QueueFull, Ticket
from ._count import count_capped
from ._limits import LIMITS, BodyBudget, check_limits
from ._request import EmbeddingsRequest, WireError, error_body, parse_embeddings_request

__all__ = ["build_app", "quick_answerer"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = int(LIMITS["max_body_bytes"].default)
DEFAULT_BODY_BUDGET_BYTES = int(LIMITS["body_budget_bytes"].default)
DEFAULT_BODY_TIMEOUT = LIMITS["body_timeout"].default
DEFAULT_REQUEST_TIMEOUT = LIMITS["request_timeout"].default
# Admission estimate before parsing: one token per this many body bytes. Real text (any script,
# JSON-escaped) has far fewer bytes per token, so the estimate never exceeds the real count.
BODY_BYTES_PER_TOKEN = 16
# Bodies larger than this are parsed off the event loop (json.loads and the item checks of a
# 2,048-item body take milliseconds: the loop must keep answering 429s and /health meanwhile).
_PARSE_OFF_LOOP_BYTES = 8 * 1024

_T = TypeVar("_T")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # "replace": an error body may echo a lone surrogate from the request (not UTF-8 encodable)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    content = text.encode("utf-8", "replace")
    return Response(content, status_code=status, headers=headers, media_type="application/json")


class _Held:
    """What one request took from the body budget; all of it goes back once, at the end."""

    __slots__ = ("budget", "n")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.n = 0

    def take(self, n: int) -> bool:
        if not self.budget.take(n):
            return False
        self.n += n
        return True

    def release(self) -> None:
        self.budget.give(self.n)
        self.n = 0


class _Server:
    """State of one app: the provider, its batcher, the key and the limits."""

    def __init__(
        self,
        provider: BaseProvider,
        *,
        api_key: str | None,
        model_names: Sequence[str],
        batcher: DynamicBatcher,
        max_body_bytes: int,
        body_budget: BodyBudget,
        body_timeout: float,
        request_timeout: float,
        owns_provider: bool,
    ) -> None:
        self.provider = provider
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.model_names = tuple(model_names)
        self.batcher = batcher
        self.max_body_bytes = max_body_bytes
        self.budget = body_budget
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout
        self.cpu: ThreadPoolExecutor | None = None
        self.owns_provider = owns_provider
        self.arriving = 0  # let through by the quick answerer, not yet taken up by the app
        self.max_dimensions = provider.max_dimensions
        self.max_tokens = provider.max_tokens

    # -- helpers ----------------------------------------------------------------------------

    async def off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run CPU-bound Python work (parsing, counting, rendering) on the app's 2 threads.

        Not the default executor's many threads: each of them competes with the event loop
        for the GIL, and under overload the loop must keep answering 429s and /health fast.
        """
        if self.cpu is None:
            self.cpu = ThreadPoolExecutor(2, thread_name_prefix="jv3-cpu")
        return await asyncio.get_running_loop().run_in_executor(self.cpu, fn, *args)

    def rate_headers(self, rid: str) -> dict[str, str]:
        return {
            "X-Request-Id": rid,
            "X-RateLimit-Remaining-Requests": str(self.batcher.remaining_requests),
            "X-RateLimit-Remaining-Tokens": str(self.batcher.remaining_tokens),
        }

    def check_auth(self, request: Request, rid: str) -> Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("authorization")
        if not header:
            return _json(
                error_body(
                    "No API key provided. Send 'Authorization: Bearer <key>'.",
                    "AUTH_MISSING_API_KEY",
                    rid,
                ),
                401,
                {"X-Request-Id": rid, "WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _json(
                error_body(
                    "Invalid Authorization header format. Use 'Bearer <key>'.",
                    "AUTH_INVALID_FORMAT",
                    rid,
                ),
                401,
                {"X-Request-Id": rid, "WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(token.encode("utf-8"), self.api_key):
            return _json(
                error_body("Invalid API key.", "AUTH_INVALID_API_KEY", rid),
                401,
                {"X-Request-Id": rid, "WWW-Authenticate": "Bearer"},
            )
        return None

    async def read_body(self, request: Request, rid: str, held: _Held) -> bytearray | Response:
        """The body, kept only within the server-wide budget (``held`` records what it took).

        A declared body (``Content-Length``) takes its whole size from the budget before a
        byte of it is read; a chunked one takes each chunk before keeping it. Past the body
        limit: 413; past what the budget has left: 429 (at once, for a declared body).
        """
        too_large = _json(
            error_body(
                f"Request body is larger than the limit of {self.max_body_bytes} bytes.",
                "INPUT_PAYLOAD_TOO_LARGE",
                rid,
            ),
            413,
            {"X-Request-Id": rid},
        )
        declared = request.headers.get("content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None:
            if size > self.max_body_bytes:
                return too_large
            if not held.take(size):
                return self.over_budget(rid, size)
            body = bytearray(size)  # filled in place: no growth, no copy
        else:
            body = bytearray()
        got = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.stream():
                    n = len(chunk)
                    if got + n > self.max_body_bytes:
                        return too_large
                    if size is None:
                        if not held.take(n):
                            return self.over_budget(rid, got + n)
                        body += chunk
                    else:
                        body[got : got + n] = chunk
                    got += n
        except ClientDisconnect:  # nobody is left to answer; nothing was queued
            return Response(status_code=400)
        except TimeoutError:  # a client dripping its body holds no connection for long
            return _json(
                error_body(
                    f"The request body did not arrive within {self.body_timeout:g} s.",
                    "REQUEST_TIMEOUT",
                    rid,
                ),
                408,
                {"X-Request-Id": rid, "Connection": "close"},
            )
        if size is not None and got != size:  # h11 enforces Content-Length; never trust it
            del body[got:]
        return body

    def over_budget(self, rid: str, size: int) -> Response:
        budget = self.budget
        return _json(
            error_body(
                f"Too many request bodies are being received: this {size}-byte body does not "
                f"fit the server's memory budget of {budget.total} bytes for bodies "
                f"({budget.used} in use). Retry later or send smaller requests.",
                "RATE_MEMORY_LIMIT_EXCEEDED",
                rid,
            ),
            429,
            {**self.rate_headers(rid), "Retry-After": "1"},
        )

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

    def timed_out(self, rid: str) -> Response:
        logger.warning("request %s: not done within %g s; answered 503", rid, self.request_timeout)
        headers = self.rate_headers(rid)
        headers["Retry-After"] = str(self.batcher.retry_after())
        return _json(
            error_body(
                f"The server could not finish this request within {self.request_timeout:g} s "
                "(overloaded). Retry later, or send fewer or shorter inputs.",
                "SERVICE_OVERLOADED",
                rid,
            ),
            503,
            headers,
        )

    def too_busy(self, exc: QueueFull, rid: str) -> Response:
        headers = self.rate_headers(rid)
        headers["X-RateLimit-Remaining-Requests"] = str(exc.remaining_requests)
        headers["X-RateLimit-Remaining-Tokens"] = str(exc.remaining_tokens)
        headers["Retry-After"] = str(exc.retry_after)
        return _json(error_body(exc.detail, exc.code, rid), 429, headers)

    def parse(self, raw_body: bytes | bytearray, rid: str) -> EmbeddingsRequest:
        """Decode and validate the body (raises WireError)."""
        try:
            payload = json.loads(raw_body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise WireError(
                422,
                {
                    "detail": f"[RID: {rid}] Validation errors in 1 field",
                    "errors": [
                        {
                            "field": "body",
                            "message": f"JSON decode error: {str(exc)[:200]}",
                            "type": "json_invalid",
                            "input": None,
                        }
                    ],
                    "request_id": rid,
                },
            ) from None
        return parse_embeddings_request(
            payload,
            max_dimensions=self.max_dimensions,
            model_names=self.model_names,
            request_id=rid,
        )

    def count(self, texts: list[str], task: Any, late_chunking: bool) -> list[int]:
        """The provider's token counts of a request's texts (its one counter)."""
        return self.provider.count_tokens(texts, task=task, late_chunking=late_chunking).counts

    def check_lengths(
        self,
        req: EmbeddingsRequest,
        counts: list[int],
        rid: str,
        counted: Sequence[str] | None = None,
    ) -> list[int]:
        """Token counts as billed; raises WireError 400 for inputs over the limit.

        ``counted``: the part of each input that was counted (counting stops once past the
        limit), so a count over the limit may be that of a head of the input only.
        """
        limit = self.max_tokens
        counted = req.texts if counted is None else counted
        cut = [len(a) < len(b) for a, b in zip(counted, req.texts, strict=True)]
        at_least = "at least " if any(cut) or 0 in counts else ""
        if req.late_chunking:
            total = sum(counts)
            if total > limit:
                raise WireError(
                    400,
                    error_body(
                        f"late_chunking input has {at_least}{total} tokens in total, more than the "
                        f"maximum of {limit} for one late-chunking request. Send fewer or "
                        "shorter inputs.",
                        "INPUT_TOO_LONG",
                        rid,
                    ),
                )
            return counts
        if not req.truncate:
            for i, c in enumerate(counts):
                if c > limit:
                    raise WireError(
                        400,
                        error_body(
                            f"input[{i}] has {c} tokens"
                            + (f" in its first {len(counted[i])} characters" if cut[i] else "")
                            + ", more than the model's "
                            f'maximum of {limit}. Shorten it or send "truncate": true.',
                            "INPUT_TOO_LONG",
                            rid,
                        ),
                    )
        return [min(c, limit) for c in counts]

    def render(self, req: EmbeddingsRequest, raw: npt.NDArray[np.float32], tokens: int) -> bytes:
        dims = req.dimensions or raw.shape[1]
        vectors = matryoshka(raw, dims, normalize=req.normalized)
        data = []
        for i, vec in enumerate(vectors):
            if req.multi_type:
                value: Any = {t: encode_embedding(vec, t) for t in req.embedding_types}
            else:
                value = encode_embedding(vec, req.embedding_types[0])
            data.append({"object": "embedding", "index": i, "embedding": value})
        body = {
            "model": req.model,
            "object": "list",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "data": data,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # -- endpoints ----------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        rid = uuid.uuid4().hex[:16]
        denied = self.check_auth(request, rid)
        if denied is not None:
            return denied
        declared = request.headers.get("content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size <= self.max_body_bytes:  # a full queue: 429, body unread
            try:
                self.batcher.check_room(size // BODY_BYTES_PER_TOKEN)
            except QueueFull as exc:
                return self.too_busy(exc, rid)
        held = _Held(self.budget)  # the body's bytes, held until the request is answered
        try:
            raw_body = await self.read_body(request, rid, held)
            if isinstance(raw_body, Response):
                return raw_body
            try:  # a place in the queue before any expensive work: overload answered at once
                ticket = self.batcher.admit(len(raw_body) // BODY_BYTES_PER_TOKEN)
            except QueueFull as exc:
                return self.too_busy(exc, rid)
            gone = asyncio.ensure_future(_hung_up(request))
            try:  # admitted work is answered within request_timeout, whatever the load
                async with asyncio.timeout(self.request_timeout):
                    return await self.embed_admitted(raw_body, ticket, gone, rid)
            except TimeoutError:  # its texts not yet computed are dropped (as for a hang-up)
                return self.timed_out(rid)
            finally:
                gone.cancel()
                self.batcher.release(ticket)
        finally:
            held.release()

    async def embed_admitted(
        self, raw_body: bytearray, ticket: Ticket, gone: asyncio.Future[None], rid: str
    ) -> Response:
        try:
            if len(raw_body) > _PARSE_OFF_LOOP_BYTES:
                req = await self.off_loop(self.parse, raw_body, rid)
            else:
                req = self.parse(raw_body, rid)
            raw_body.clear()  # its memory goes back at once (the budget is held until the end)
            # counted in sections, and only as far as the limit (bounded memory per request)
            counted = await self.off_loop(
                count_capped, self.count, req.texts, req.task, req.late_chunking, self.max_tokens
            )
            billed = self.check_lengths(req, counted.counts, rid, counted.texts)
            texts = counted.texts  # an input over the limit: only what truncation keeps
            total = sum(billed)
            if gone.done():
                return _gone(rid)
            self.batcher.readmit(ticket, total)
        except WireError as exc:
            return _json(exc.body, exc.status, {"X-Request-Id": rid})
        except QueueFull as exc:
            return self.too_busy(exc, rid)
        work = asyncio.ensure_future(
            self.batcher.submit(
                texts, billed, task=req.task, late_chunking=req.late_chunking, ticket=ticket
            )
        )
        racing: set[asyncio.Future[Any]] = {work, gone}
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():  # the client hung up (or we are cancelled): drop the work
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled():
            return _gone(rid)
        try:
            raw = work.result()
            content = await self.off_loop(self.render, req, raw, total)
        except Exception:
            logger.exception("request %s failed while embedding %d inputs", rid, len(req.texts))
            return _json(
                error_body("Internal error while computing embeddings.", "INTERNAL_ERROR", rid),
                500,
                {"X-Request-Id": rid},
            )
        return Response(
            content,
            status_code=200,
            headers=self.rate_headers(rid),
            media_type="application/json",
        )

    async def models(self, request: Request) -> Response:
        info = JINA_EMBEDDINGS_V3
        entry = {
            "id": f"jina-ai/{MODEL_NAME}",
            "name": "Jina AI: Jina Embeddings v3 (self-hosted, jv3-integrations)",
            "description": f"{self.provider.model_name} served by jv3-integrations",
            "created": 1725840000,
            "context_length": self.max_tokens,
            "max_output_length": self.max_dimensions,
            "hugging_face_id": info.hub_id,
            "input_modalities": ["text"],
            "output_modalities": ["embeddings"],
            "datacenters": [],
            "quantization": "",
            "supported_features": [],
            "supported_sampling_parameters": [],
            "pricing": {
                "prompt": "0",
                "completion": "0",
                "image": "0",
                "request": "0",
                "input_cache_read": "0",
                "input_cache_write": "0",
            },
        }
        return _json({"object": "list", "data": [entry]})

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok", "model": MODEL_NAME})


_HEALTH_BODY = json.dumps({"status": "ok", "model": MODEL_NAME}, separators=(",", ":")).encode()
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _FastPath:
    """The outermost layer of the app: what must stay fast under any load.

    - ``GET /health`` is answered here from a prepared body: no routing, no queue, no thread;
    - a ``POST /v1/embeddings`` with the right key that the queue or the body budget cannot
      take now is answered 429 here, from its headers alone (nothing of its body is read);
    - every answer carries ``Server-Timing: total;dur=<ms>``: the time from the moment the
      server read the request's bytes (stamped by ``jv3 serve``'s connection protocol) until
      its answer starts, so load tests can tell server time from client time.

    Everything else goes to the Starlette app unchanged.
    """

    def __init__(self, app: Any, state: _Server) -> None:
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


_REASONS = {200: b"OK", 429: b"Too Many Requests"}
#: What the quick answerer returns for a request it let through and counted as arriving.
PASSED = (b"", False)
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def quick_answerer(app: Any) -> Callable[[bytes, float], tuple[bytes, bool] | None] | None:
    """For ``jv3 serve``'s connections: answer the cheapest requests from raw bytes.

    Returns None unless ``app`` is this module's app. The answerer takes the bytes of one
    read (on an idle connection) and returns ``(response, close)`` when they hold exactly one
    complete, plain request that is ``GET /health`` or a ``POST /v1/embeddings`` to refuse
    with 429 (see :meth:`_Server.quick_refusal`); anything else (None) goes the ordinary way,
    through the HTTP parser and the app, which answer it in full. Answering here costs no
    task, no routing and no wait behind the other requests of the same loop iteration, so
    these answers stay fast under any load.
    """
    state = getattr(getattr(app, "state", None), "jv3", None)
    if not isinstance(app, Starlette) or not isinstance(state, _Server):
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


async def _hung_up(request: Request) -> None:
    """Return once the client has disconnected (the body is read: nothing else can arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _gone(rid: str) -> Response:
    logger.info("request %s: the client hung up; its queued work was dropped", rid)
    return Response(status_code=499, headers={"X-Request-Id": rid})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    rid = uuid.uuid4().hex[:16]
    if status == 404:
        detail, code = f"Not found: {request.url.path}", "NOT_FOUND"
    elif status == 405:
        detail, code = (
            f"Method {request.method} not allowed on {request.url.path}",
            ("METHOD_NOT_ALLOWED"),
        )
    elif status >= 500:
        detail, code = "Internal server error.", "INTERNAL_ERROR"
    else:
        detail = exc.detail if isinstance(exc, HTTPException) else "Bad request."
        code = "INVALID_REQUEST"
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    headers["X-Request-Id"] = rid
    return _json(error_body(detail, code, rid), status, headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
    rid = uuid.uuid4().hex[:16]
    return _json(
        error_body("Internal server error.", "INTERNAL_ERROR", rid), 500, {"X-Request-Id": rid}
    )


def build_app(
    provider: BaseProvider,
    *,
    api_key: str | None = None,
    model_names: Sequence[str] | None = None,
    batch_tokens: int = 16_384,
    max_wait: float = 0.002,
    max_queue_requests: int = 256,
    max_queue_tokens: int = 1_048_576,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_budget_bytes: int = DEFAULT_BODY_BUDGET_BYTES,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    owns_provider: bool = False,
) -> Starlette:
    """The Starlette app serving ``provider`` (see :func:`.create_app`)."""
    limits = check_limits(
        {
            "batch_tokens": batch_tokens,
            "max_queue_requests": max_queue_requests,
            "max_queue_tokens": max_queue_tokens,
            "max_body_bytes": max_body_bytes,
            "body_budget_bytes": body_budget_bytes,
            "body_timeout": body_timeout,
            "request_timeout": request_timeout,
        }
    )
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
        raise ConfigurationError(f"max_wait must be a number of seconds, got {max_wait!r}")
    if not 0 <= max_wait <= 1:
        raise ConfigurationError(f"max_wait must be a number of seconds in 0..1, got {max_wait!r}")
    names = list(model_names or [MODEL_NAME])
    if provider.model_name not in names:
        names.append(provider.model_name)
    batcher = DynamicBatcher(
        provider,
        batch_tokens=limits["batch_tokens"],
        max_wait=max_wait,
        max_queue_requests=limits["max_queue_requests"],
        max_queue_tokens=limits["max_queue_tokens"],
    )
    state = _Server(
        provider,
        api_key=api_key,
        model_names=names,
        batcher=batcher,
        max_body_bytes=limits["max_body_bytes"],
        body_budget=BodyBudget(limits["body_budget_bytes"]),
        body_timeout=limits["body_timeout"],
        request_timeout=limits["request_timeout"],
        owns_provider=owns_provider,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(provider.load)
        try:
            yield
        finally:
            await batcher.stop()
            if state.cpu is not None:
                state.cpu.shutdown(wait=False)
                state.cpu = None
            if owns_provider:
                provider.close()

    app = Starlette(
        routes=[
            Route("/v1/embeddings", state.embeddings, methods=["POST"]),
            Route("/v1/models", state.models, methods=["GET"]),
            Route("/health", state.health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    # POST /v1/embeddings/ answers the JSON 404, not a 307 to a URL built from the Host header
    app.router.redirect_slashes = False
    app.state.jv3 = state
    app.add_middleware(_FastPath, state=state)
    return app
