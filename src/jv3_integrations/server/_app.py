"""The ASGI app: Jina's ``/v1/embeddings`` API in front of a local provider.

Same path, same strict validation and error bodies, same encodings as the official API
(``spec/API.md``), so any Jina client works against it unchanged. Requests are authenticated
before the body is read; the body must arrive within ``body_timeout`` (408) and fit
``max_body_bytes`` (413). Its place in the bounded queue is then reserved on an estimate from its
size (429 at once past the bound, before any parsing or tokenizing), the request validated by the
pure request parser (``_request.py``), counted with the model's tokenizer, re-checked against the
queue with the real count and embedded by the dynamic batcher. A client that hangs up meanwhile
has its queued work dropped before it reaches the model.

This module holds the endpoints and :func:`build_app`; the parts they stand on each have their
own: the shared state (``_state.py``), body reading and its budget (``_body.py``), the answers
that must stay fast under load (``_quick.py``) and request decoding and rendering (``_codec.py``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core._errors import ConfigurationError
from ..core._provider import BaseProvider
from ..core._types import JINA_EMBEDDINGS_V3
from ..core._wire import MODEL_NAME
from ._batcher import DynamicBatcher, QueueFull, Ticket
from ._body import BodyReader, _Held
from ._codec import Codec
from ._count import count_capped
from ._limits import LIMITS, BodyBudget, check_limits
from ._quick import FastPath, QuickRefusals, quick_answerer
from ._request import WireError, error_body
from ._state import BODY_BYTES_PER_TOKEN, _json

__all__ = ["build_app", "quick_answerer"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = int(LIMITS["max_body_bytes"].default)
DEFAULT_BODY_BUDGET_BYTES = int(LIMITS["body_budget_bytes"].default)
DEFAULT_BODY_TIMEOUT = LIMITS["body_timeout"].default
DEFAULT_REQUEST_TIMEOUT = LIMITS["request_timeout"].default
# Bodies larger than this are parsed off the event loop (json.loads and the item checks of a
# 2,048-item body take milliseconds: the loop must keep answering 429s and /health meanwhile).
_PARSE_OFF_LOOP_BYTES = 8 * 1024
# The queue holds at most this share of request_timeout in work at the measured speed: the
# rest of the timeout is left for parsing, counting, waiting for a pass and rendering.
QUEUE_SHARE_OF_TIMEOUT = 0.8


class _Server(BodyReader, QuickRefusals, Codec):
    """One app: its endpoints, on the state, body reading, refusals and codec of its parts."""

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
        max_queue_seconds=QUEUE_SHARE_OF_TIMEOUT * limits["request_timeout"],
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
    app.add_middleware(FastPath, state=state)
    return app
