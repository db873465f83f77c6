"""The rate budget an API client learns from its server, shared by threads and event loops.

One :class:`RateBudget` per provider. It learns the key's limits from what the server says:

- ``X-RateLimit-Remaining-Tokens`` / ``-Requests`` on every answer (the key's budget is at
  least what is left plus what this client spent in the window);
- 429 bodies: ``RATE_TOKEN_LIMIT_EXCEEDED`` "... {current}/{limit} tokens per minute" names the
  token budget, ``RATE_REQUEST_LIMIT_EXCEEDED`` the request budget ("{n} requests per minute"),
  ``RATE_CONCURRENCY_LIMIT_EXCEEDED`` says too many requests were in flight.

and plans against it: :meth:`RateBudget.request_cap` bounds the tokens of one request,
:meth:`RateBudget.reserve` paces tokens and requests over a sliding window, and the
concurrency moves by additive increase / multiplicative decrease (``Slots.set_limit``), never
above the provider's ``max_concurrency``. Everything here is I/O free and thread safe.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._transport import Slots
from ._wire import parse_rate_limit_remaining, parse_retry_after

__all__ = ["RateBudget", "RateLimits", "Reservation"]

logger = logging.getLogger("jv3_integrations.core._api")

MINUTE: Final = 60.0
FILL: Final = 0.97  # plan to at most this share of a learned budget (the server counts exactly)
# One request carries at most 1/8 of a learned token budget: the window is paced by whole
# requests, so about half a request's share of it idles (measured at 1/4: 85-87 % of the
# budget used at steady state, at 1/8: 99-100 %). Where the learned request budget is small,
# requests grow back towards 1/4 so that the requests a window needs stay within half of it.
REQUEST_SHARE: Final = 8
MIN_REQUEST_SHARE: Final = 4
QUIET_ANSWERS: Final = 8  # answers per allowed request in flight before probing one more
TOKEN_CODE: Final = "RATE_TOKEN_LIMIT_EXCEEDED"
REQUEST_CODE: Final = "RATE_REQUEST_LIMIT_EXCEEDED"
CONCURRENCY_CODE: Final = "RATE_CONCURRENCY_LIMIT_EXCEEDED"

_NUMBER = r"(\d[\d,_]*)"
_PER = r"per\s+(minute|(\d+(?:\.\d+)?)\s*(?:s\b|sec|second))"
_TOKENS_RE = re.compile(_NUMBER + r"\s*/\s*" + _NUMBER + r"\s*tokens?\s+" + _PER, re.I)
_REQUESTS_RE = re.compile(_NUMBER + r"\s*requests?\s+" + _PER, re.I)


def _window(match: re.Match[str], group: int) -> float:
    seconds = match.group(group + 1)
    return MINUTE if seconds is None else max(0.001, float(seconds))


def parse_token_limit(detail: str) -> tuple[int, int, float] | None:
    """``(current, limit, window seconds)`` from a token 429's message, if it names them."""
    match = _TOKENS_RE.search(detail or "")
    if match is None:
        return None
    current, limit = (int(re.sub(r"[,_]", "", match.group(i))) for i in (1, 2))
    return current, limit, _window(match, 3)


def parse_request_limit(detail: str) -> tuple[int, float] | None:
    """``(limit, window seconds)`` from a request 429's message, if it names them."""
    match = _REQUESTS_RE.search(detail or "")
    if match is None:
        return None
    return int(re.sub(r"[,_]", "", match.group(1))), _window(match, 2)


