"""Connection guards for ``jv3 serve``: what uvicorn's own options do not cover.

uvicorn closes a keep-alive connection that stays silent after a response
(``timeout_keep_alive``) and answers 503 past ``limit_concurrency``, but it has no timeout for a
connection that never sends a full request head (an idle socket, or a client that drips one
header byte per second), and idle sockets count against ``limit_concurrency`` like busy ones, so
a flood of them starves every real request, ``/health`` included. The protocol built here adds:

- a request-head deadline: a connection waiting for a request (new, or kept alive after a
  response) that has not sent a complete head within ``head_timeout`` seconds is closed;
- idle eviction: past ``max_connections`` open connections, the oldest ones that are waiting
  for a request (not being answered) are closed to make room for the new one;
- small read buffers: a connection reads at most :data:`READ_BYTES` at a time and stops
  reading while a request body chunk waits for the app (uvicorn waits for 64 KiB, after reads
  of up to 256 KiB), so what the HTTP layer holds is at most ``READ_BYTES`` per connection on
  top of the app's body budget.

The request *body* deadline lives in the app (it answers a JSON 408).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def _find_quick(app: Any) -> Any:
    """The app's quick answerer (see ``_quick.quick_answerer``), through uvicorn's own wrappers.

    None when the app is not ours or is wrapped by anything else (a middleware must see every
    request).
    """
    from ._quick import quick_answerer

    inner = app
    for _ in range(4):
        found = quick_answerer(inner)
        if found is not None or not type(inner).__module__.startswith("uvicorn.middleware"):
            return found
        inner = getattr(inner, "app", None)
    return None


__all__ = ["READ_BYTES", "guarded_protocol"]

#: Bytes read from a socket at once (asyncio's default is 256 KiB).
READ_BYTES = 64 * 1024


def guarded_protocol(*, head_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """An uvicorn HTTP/1.1 protocol class with a request-head deadline and idle eviction."""
    return type(
        "GuardedH11Protocol",
        (_GuardedH11Protocol,),
        {"_head_timeout": head_timeout, "_max_connections": max_connections, "_quick": None},
    )


class _GuardedH11Protocol(H11Protocol):
    """The protocol :func:`guarded_protocol` configures (one subclass per server)."""

    _head_timeout: float
    _max_connections: int
    _head_timer: asyncio.TimerHandle | None = None
    _opened: float = 0.0
    _received: float = 0.0
    _quick: tuple[Any, Any] | None = None  # (app, its quick answerer), per subclass

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if isinstance(getattr(transport, "max_size", None), int):  # asyncio's selector loop
            transport.max_size = READ_BYTES
        self._opened = time.monotonic()
        self._arm_head_timer()
        if len(self.connections) > self._max_connections:
            self._evict_idle(len(self.connections) - self._max_connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received = time.perf_counter()
        if self._quick_ready():
            quick = self._quick_answerer()
            answer = quick(data, self._received) if quick is not None else None
            if answer is not None and not answer[0]:  # let through, counted as arriving
                self._let_through(data, quick)
                return
            if answer is not None:  # /health, or a 429: answered from the bytes at once
                self._answer_at_once(*answer)
                return
        super().data_received(data)

    def _quick_answerer(self) -> Any:
        """The app's quick answerer, looked up once per app."""
        cache = type(self)._quick
        if cache is None or cache[0] is not self.app:
            cache = type(self)._quick = (self.app, _find_quick(self.app))
        return cache[1]

    def _let_through(self, data: bytes, quick: Any) -> None:
        """Hand a request the quick answerer counted as arriving to the HTTP parser."""
        before, tasks = self.cycle, set(self.tasks)
        super().data_received(data)
        started = self.tasks - tasks
        if self.cycle is None or self.cycle is before or not started:
            quick.release()  # the HTTP parser refused it: it never reaches the app
            return
        # the app un-counts it when it takes it up; if it never does (a 503 past
        # the connection limit), the end of its task does
        scope: Any = self.cycle.scope
        scope["jv3.arriving"] = True

        def settle(_: object) -> None:
            if scope.pop("jv3.arriving", False):
                quick.release()

        for task in started:
            task.add_done_callback(settle)

    def _answer_at_once(self, response: bytes, close: bool) -> None:
        """Write a response answered from the request bytes (the app never sees it)."""
        self.server_state.total_requests += 1
        self.transport.write(response)
        if close:
            self.transport.close()
        else:  # as after any response: the keep-alive and head deadlines again
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            self._arm_head_timer()

    def _quick_ready(self) -> bool:
        """Idle between requests, nothing buffered: a read may hold a whole request."""
        return (
            self._waiting()
            and self.conn.our_state is h11.IDLE
            and self.conn.their_state is h11.IDLE
            and not self.conn.trailing_data[0]
            and not self.transport.is_closing()
        )

    def handle_events(self) -> None:
        super().handle_events()
        if not self._waiting():  # a complete request head arrived: its deadline is met
            self._cancel_head_timer()
            if self.cycle is not None and "jv3.received" not in self.cycle.scope:
                # when its bytes were read (the app's Server-Timing counts from there)
                self.cycle.scope["jv3.received"] = self._received  # type: ignore[typeddict-unknown-key]
            if self.cycle is not None and self.cycle.body:
                # a chunk waits for the app: read more when it asks (receive() resumes)
                self.flow.pause_reading()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._waiting():
            self._arm_head_timer()  # the next request's head has the same deadline

    # -- helpers ----------------------------------------------------------------------

    def _waiting(self) -> bool:
        """Whether this connection waits for a request head (nothing is being answered)."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._waiting() and not self.transport.is_closing():
            self.transport.close()

    def _evict_idle(self, n: int) -> None:
        idle = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, type(self))
            and c._waiting()
            and not c.transport.is_closing()
        ]
        idle.sort(key=lambda c: c._opened)
        for conn in idle[:n]:
            conn.transport.close()
