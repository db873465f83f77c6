"""Transport concerns of the API client: deadlines that cover every byte, slots, retry delays.

``JinaAPIProvider`` plans and checks; this module sends. Three pieces, each usable alone:

- :func:`send` / :func:`asend`: one HTTP exchange that ends by a monotonic deadline however the
  server sends its bytes. httpx counts its read timeout per socket read, so a server dripping
  one header byte a second holds a plain ``httpx.Client(timeout=2)`` forever; the clients made
  by :func:`new_client` read through a network backend that clamps every read and write to
  what is left of the deadline. An injected client (its transport is the caller's) is bounded
  by running the exchange on a helper thread the caller stops waiting for. The async side is
  bounded by ``asyncio.timeout``.
- :class:`Slots`: the bound on requests in flight, shared by threads and event loops, whose
  limit may move (the rate budget's AIMD concurrency).
- :func:`retry_delay`: exponential backoff with jitter, honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import ssl
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import httpcore
import httpx

__all__ = ["Slots", "asend", "new_client", "retry_delay", "send"]

MAX_RETRY_AFTER: Final = 120.0  # seconds; a longer Retry-After is clipped to this

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "jv3_attempt_deadline", default=None
)


def _clamp(timeout: float | None, what: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the current deadline (raise ``what`` if none is)."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise what("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by the current deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with every stream bounded by the current deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _BoundedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections read through :class:`_DeadlineBackend`."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def new_client(
    *, timeout: float, limits: httpx.Limits, ssl_context: ssl.SSLContext
) -> tuple[httpx.Client, bool]:
    """A new sync client, and whether it bounds every byte by the deadline itself.

    Where the environment names a proxy (``HTTPS_PROXY`` and friends), the plain client that
    honours it is returned instead; :func:`send` then bounds it like an injected client.
    """
    if set(urllib.request.getproxies()) - {"no"}:  # NO_PROXY alone names no proxy
        client = httpx.Client(timeout=httpx.Timeout(timeout), limits=limits, verify=ssl_context)
        return client, False
    transport = _BoundedTransport(ssl_context=ssl_context, limits=limits)
    return httpx.Client(timeout=httpx.Timeout(timeout), transport=transport), True


@contextmanager
def _until(end: float) -> Iterator[None]:
    token = _deadline.set(end)
    try:
        yield
    finally:
        _deadline.reset(token)


def _exchange(
    client: httpx.Client, method: str, url: str, content: bytes | None, headers: dict[str, str]
) -> httpx.Response:
    left = _deadline.get()
    timeout = None if left is None else max(0.001, left - time.monotonic())
    return client.request(
        method, url, content=content, headers=headers, timeout=httpx.Timeout(timeout)
    )


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str],
    end: float,
    bounded: bool,
) -> httpx.Response:
    """One exchange, the whole answer read, ending by ``end`` (``time.monotonic()``).

    Args:
        bounded: whether ``client`` came from :func:`new_client` with its own bound; else the
            exchange runs on a helper thread that the caller stops waiting for at ``end``.

    Raises:
        httpx.TimeoutException: ``end`` passed first.
        httpx.HTTPError: any other transport failure.
    """
    if time.monotonic() >= end:
        raise httpx.ConnectTimeout("the attempt's deadline passed")
    if bounded:
        with _until(end):
            return _exchange(client, method, url, content, headers)
    outcome: list[httpx.Response | BaseException] = []

    def run() -> None:
        try:
            with _until(end):
                outcome.append(_exchange(client, method, url, content, headers))
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    helper = threading.Thread(target=run, name="jv3-api-exchange", daemon=True)
    helper.start()
    helper.join(max(0.0, end - time.monotonic()))
    if not outcome:
        raise httpx.ReadTimeout("the answer did not arrive within the attempt's deadline")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


async def asend(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str],
    end: float,
) -> httpx.Response:
    """Async twin of :func:`send` (cancelled at ``end``, whatever the transport)."""
    left = end - time.monotonic()
    if left <= 0:
        raise httpx.ConnectTimeout("the attempt's deadline passed")
    try:
        async with asyncio.timeout(left):
            return await client.request(
                method, url, content=content, headers=headers, timeout=httpx.Timeout(left)
            )
    except TimeoutError:
        raise httpx.ReadTimeout("the answer did not arrive within the attempt's deadline") from None


def retry_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None, slow: bool = False
) -> float:
    """Seconds to wait before retry ``attempt + 1``.

    ``Retry-After`` wins when the server sends it (clipped to two minutes); otherwise the delay
    doubles from ``base`` up to ``cap``, with full jitter in its upper half. ``slow`` is for a
    spent per-minute budget, which frees over a minute: start at ten times ``base`` and allow
    twice ``cap`` (defaults: 5, 10, 20, 40, 60, 60 s).
    """
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    if slow:
        ceiling = min(2 * cap, 10 * base * (2.0**attempt))
    else:
        ceiling = min(cap, base * (2.0**attempt))
    return ceiling * random.uniform(0.5, 1.0)


_Waiter = threading.Event | tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class Slots:
    """Requests in flight for one provider, shared by threads and event loops.

    Sync callers block their thread; async callers wait on a future of their own loop (the
    loop is never blocked). A freed slot goes to the oldest waiter, sync or async. The limit
    may move while requests are in flight (:meth:`set_limit`): a lower limit lets the ones in
    flight finish and holds new ones until fewer are in flight.
    """

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._busy = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def limit(self) -> int:
        """How many requests may be in flight now."""
        return self._limit

    @property
    def busy(self) -> int:
        """How many requests are in flight now."""
        return self._busy

    def set_limit(self, limit: int) -> None:
        """Move the limit (at least 1); waiters go ahead at once if it grew."""
        with self._lock:
            self._limit = max(1, limit)
            self._dispatch()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold one slot for the ``with`` block (blocking this thread until one is free)."""
        event: threading.Event | None = None
        with self._lock:
            if self._busy < self._limit and not self._waiters:
                self._busy += 1
            else:
                event = threading.Event()
                self._waiters.append(event)
        if event is not None:
            event.wait()  # set by _dispatch(): the slot was handed to us
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Take one slot (waiting on this loop); pair with :meth:`release`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._busy < self._limit and not self._waiters:
                self._busy += 1
                return
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            # _dispatch() handed us the slot already: give it back (unless _hand will, seeing
            # the cancelled future)
            if waiter[1].done() and not waiter[1].cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Give one slot back."""
        with self._lock:
            self._busy -= 1
            self._dispatch()

    def _dispatch(self) -> None:  # under self._lock
        while self._waiters and self._busy < self._limit:
            waiter = self._waiters.popleft()
            if isinstance(waiter, threading.Event):
                self._busy += 1
                waiter.set()
                continue
            loop, future = waiter
            try:
                loop.call_soon_threadsafe(self._hand, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                continue
            self._busy += 1

    def _hand(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled meanwhile: pass the slot on
            self.release()
        else:
            future.set_result(None)