@dataclass(frozen=True)
class RateLimits:
    """What a provider has learned of its key's limits (``None``: not learned yet).

    Attributes:
        tokens_per_window: The key's token budget per ``window_s`` seconds.
        requests_per_window: The key's request budget per ``window_s`` seconds.
        window_s: The budget's window (60 s for Jina's per-minute limits).
        concurrency: Requests this provider lets be in flight now.
        max_concurrency: The ceiling ``concurrency`` never passes (the provider's option).
        server_tokens_per_estimate: Server-counted tokens per estimated token (learned).
    """

    tokens_per_window: int | None
    requests_per_window: int | None
    window_s: float
    concurrency: int
    max_concurrency: int
    server_tokens_per_estimate: float

    @property
    def tokens_per_minute(self) -> int | None:
        """The token budget scaled to a minute."""
        if self.tokens_per_window is None:
            return None
        return round(self.tokens_per_window * MINUTE / self.window_s)

    @property
    def requests_per_minute(self) -> int | None:
        """The request budget scaled to a minute."""
        if self.requests_per_window is None:
            return None
        return round(self.requests_per_window * MINUTE / self.window_s)


class Reservation:
    """One request's place in the window: its tokens (estimated, then as counted)."""

    __slots__ = ("at", "settled", "started", "tokens")

    def __init__(self, at: float, tokens: float, *, settled: bool = False) -> None:
        self.at = at
        self.started = at
        self.tokens = tokens
        self.settled = settled


