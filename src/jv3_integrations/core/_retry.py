"""Retries, deadlines and the rate gate around one HTTP request of :class:`JinaAPIProvider`.

The provider says what to send and how to read the answer; :class:`Retrier` decides when to
send it (the learned rate budget, the serial mode after a spent budget, the concurrency
slots), whether a failure is final, how long to wait before the next attempt, and when the
call's ``total_timeout`` is spent. The sync and async loops are the same steps.
"""

from __future__ import annotations

import contextvars
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx
import numpy as np
import numpy.typing as npt

from ._budget import RateBudget, Reservation
from ._errors import APIConnectionError, APIError, APIResponseError, APITimeoutError
from ._transport import retry_delay
from ._wire import RETRYABLE_STATUS, parse_retry_after

__all__ = ["CALL_DEADLINE", "Aborted", "HostNotFoundError", "Retrier", "name_not_resolved"]

logger = logging.getLogger(__name__)

#: Jina's 429 codes for a per-minute budget (tokens or requests) spent.
PER_MINUTE_CODES: Final = frozenset({"RATE_TOKEN_LIMIT_EXCEEDED", "RATE_REQUEST_LIMIT_EXCEEDED"})
#: The deadline of the embed() call in progress (discovery inside it shares it).
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "jv3_call_deadline", default=None
)

#: ``(vectors, tokens counted)`` of one answered request.
Sent = tuple[npt.NDArray[np.float32], int]


class Aborted(Exception):
    """Another batch of the same call failed: this one stops (never reaches the caller)."""


class HostNotFoundError(APIConnectionError):
    """The host name does not resolve: final, never retried (still an APIConnectionError)."""


