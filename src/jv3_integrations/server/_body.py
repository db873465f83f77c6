"""Reading a request body: within the body limit, the body timeout and the body budget.

A declared body (``Content-Length``) takes its whole size from the server-wide budget before a
byte of it is read (429 at once past it); a chunked one takes each chunk before keeping it. A
body past ``max_body_bytes`` is cut off (413); one that does not arrive within ``body_timeout``
is answered 408.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ._limits import BodyBudget
from ._request import error_body
from ._state import ServerState, _json


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


class BodyReader(ServerState):
    """The app's body reading (see :class:`.ServerState` for its limits)."""

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
