"""``JinaAPIProvider``'s sending: a call's planned batches over threads (sync) or workers (async).

Each batch goes through the retrier (``_retry``) on the provider's clients; a batch larger than
the budget learned meanwhile is sent in pieces, and one failed batch stops the call's others.
The vectors land in one array in input order; usage is summed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

import httpx
import numpy as np
import numpy.typing as npt

from ._api_clients import HTTPClients
from ._api_plan import RequestPlanner, _Batch
from ._provider import EmbedRequest
from ._retry import Retrier, Sent
from ._transport import asend, send
from ._types import Embeddings, Usage
from ._wire import EMBEDDINGS_PATH

__all__ = ["BatchSending"]


class BatchSending:
    """The sending half of :class:`JinaAPIProvider`: its ``_embed`` and ``_aembed``.

    A mixin: it uses the provider's parts declared below (set by the provider's constructor).
    """

    _base_url: str
    _model: str
    _max_concurrency: int
    _planner: RequestPlanner
    _clients: HTTPClients
    _retry: Retrier
    _serial: threading.Lock
    _sleep: Callable[[float], None]  # tests replace it
    _asleep: Callable[[float], Awaitable[None]]

    if TYPE_CHECKING:  # the provider's own (the key, the wire format, the model's size)

        def _headers(self) -> dict[str, str]: ...

        def _body(self, request: EmbedRequest, batch: _Batch) -> bytes: ...

        def _result(
            self, response: httpx.Response, request: EmbedRequest, batch: _Batch
        ) -> tuple[npt.NDArray[np.float32], int]: ...

    # -- sync I/O -----------------------------------------------------------------------------

    def _pause(self, seconds: float, abort: threading.Event | None) -> None:
        if abort is not None and self._sleep is time.sleep:
            abort.wait(seconds)  # wakes at once when another batch of the call failed
        else:
            self._sleep(seconds)

    def _send(
        self,
        request: EmbedRequest,
        batch: _Batch,
        abort: threading.Event | None = None,
        call_deadline: float | None = None,
    ) -> Sent:
        pieces = self._planner.split(request, batch)
        if pieces is not None:  # the budget learned meanwhile is smaller: send it in pieces
            return self._send_pieces(request, pieces, abort, call_deadline)
        client = self._clients.get_client()
        url = self._base_url + EMBEDDINGS_PATH
        content = self._body(request, batch)
        headers = self._headers()

        def split() -> Sent | None:
            pieces = self._planner.split(request, batch)
            if pieces is None:
                return None
            return self._send_pieces(request, pieces, abort, call_deadline)

        def post(end: float) -> httpx.Response:
            return send(
                client,
                "POST",
                url,
                content=content,
                headers=headers,
                end=end,
                bounded=self._clients.bounded,
            )

        return self._retry.run(
            tokens=batch.tokens,
            split=split,
            post=post,
            parse=lambda response: self._result(response, request, batch),
            serial_lock=self._serial,
            pause=self._pause,
            abort=abort,
            call_deadline=call_deadline,
        )

    def _send_pieces(
        self,
        request: EmbedRequest,
        pieces: list[_Batch],
        abort: threading.Event | None,
        call_deadline: float | None,
    ) -> Sent:
        parts = [self._send(request, p, abort, call_deadline) for p in pieces]
        return np.concatenate([v for v, _ in parts]), sum(t for _, t in parts)

    def _embed(self, request: EmbedRequest) -> Embeddings:
        batches = self._planner.plan(request)
        self._headers()  # a missing key fails here, before any request
        out = np.empty((len(request.texts), request.dimensions), dtype=np.float32)
        total = 0
        call_deadline = self._retry.call_deadline()
        if len(batches) == 1:
            vectors, total = self._send(request, batches[0], None, call_deadline)
            out[:] = vectors
        else:
            workers = min(self._max_concurrency, len(batches))
            abort = threading.Event()
            with ThreadPoolExecutor(workers, thread_name_prefix="jv3-api") as pool:
                futures: list[Future[tuple[npt.NDArray[np.float32], int]]] = [
                    pool.submit(self._send, request, b, abort, call_deadline) for b in batches
                ]
                try:
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    failed = [f.exception() for f in done if f.exception() is not None]
                    if failed:
                        raise failed[0]  # type: ignore[misc]
                except BaseException:
                    abort.set()  # the other batches stop at their next step
                    for f in futures:
                        f.cancel()
                    raise
                for batch, future in zip(batches, futures, strict=True):
                    vectors, tokens = future.result()
                    out[batch.start : batch.stop] = vectors
                    total += tokens
        return Embeddings(out, self._model, request.task, request.dimensions, Usage(total))

    # -- async I/O ----------------------------------------------------------------------------

    async def _asend(
        self, request: EmbedRequest, batch: _Batch, call_deadline: float | None = None
    ) -> Sent:
        pieces = self._planner.split(request, batch)
        if pieces is not None:
            return await self._asend_pieces(request, pieces, call_deadline)
        client, serial_lock = self._clients.get_aclient()
        url = self._base_url + EMBEDDINGS_PATH
        content = self._body(request, batch)
        headers = self._headers()

        async def split() -> Sent | None:
            pieces = self._planner.split(request, batch)
            if pieces is None:
                return None
            return await self._asend_pieces(request, pieces, call_deadline)

        async def post(end: float) -> httpx.Response:
            return await asend(client, "POST", url, content=content, headers=headers, end=end)

        async def sleep(seconds: float) -> None:
            await self._asleep(seconds)  # read at each wait (tests replace it)

        return await self._retry.arun(
            tokens=batch.tokens,
            split=split,
            post=post,
            parse=lambda response: self._result(response, request, batch),
            serial_lock=serial_lock,
            sleep=sleep,
            call_deadline=call_deadline,
        )

    async def _asend_pieces(
        self, request: EmbedRequest, pieces: list[_Batch], call_deadline: float | None
    ) -> Sent:
        parts = [await self._asend(request, p, call_deadline) for p in pieces]
        return np.concatenate([v for v, _ in parts]), sum(t for _, t in parts)

    async def _aembed(self, request: EmbedRequest) -> Embeddings:
        batches = self._planner.plan(request)
        self._headers()
        out = np.empty((len(request.texts), request.dimensions), dtype=np.float32)
        tokens = [0] * len(batches)
        pending = iter(range(len(batches)))
        call_deadline = self._retry.call_deadline()

        async def worker() -> None:
            for i in pending:  # one shared iterator: each batch is taken by one worker
                batch = batches[i]
                vectors, tokens[i] = await self._asend(request, batch, call_deadline)
                out[batch.start : batch.stop] = vectors

        # At most max_concurrency workers (and the provider-wide slots across calls).
        workers = [
            asyncio.ensure_future(worker()) for _ in range(min(self._max_concurrency, len(batches)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        total = sum(tokens)
        return Embeddings(out, self._model, request.task, request.dimensions, Usage(total))