def name_not_resolved(exc: BaseException) -> bool:
    """Whether a connection error comes from a failed DNS lookup (``socket.gaierror``)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, socket.gaierror):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class Retrier:
    """The retry policy and deadlines of one provider (shared by its sync and async calls)."""

    def __init__(
        self,
        *,
        budget: RateBudget,
        base_url: str,
        timeout: float,
        total_timeout: float | None,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
    ) -> None:
        self.budget = budget
        self.base_url = base_url
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    # -- policy -------------------------------------------------------------------------------

    def retry_delay(self, attempt: int, error: APIError, response: httpx.Response | None) -> float:
        after = None if response is None else parse_retry_after(response.headers.get("retry-after"))
        return retry_delay(
            attempt,
            base=self.backoff_base,
            cap=self.backoff_max,
            retry_after=after,
            slow=error.code in PER_MINUTE_CODES,
        )

    def give_up(
        self,
        attempt: int,
        error: APIError,
        response: httpx.Response | None,
        entry: Reservation | None,
    ) -> float:
        """Raise ``error`` if it is final; else return the delay before the next attempt."""
        retryable = error.status is None or error.status in RETRYABLE_STATUS
        final = isinstance(error, APIResponseError | HostNotFoundError)
        if error.status == 429:
            taught = self.budget.refused(error.code, error.detail or str(error), entry)
        else:
            taught = False
            if entry is not None and error.status is not None:
                self.budget.settle(entry, None, 0)  # answered, not counted
        if final or not retryable or attempt >= self.max_retries:
            raise error
        after = None if response is None else parse_retry_after(response.headers.get("retry-after"))
        if taught and error.code in PER_MINUTE_CODES and after is None:
            delay = 0.0  # the learned budget paces the retry (RateBudget.reserve)
        else:
            delay = self.retry_delay(attempt, error, response)
        if error.status == 429 and delay > 0:
            # Every request of this provider waits (the budget's gate), not just this one.
            self.budget.block(delay)
            delay = 0.0
        logger.info(
            "embeddings request failed (%s); retry %d/%d in %.2f s",
            error.code or error.status or type(error).__name__,
            attempt + 1,
            self.max_retries,
            delay,
        )
        return delay

    def network_error(self, exc: httpx.HTTPError) -> APIError:
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"the request to {self.base_url} timed out after {self.timeout:g} s "
                f"({type(exc).__name__}); raise timeout= or lower max_batch_items"
            )
        if name_not_resolved(exc):
            # No DNS answer for the host (offline, or a typo): retrying for 45 s cannot help.
            host = httpx.URL(self.base_url).host
            return HostNotFoundError(
                f"could not reach {self.base_url}: the host name {host!r} does not resolve "
                "(offline, or a typo in the URL)"
            )
        return APIConnectionError(
            f"could not reach {self.base_url}: {type(exc).__name__}: {exc}".rstrip(": ")
        )

    def probe_failed(
        self, attempt: int, error: APIError, call_deadline: float | None, where: str
    ) -> float:
        """The delay before probing ``where`` (``GET /v1/models``) again, or raise ``error``
        (with the fix) if it is final."""
        retryable = not isinstance(error, HostNotFoundError) and (
            error.status is None or error.status in RETRYABLE_STATUS
        )
        out_of_time = call_deadline is not None and time.monotonic() >= call_deadline
        if not retryable or attempt >= self.max_retries or out_of_time:
            error.args = (
                f"could not read the model size from {where}: {error} "
                "(pass max_dimensions= to the provider to skip asking)",
            )
            raise error
        delay = self.retry_delay(attempt, error, None)
        if call_deadline is not None:
            delay = min(delay, max(0.0, call_deadline - time.monotonic()))
        return delay

    # -- deadlines ----------------------------------------------------------------------------

    def probe_deadline(self, call_deadline: float | None, cap: float) -> float:
        """The end of one probe attempt: ``timeout`` but at most ``cap`` seconds."""
        end = time.monotonic() + min(self.timeout, cap)
        return end if call_deadline is None else min(end, call_deadline)

    def attempt_deadline(self, call_deadline: float | None) -> float:
        deadline = time.monotonic() + self.timeout
        return deadline if call_deadline is None else min(deadline, call_deadline)

    def call_deadline(self) -> float | None:
        current = CALL_DEADLINE.get()
        if current is not None:
            return current  # inside embed(): the call's deadline covers discovery too
        return None if self.total_timeout is None else time.monotonic() + self.total_timeout

    def check_call_deadline(self, call_deadline: float | None, error: APIError | None) -> None:
        if call_deadline is not None and time.monotonic() >= call_deadline:
            raise APITimeoutError(
                f"the embeddings call to {self.base_url} did not finish within total_timeout="
                f"{self.total_timeout:g} s (retries included)"
                + (f"; last error: {error}" if error is not None else "")
            )

    def wait_left(self, seconds: float, call_deadline: float | None) -> float:
        if call_deadline is None:
            return seconds
        return min(seconds, max(0.0, call_deadline - time.monotonic()) + 0.001)

    # -- the loops ----------------------------------------------------------------------------

    def run(
        self,
        *,
        tokens: int,
        split: Callable[[], Sent | None],
        post: Callable[[float], httpx.Response],
        parse: Callable[[httpx.Response], Sent],
        serial_lock: threading.Lock,
        pause: Callable[[float, threading.Event | None], None],
        abort: threading.Event | None,
        call_deadline: float | None,
    ) -> Sent:
        """Send one request of ``tokens`` until it is answered or a failure is final.

        ``split`` sends it in pieces instead when the budget learned meanwhile is smaller
        (None: it fits); ``post`` sends it with an attempt deadline; ``parse`` reads the answer.
        """
        budget = self.budget
        attempt = 0
        serial = False  # holding serial_lock: the one request allowed while a budget is spent
        waited = False
        last: APIError | None = None
        try:
            while True:
                if abort is not None and abort.is_set():
                    raise Aborted
                self.check_call_deadline(call_deadline, last)
                parts = split()
                if parts is not None:
                    return parts
                if not serial and budget.serial():
                    if not serial_lock.acquire(timeout=0.2):
                        continue
                    serial = True
                wait, entry = budget.reserve(tokens, waited)
                if entry is None:
                    pause(self.wait_left(wait, call_deadline), abort)
                    waited = True
                    continue
                waited = False
                response: httpx.Response | None = None
                with budget.slots.hold():
                    entry.started = time.monotonic()
                    try:
                        response = post(self.attempt_deadline(call_deadline))
                        return self._answered(response, parse, entry, tokens)
                    except httpx.HTTPError as exc:
                        error: APIError = self.network_error(exc)
                        error.__cause__ = exc
                    except APIError as exc:
                        error = exc
                last = error
                delay = self.give_up(attempt, error, response, entry)
                if delay > 0:
                    pause(self.wait_left(delay, call_deadline), abort)
                attempt += 1
        finally:
            if serial:
                serial_lock.release()

    async def arun(
        self,
        *,
        tokens: int,
        split: Callable[[], Awaitable[Sent | None]],
        post: Callable[[float], Awaitable[httpx.Response]],
        parse: Callable[[httpx.Response], Sent],
        serial_lock: Any,
        sleep: Callable[[float], Awaitable[None]],
        call_deadline: float | None,
    ) -> Sent:
        """:meth:`run` for asyncio (``serial_lock`` is the client loop's ``asyncio.Lock``)."""
        budget = self.budget
        attempt = 0
        serial = False
        waited = False
        last: APIError | None = None
        try:
            while True:
                self.check_call_deadline(call_deadline, last)
                parts = await split()
                if parts is not None:
                    return parts
                if not serial and budget.serial():
                    await serial_lock.acquire()
                    serial = True
                wait_s, entry = budget.reserve(tokens, waited)
                if entry is None:
                    await sleep(self.wait_left(wait_s, call_deadline))
                    waited = True
                    continue
                waited = False
                response: httpx.Response | None = None
                await budget.slots.acquire()
                try:
                    entry.started = time.monotonic()
                    response = await post(self.attempt_deadline(call_deadline))
                    return self._answered(response, parse, entry, tokens)
                except httpx.HTTPError as exc:
                    error = self.network_error(exc)
                    error.__cause__ = exc
                except APIError as exc:
                    error = exc
                finally:
                    budget.slots.release()
                last = error
                delay = self.give_up(attempt, error, response, entry)
                if delay > 0:
                    await sleep(self.wait_left(delay, call_deadline))
                attempt += 1
        finally:
            if serial:
                serial_lock.release()

    def _answered(
        self,
        response: httpx.Response,
        parse: Callable[[httpx.Response], Sent],
        entry: Reservation,
        tokens: int,
    ) -> Sent:
        """Read an answer and teach the budget what it cost (raises if it is an error)."""
        vectors, counted = parse(response)
        self.budget.settle(entry, counted, tokens)
        self.budget.observe(response.headers, entry)
        self.budget.answered()
        return vectors, counted