class RateBudget:
    """A provider's learned limits, sliding-window pacing and AIMD concurrency.

    Args:
        max_concurrency: Ceiling of the concurrency (never passed).
        start_concurrency: Requests allowed in flight before anything is learned.
        pause: Seconds to hold every request when the server says nothing is left and gives
            no ``Retry-After``.
    """

    def __init__(self, *, max_concurrency: int, start_concurrency: int, pause: float) -> None:
        self._lock = threading.Lock()
        self.slots = Slots(start_concurrency)
        self._max_concurrency = max_concurrency
        self._cwnd = float(start_concurrency)
        self._ceiling = float(max_concurrency)  # lowered where a concurrency 429 was seen
        self._last_decrease = 0.0
        self._quiet = 0  # answers since the last concurrency 429
        self._pause = pause
        self._window = MINUTE
        self._tokens: int | None = None
        self._tokens_told = False  # named by a 429 body (not estimated from headers)
        self._left: float | None = None  # tokens left per the last answer, less those sent since
        self._requests: int | None = None
        self._requests_seen: int | None = None  # requests per window the headers suggest
        self._ratio = 1.0  # server tokens per estimated token (the highest of the recent)
        self._ratios: deque[float] = deque(maxlen=32)
        self._log: deque[Reservation] = deque()
        self._resume_at = 0.0
        self._serial_until = 0.0
        self._logged: tuple[int | None, int | None, float] | None = None

    # -- what was learned ----------------------------------------------------------------

    def limits(self) -> RateLimits:
        """A snapshot of what was learned."""
        with self._lock:
            return RateLimits(
                tokens_per_window=self._tokens,
                requests_per_window=self._requests,
                window_s=self._window,
                concurrency=self.slots.limit,
                max_concurrency=self._max_concurrency,
                server_tokens_per_estimate=round(self._ratio, 4),
            )

    def request_cap(self) -> int | None:
        """Most *estimated* tokens one request may carry now (``None``: nothing learned)."""
        with self._lock:
            if self._tokens is None:
                return None
            share = REQUEST_SHARE
            requests = self._requests if self._requests is not None else self._requests_seen
            if requests is not None:
                share = max(MIN_REQUEST_SHARE, min(REQUEST_SHARE, requests // 2))
            return max(1, int(self._tokens * FILL / share / self._ratio))

    def window_cap(self) -> int | None:
        """Most *estimated* tokens one request could ever carry: the whole learned budget."""
        with self._lock:
            if self._tokens is None:
                return None
            return max(1, int(self._tokens / self._ratio))

    # -- pacing -------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        # Entries move when settled, so the log is not in time order: filter, do not pop.
        if any(r.at <= now - self._window for r in self._log):
            self._log = deque(r for r in self._log if r.at > now - self._window)

    def reserve(self, estimate: int, waited: bool = False) -> tuple[float, Reservation | None]:
        """Take a place for a request of ``estimate`` tokens now, or say how long to wait.

        Args:
            estimate: The request's estimated tokens.
            waited: The caller just waited what the last answer said: a hold set by
                :meth:`block` is served (the window is still checked).

        Returns:
            ``(0, reservation)`` when it may go now (settle it with :meth:`settle`), else
            ``(seconds to wait, None)``; ask again after waiting.
        """
        now = time.monotonic()
        with self._lock:
            wait = self._resume_at - now
            if wait > 0 and not waited:
                return wait, None
            self._expire(now)
            tokens = estimate * self._ratio
            if not self._tokens_told and self._left is not None and tokens > self._left:
                # Only the headers spoke (the window is not known): wait for the budget to
                # free, then let one request find out (its answer tells what is left).
                if not waited:
                    return self._pause, None
                self._left = None
            if self._tokens is not None and self._tokens_told:
                allowed = self._tokens * FILL
                used = sum(r.tokens for r in self._log)
                if used + tokens > allowed and self._log:
                    freed = used + tokens - allowed
                    in_order = sorted(self._log, key=lambda r: r.at)
                    for entry in in_order:
                        freed -= entry.tokens
                        if freed <= 0:
                            return max(0.001, entry.at + self._window - now), None
                    return max(0.001, in_order[-1].at + self._window - now), None
            if self._requests is not None and len(self._log) >= max(1, self._requests - 1):
                times = sorted(r.at for r in self._log)
                index = len(times) - max(1, self._requests - 1)
                return max(0.001, times[index] + self._window - now), None
            entry = Reservation(now, tokens)
            self._log.append(entry)
            if self._left is not None:
                self._left -= tokens
            return 0.0, entry

    def settle(self, entry: Reservation, counted: int | None, estimate: int) -> None:
        """The request of ``entry`` was answered: ``counted`` tokens (``None``: not counted)."""
        now = time.monotonic()
        with self._lock:
            # The server counted it on arrival, soon after it was sent: place it half-way to
            # the answer (later than the arrival: conservative), but never more than 3 % of a
            # window late (each slot of the window would idle that long).
            entry.at = entry.started + min((now - entry.started) / 2, 0.03 * self._window)
            entry.settled = True
            if counted is None:
                entry.tokens = 0.0
                return
            entry.tokens = float(counted)
            if estimate > 0 and counted > 0:
                # Plan with the highest recent ratio: an estimate is never taken for less.
                self._ratios.append(counted / estimate)
                self._ratio = max(self._ratios)

    def serial(self) -> bool:
        """Whether requests take turns now (a per-minute budget was spent, limit unknown)."""
        return time.monotonic() < self._serial_until

    def block(self, seconds: float) -> None:
        """Hold every request of the provider for ``seconds``."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    # -- learning -----------------------------------------------------------------------

    def observe(self, headers: Mapping[str, str], answered: Reservation | None = None) -> None:
        """Learn from an answer's ``X-RateLimit-Remaining-*`` headers.

        Args:
            headers: The answer's headers.
            answered: The settled reservation of a 200 answer: only then does "left + what
                this client sent up to that request" estimate the budget (any status may say
                that nothing is left).
        """
        requests_left, tokens_left = parse_rate_limit_remaining(headers)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if tokens_left is not None:
                in_flight = sum(r.tokens for r in self._log if not r.settled and r is not answered)
                left = tokens_left - in_flight
                # Concurrent answers arrive in any order: an answer the server wrote earlier
                # says more is left than a later one did. Keep the lowest; it is reset when a
                # request is let through to find out (see reserve()).
                self._left = left if self._left is None else min(self._left, left)
            if tokens_left is not None and answered is not None:
                # What the server had counted when it answered: the requests sent up to this one.
                # What the server had surely counted when it answered: this request and those
                # answered before it was sent (never more, so the guess is never too high).
                spent = answered.tokens + sum(
                    r.tokens
                    for r in self._log
                    if r.settled and r is not answered and r.at <= answered.started
                )
                exact = all(r.settled for r in self._log)
                if not self._tokens_told:
                    guess = int(tokens_left + spent)
                    if guess > 0 and (self._tokens is None or guess > self._tokens):
                        self._tokens = guess
                if requests_left is not None:
                    # Requests per window, as for the tokens: what is left plus what was sent
                    # (only sizes requests; pacing by requests waits for a 429 to name it).
                    sent = 1 + sum(
                        1
                        for r in self._log
                        if r.settled and r is not answered and r.at <= answered.started
                    )
                    seen = requests_left + sent
                    if self._requests_seen is None or seen > self._requests_seen:
                        self._requests_seen = seen
                if self._tokens is not None:
                    # The server has counted more than we did (another client of the key):
                    # take its word for the window.
                    missing = (self._tokens - tokens_left) - spent
                    if missing > 0 and self._tokens_told and exact:
                        self._log.append(Reservation(now - self._window / 2, missing))
        if requests_left == 0 or (tokens_left is not None and tokens_left <= 0):
            wait = parse_retry_after(headers.get("retry-after"))
            self.block(self._pause if wait is None else wait)
        self._log_once(told=False)

    def refused(self, code: str | None, detail: str, entry: Reservation | None) -> bool:
        """Learn from a 429; whether it taught a limit (then pacing, not backoff, waits)."""
        now = time.monotonic()
        taught = False
        with self._lock:
            asked = 0.0
            if entry is not None:
                asked, entry.tokens = entry.tokens, 0.0  # refused requests are not counted
            if code == TOKEN_CODE:
                parsed = parse_token_limit(detail)
                if parsed is not None:
                    current, limit, window = parsed
                    self._tokens, self._tokens_told, self._window = limit, True, window
                    self._expire(now)
                    # The server's window holds what it counted before this request: where
                    # that is more than we sent, take its word (it frees over half a window).
                    missing = (current - asked) - sum(r.tokens for r in self._log)
                    if missing > 0 and asked <= limit:
                        # Mostly the server's entries outliving ours by a little (it counts on
                        # arrival): hold the difference for a tenth of the window.
                        self._log.append(Reservation(now - 0.9 * self._window, missing))
                    taught = True
            elif code == REQUEST_CODE:
                parsed_r = parse_request_limit(detail)
                if parsed_r is not None:
                    self._requests, self._window = parsed_r
                    taught = True
            elif code == CONCURRENCY_CODE:
                started = entry.started if entry is not None else now
                if started >= self._last_decrease:
                    busy = self.slots.busy
                    self._ceiling = float(max(1, min(self._ceiling, busy - 1)))
                    self._cwnd = max(1.0, min(self._cwnd / 2, self._ceiling))
                    self._last_decrease = now
                    self._quiet = 0
                    self.slots.set_limit(int(self._cwnd))
                taught = True
        if code in (TOKEN_CODE, REQUEST_CODE) and not taught:
            with self._lock:
                self._serial_until = max(self._serial_until, now + self._window)
        self._log_once(told=taught and code != CONCURRENCY_CODE)
        return taught

    def answered(self) -> None:
        """A request succeeded: grow the concurrency by about one per round of answers."""
        with self._lock:
            self._quiet += 1
            if self._quiet >= QUIET_ANSWERS * self._ceiling:
                # No concurrency 429 for a while: probe one higher (a limit may have grown).
                self._ceiling = min(float(self._max_concurrency), self._ceiling + 1)
                self._quiet = 0
            if self._cwnd < self._ceiling:
                self._cwnd = min(self._ceiling, self._cwnd + 1.0 / max(1.0, self._cwnd))
                if int(self._cwnd) != self.slots.limit:
                    self.slots.set_limit(int(self._cwnd))

    def _log_once(self, *, told: bool) -> None:
        """Log what was learned: the first estimate, then each limit a 429 named."""
        limits = self.limits()
        seen = (limits.tokens_per_window, limits.requests_per_window, limits.window_s)
        if seen == self._logged or seen[:2] == (None, None):
            return
        if self._logged is not None and not told:
            return  # a growing estimate from headers: not worth a line each time
        self._logged = seen
        logger.info(
            "learned the API key's rate limits: %s tokens and %s requests per %g s",
            seen[0] if seen[0] is not None else "?",
            seen[1] if seen[1] is not None else "?",
            seen[2],
        )
