"""Dynamic batching: concurrent requests share forward passes, the model runs off the loop.

Requests are queued as jobs. One asyncio worker takes, per tick, the oldest job's task and packs
the queued texts of that task (from any number of requests, in arrival order) into one forward
pass under a token budget; the pass runs on a single worker thread, so the event loop keeps
accepting, validating and answering requests meanwhile. A late-chunking job is one document and
always gets a pass of its own. Passes compute full-size, unnormalized vectors; each request
applies its own ``dimensions`` and ``normalized`` afterwards (Matryoshka truncation then
normalization, exactly what the model does), so requests with different settings still share
passes. The queue is bounded in requests and tokens: :meth:`DynamicBatcher.admit` refuses work
past either bound instead of letting the queue grow. Admission *reserves* the place (a
:class:`Ticket`) from the moment the body is read, on an estimate from its size, so requests
being parsed and tokenized count against the bound too: at most ``max_queue_requests`` of
them do that expensive work at once, every other one is answered 429 before it starts.
Once passes have been measured, the queue is also bounded in time: work the model could not
finish within ``max_queue_seconds`` at its measured speed is refused the same way. Only real
token counts go into that bound (a size estimate can be far above what a request with
``truncate`` costs): a request is refused at admission when the counted work already queued
exceeds it, and once counted (:meth:`DynamicBatcher.readmit`) when its own tokens would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..core._provider import BaseProvider
from ..core._types import Task

__all__ = ["DynamicBatcher", "QueueFull", "Ticket"]

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue is at its bound: answer 429 with ``code`` and ``retry_after`` seconds."""

    def __init__(
        self,
        code: str,
        detail: str,
        retry_after: int,
        *,
        remaining_requests: int = 0,
        remaining_tokens: int = 0,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        # The room the refusal saw (requests on their way counted), for X-RateLimit-Remaining-*:
        # read again when answering, the queue may have moved and a 429 would report a place.
        self.remaining_requests = remaining_requests
        self.remaining_tokens = remaining_tokens


@dataclass(eq=False)
class Ticket:
    """A place in the queue, held from admission until the request's work is done."""

    tokens: int
    released: bool = False
    counted: bool = False  # ``tokens`` is the real count (readmitted), not the size estimate


@dataclass(eq=False)
class _Job:
    texts: list[str]
    tokens: list[int]
    task: Task | None
    late: bool
    future: asyncio.Future[npt.NDArray[np.float32]]
    out: npt.NDArray[np.float32] | None = None
    next: int = 0
    done: int = 0
    remaining_tokens: int = field(default=0)


class DynamicBatcher:
    """Packs queued embedding work into shared forward passes of ``provider``.

    Args:
        provider: Any provider; called as ``embed(texts, task=..., dimensions=max,
            normalized=False, late_chunking=...)`` from one worker thread.
        batch_tokens: Token budget of one forward pass (one text may exceed it alone).
        max_wait: Seconds to wait for more requests before a pass that is not yet full.
        max_queue_requests: Requests queued or running at once before 429.
        max_queue_tokens: Tokens queued or running at once before 429.
        max_queue_seconds: Seconds of queued work, at the measured tokens/s of recent passes,
            before 429 (None: no bound in time; none applies before a pass was measured).
    """

    def __init__(
        self,
        provider: BaseProvider,
        *,
        batch_tokens: int = 16_384,
        max_wait: float = 0.002,
        max_queue_requests: int = 256,
        max_queue_tokens: int = 1_048_576,
        max_queue_seconds: float | None = None,
    ) -> None:
        self._provider = provider
        self._batch_tokens = batch_tokens
        self._max_wait = max_wait
        self._max_requests = max_queue_requests
        self._max_tokens = max_queue_tokens
        self._max_seconds = max_queue_seconds
        self._pending: deque[_Job] = deque()
        self._queued_requests = 0
        self._queued_tokens = 0
        self._estimated_tokens = 0  # of _queued_tokens: size estimates of tickets not counted
        self._tokens_per_s = 0.0
        # recent passes' tokens and seconds, each decayed by 0.8 a pass: their ratio is the
        # speed over the recent mix (an average of per-pass speeds overstates it: 16k short
        # tokens take 0.1 s and one 8k-token text 0.5 s)
        self._recent_tokens = 0.0
        self._recent_seconds = 0.0
        self._event: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._idle: asyncio.Event | None = None
        self.passes = 0  # forward passes run (for tests and metrics)

    # -- admission ------------------------------------------------------------------------

    @property
    def remaining_requests(self) -> int:
        """Requests the queue still takes before answering 429."""
        return max(0, self._max_requests - self._queued_requests)

    @property
    def remaining_tokens(self) -> int:
        """Tokens the queue still takes before answering 429."""
        return max(0, self._max_tokens - self._queued_tokens)

    def retry_after(self) -> int:
        """Seconds the queued work should take at the recent speed (at least 1)."""
        rate = self._tokens_per_s
        if rate <= 0:
            return 1
        return max(1, math.ceil(self._queued_tokens / rate))

    def admit(self, tokens: int) -> Ticket:
        """Reserve a place for a request of (at least) ``tokens``; release it or submit with it.

        Raises:
            QueueFull: the queue holds its maximum of requests or tokens.
        """
        self._check(
            tokens,
            requests=self._queued_requests,
            queued=self._queued_tokens,
            counted=self._queued_tokens - self._estimated_tokens,
        )
        self._queued_requests += 1
        self._queued_tokens += tokens
        self._estimated_tokens += tokens
        return Ticket(tokens)

    def check_room(self, tokens: int, *, pending: int = 0) -> None:
        """Whether :meth:`admit` would take ``tokens`` now (reserves nothing).

        ``pending``: requests on their way to :meth:`admit`, counted as queued.

        Raises:
            QueueFull: it would not.
        """
        self._check(
            tokens,
            requests=self._queued_requests + pending,
            queued=self._queued_tokens,
            counted=self._queued_tokens - self._estimated_tokens,
        )

    def readmit(self, ticket: Ticket, tokens: int) -> None:
        """Replace the ticket's estimate with the request's real count of ``tokens``.

        Raises:
            QueueFull: the real count does not fit (the ticket is released).
        """
        if ticket.released:
            raise RuntimeError("readmit() of a released ticket")
        others = self._queued_tokens - ticket.tokens
        estimated = self._estimated_tokens - (0 if ticket.counted else ticket.tokens)
        try:
            self._check(
                tokens,
                requests=self._queued_requests - 1,
                queued=others,
                counted=others - estimated,
                new=tokens,
            )
        except QueueFull:
            self.release(ticket)
            raise
        self._queued_tokens = others + tokens
        self._estimated_tokens = estimated
        ticket.tokens = tokens
        ticket.counted = True

    def release(self, ticket: Ticket) -> None:
        """Give the place back (a no-op once released or handed to :meth:`submit`)."""
        if ticket.released:
            return
        ticket.released = True
        self._queued_requests -= 1
        self._queued_tokens -= ticket.tokens
        if not ticket.counted:
            self._estimated_tokens -= ticket.tokens
        if self._queued_requests == 0 and self._idle is not None:
            self._idle.set()

    def _check(
        self, tokens: int, *, requests: int, queued: int, counted: int, new: int = 0
    ) -> None:
        """Raise QueueFull unless ``tokens`` more fit (``counted``: the real counts queued).

        ``new``: the request's own real count (0 while only its size estimate is known).
        """
        room = {
            "remaining_requests": max(0, self._max_requests - requests),
            "remaining_tokens": max(0, self._max_tokens - queued),
        }
        if self._closing:
            raise QueueFull(
                "SERVICE_UNAVAILABLE", "The server is shutting down; retry elsewhere.", 1, **room
            )
        if requests >= self._max_requests:
            raise QueueFull(
                "RATE_CONCURRENCY_LIMIT_EXCEEDED",
                f"Concurrency limit exceeded: {requests}/{self._max_requests} "
                "concurrent requests. Wait for pending requests to complete before sending "
                "new ones.",
                self.retry_after(),
                **room,
            )
        # An empty queue takes any single request, however large, so nothing starves.
        if queued and queued + tokens > self._max_tokens:
            raise QueueFull(
                "RATE_TOKEN_LIMIT_EXCEEDED",
                f"Token rate limit exceeded: {queued + tokens:,}/"
                f"{self._max_tokens:,} tokens queued. Reduce batch sizes or retry later.",
                self.retry_after(),
                **room,
            )
        self._check_time(counted, new, room)

    def _check_time(self, counted: int, new: int, room: dict[str, int]) -> None:
        """Refuse work the model could not finish in ``max_queue_seconds`` at its recent speed.

        Real token counts only (``counted`` queued, ``new`` the request's own), only a queue
        with counted work in it, and only once a pass was measured (before that, the bounds
        in requests and tokens alone apply).
        """
        rate, limit = self._tokens_per_s, self._max_seconds
        if limit is None or rate <= 0 or counted <= 0:
            return
        seconds = (counted + new) / rate
        if seconds > limit:
            raise QueueFull(
                "RATE_CONCURRENCY_LIMIT_EXCEEDED",
                f"Concurrency limit exceeded: the queued work ({counted + new:,} tokens) "
                f"would take about {seconds:.0f} s at this server's current speed of "
                f"{rate:,.0f} tokens/s, more than it can finish within its request timeout. "
                "Wait for pending requests to complete before sending new ones.",
                self.retry_after(),
                **room,
            )

    # -- lifecycle ----------------------------------------------------------------------------

    def _ensure_started(self) -> asyncio.Event:
        if self._event is None or self._worker is None or self._worker.done():
            self._event = asyncio.Event()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="jv3-model")
            self._worker = asyncio.get_running_loop().create_task(
                self._run(self._event, self._executor)
            )
        return self._event

    async def stop(self) -> None:
        """Finish every queued request, then stop the worker and its thread."""
        self._closing = True
        if self._queued_requests and self._worker is not None and not self._worker.done():
            self._idle = asyncio.Event()
            await self._idle.wait()
        if self._worker is not None:
            if self._event is not None:
                self._event.set()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- work -----------------------------------------------------------------------------------

    async def submit(
        self,
        texts: list[str],
        tokens: list[int],
        *,
        task: Task | None,
        late_chunking: bool,
        ticket: Ticket,
    ) -> npt.NDArray[np.float32]:
        """Queue ``texts`` and wait for their full-size, unnormalized vectors (input order).

        ``ticket`` is the place :meth:`admit` reserved (its work takes it over); ``tokens`` are
        the texts' token counts (for the budget). Cancelling the wait (the client hung up)
        drops the texts not yet computed: they never reach the model.
        """
        if ticket.released:
            raise RuntimeError("submit() with a released ticket")
        event = self._ensure_started()
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        job = _Job(list(texts), list(tokens), task, late_chunking, future)
        job.remaining_tokens = sum(tokens)
        ticket.released = True  # the job holds the place now (released by _release)
        if not ticket.counted:
            self._estimated_tokens -= ticket.tokens
        self._queued_tokens += job.remaining_tokens - ticket.tokens
        self._pending.append(job)
        event.set()
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()
            self._release(job)

    def _release(self, job: _Job) -> None:
        if job.future.cancelled() and job in self._pending:
            self._pending.remove(job)  # its client is gone: what is left is never computed
        if job.remaining_tokens >= 0:
            self._queued_tokens -= job.remaining_tokens
            self._queued_requests -= 1
            job.remaining_tokens = -1
            if self._queued_requests == 0 and self._idle is not None:
                self._idle.set()

    def _pending_tokens(self) -> int:
        return sum(sum(j.tokens[j.next :]) for j in self._pending)

    def _take(self) -> tuple[Task | None, bool, list[tuple[_Job, int, int]]]:
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()
        if not self._pending:
            return None, False, []
        head = self._pending[0]
        if head.late:
            self._pending.popleft()
            head.next = len(head.texts)
            return head.task, True, [(head, 0, len(head.texts))]
        work: list[tuple[_Job, int, int]] = []
        budget = self._batch_tokens
        used = 0
        for job in list(self._pending):
            if job.late or job.task != head.task or job.future.done():
                continue
            start = stop = job.next
            while stop < len(job.texts) and (used == 0 or used + job.tokens[stop] <= budget):
                used += job.tokens[stop]
                stop += 1
            if stop > start:
                work.append((job, start, stop))
                job.next = stop
            if job.next >= len(job.texts):
                self._pending.remove(job)
            if used >= budget:
                break
        return head.task, False, work

    def _forward(self, texts: list[str], task: Task | None, late: bool) -> npt.NDArray[np.float32]:
        provider = self._provider
        emb = provider.embed(
            texts,
            task=task,
            dimensions=provider.max_dimensions,
            normalized=False,
            late_chunking=late,
        )
        return emb.vectors

    async def _run(self, event: asyncio.Event, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await event.wait()
            if (
                self._max_wait > 0
                and not self._closing
                and self._pending_tokens() < self._batch_tokens
            ):
                await asyncio.sleep(self._max_wait)
            task, late, work = self._take()
            if not work:
                event.clear()
                if self._closing and not self._pending:
                    return
                continue
            texts = [t for job, a, b in work for t in job.texts[a:b]]
            n_tokens = sum(sum(job.tokens[a:b]) for job, a, b in work)
            started = time.perf_counter()
            try:
                vectors = await loop.run_in_executor(executor, self._forward, texts, task, late)
            except Exception as exc:  # the pass failed: every request in it gets the error
                logger.exception("forward pass of %d texts failed", len(texts))
                self._fail(work, exc)
                continue
            self.passes += 1
            elapsed = max(time.perf_counter() - started, 1e-6)
            self._recent_tokens = 0.8 * self._recent_tokens + n_tokens
            self._recent_seconds = 0.8 * self._recent_seconds + elapsed
            self._tokens_per_s = self._recent_tokens / self._recent_seconds
            self._deliver(work, vectors)

    def _fail(self, work: list[tuple[_Job, int, int]], exc: Exception) -> None:
        """A forward pass failed: every request with texts in it gets the error."""
        for job, _, _ in work:
            if not job.future.done():
                job.future.set_exception(exc)
            if job in self._pending:
                self._pending.remove(job)

    def _deliver(self, work: list[tuple[_Job, int, int]], vectors: npt.NDArray[np.float32]) -> None:
        """Copy a pass's rows into their requests; a request with all its rows is answered."""
        row = 0
        for job, a, b in work:
            count = b - a
            if job.future.done():
                row += count
                continue
            if job.out is None:
                job.out = np.empty((len(job.texts), vectors.shape[1]), dtype=np.float32)
            job.out[a:b] = vectors[row : row + count]
            row += count
            job.done += count
            done_tokens = sum(job.tokens[a:b])
            if job.remaining_tokens >= 0:
                job.remaining_tokens -= done_tokens
                self._queued_tokens -= done_tokens
            if job.done == len(job.texts):
                job.future.set_result(job.out)
