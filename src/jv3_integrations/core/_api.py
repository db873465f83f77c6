"""``JinaAPIProvider``: Jina's embedding models through Jina's HTTP API or a compatible server.

The provider's one job: plan the requests of a call (batches by items and by estimated
tokens, a late-chunking document in one request, what the model can do checked first), send
them through the transport, and check and decode every answer (count, indexes, sizes, norms)
without ever showing the key. This module holds its configuration, its description, the key,
the wire body and the reading of an answer; the rest lives beside it: ``_api_options`` (the
constructor's checks), ``_api_plan`` (the batches of a call), ``_api_send`` (sending them over
threads or async workers), ``_api_clients`` (the HTTP clients), ``_transport`` (deadlines
that cover every byte, the slots bounding requests in flight, retry delays), ``_budget`` (the
key's limits learned from headers and 429 bodies: request sizes, pacing, AIMD concurrency),
``_discovery`` (``/v1/models``, the tokenizer file) and ``_models`` (each model's facts).
Sync and async paths mirror each other over the I/O-free wire code in ``_wire.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import numpy.typing as npt

from ._api_clients import HTTPClients
from ._api_options import (
    _WIRE_FORMATS,
    DEFAULT_MAX_CONCURRENCY,
    START_CONCURRENCY,
    _check_times,
    _is_official,
    _model_info,
    _normalize_base_url,
)
from ._api_plan import RequestPlanner, _Batch
from ._api_send import BatchSending
from ._budget import RateBudget, RateLimits
from ._discovery import find_tokenizer, parse_models
from ._errors import (
    APIError,
    APIResponseError,
    ConfigurationError,
)
from ._provider import BaseProvider, EmbedRequest
from ._retry import CALL_DEADLINE, Retrier
from ._transport import asend, send
from ._types import Embeddings, ModelInfo, TaskLike, TokenCount
from ._validate import check_int
from ._wire import (
    DEFAULT_BASE_URL,
    MAX_INPUTS,
    MODEL_NAME,
    MODELS_PATH,
    build_request,
    error_from_response,
    estimate_tokens,
    parse_embeddings_response,
)

__all__ = ["JinaAPIProvider"]

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT: Final = 10.0  # seconds per GET /v1/models attempt, at most
_USER_AGENT: Final = "jv3-integrations"


class JinaAPIProvider(BatchSending, BaseProvider):
    """jina-embeddings-v3 through Jina's API or a compatible server (``jv3 serve``).

    Args:
        api_key: The Jina key; default ``$JINA_API_KEY``, read at the first call. A self-hosted
            ``base_url`` may run without a key (no ``Authorization`` header is sent).
        base_url: ``https://api.jina.ai`` or the root URL of a compatible server.
        model: The model name sent on the wire.
        dimensions: Default Matryoshka size (``None``: the model's full size).
        timeout: Seconds for each HTTP attempt, all of it: connecting, sending, and receiving
            the whole answer (a server dripping bytes does not stretch it).
        total_timeout: Seconds for a whole call, retries and their waits included
            (``None``: no bound beyond ``timeout`` per attempt and ``max_retries``).
        max_retries: Retries of a request after a 429, 5xx, timeout or connection error.
        max_concurrency: Most requests in flight at once for this provider instance, over all
            its calls, threads and event loops. Default: up to 8, starting at 4 and moving with
            the server's answers (halved on a concurrency 429, grown back while answers flow);
            a value given here is where it starts, and it never goes above it.
        max_batch_items: Texts per request (at most 2048, the API's limit).
        max_batch_tokens: Estimated tokens per request (see :meth:`estimate_tokens`). Default:
            131,072, or an eighth of the key's learned per-minute token budget if smaller (up
            to a quarter for a key that allows few requests per minute); a
            value given here is kept, within the whole learned budget (a request larger than
            the key's minute could never pass).
        wire_format: ``"float"`` or ``"base64"`` (a third of the bytes, same vectors).
        http_client: An ``httpx.Client`` to use (proxies, tests); never closed by us.
        async_http_client: An ``httpx.AsyncClient`` to use; never closed by us.
        truncate: Ask the server to clip texts that may exceed 8192 tokens (as the local model
            does) instead of failing; late-chunking requests are never truncated.
        max_dimensions: The model's full size; default 1024 for Jina's API, and for another
            ``base_url`` read once from its ``GET /v1/models``.
        backoff_base: First retry delay in seconds (doubled per attempt, with jitter).
        backoff_max: Largest retry delay in seconds.
        rate_limit_pause: Seconds to hold all requests when the server reports no budget left.
        tokenizer_file: The model's ``tokenizer.json`` on local disk, for the keyword vectors of
            hybrid search (default: ``$JV3_TOKENIZER``, else the Hugging Face cache's copy of
            ``jinaai/jina-embeddings-v3``, if any). No embedding call needs it.

    All arguments are keyword-only. What the provider learned of the key's limits is
    :attr:`rate_limits`.

    Raises:
        ConfigurationError: a constructor argument that cannot work (no I/O is done here).

    Example:
        >>> provider = JinaAPIProvider(dimensions=256)  # key from JINA_API_KEY  # doctest: +SKIP
        >>> provider.embed_documents(["Berlin is the capital of Germany."]).vectors.shape
        ... # doctest: +SKIP
        (1, 256)
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        model: str = MODEL_NAME,
        dimensions: int | None = None,
        timeout: float = 60.0,
        total_timeout: float | None = None,
        max_retries: int = 6,
        max_concurrency: int | None = None,
        max_batch_items: int = MAX_INPUTS,
        max_batch_tokens: int | None = None,
        wire_format: str = "float",
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        truncate: bool = True,
        max_dimensions: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rate_limit_pause: float = 1.0,
        tokenizer_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if api_key is not None and not isinstance(api_key, str):
            raise ConfigurationError(f"api_key must be a str or None, not {type(api_key).__name__}")
        self._api_key = (api_key or "").strip() or None  # read lazily, never shown
        self._base_url = _normalize_base_url(base_url)
        self._official = _is_official(self._base_url)
        if not isinstance(model, str) or not model:
            raise ConfigurationError("model must be a non-empty string, e.g. 'jina-embeddings-v3'")
        self._model = model
        self._info = _model_info(model, official=self._official)
        check_int("max_retries", max_retries, 0)
        if max_concurrency is not None:
            check_int("max_concurrency", max_concurrency, 1)
        check_int("max_batch_items", max_batch_items, 1, MAX_INPUTS)
        if max_batch_tokens is not None:
            check_int("max_batch_tokens", max_batch_tokens, 1)
        _check_times(
            timeout=timeout,
            total_timeout=total_timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            rate_limit_pause=rate_limit_pause,
        )
        self._total_timeout = None if total_timeout is None else float(total_timeout)
        if wire_format not in _WIRE_FORMATS:
            raise ConfigurationError(
                f"wire_format must be 'float' or 'base64', got {wire_format!r}"
            )
        if max_dimensions is not None:
            check_int("max_dimensions", max_dimensions, 1)
        elif self._official:
            max_dimensions = self._info.dim
        self._max_dims: int | None = max_dimensions
        if dimensions is not None:
            check_int("dimensions", dimensions, 1, max_dimensions)
        self._dimensions = dimensions
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._concurrency_option = max_concurrency
        self._max_concurrency = max_concurrency or DEFAULT_MAX_CONCURRENCY
        self._max_batch_items = max_batch_items
        self._batch_tokens_option = max_batch_tokens
        self._wire_format = wire_format
        self._truncate = bool(truncate)
        self._backoff_base = float(backoff_base)
        self._backoff_max = float(backoff_max)
        self._rate_limit_pause = float(rate_limit_pause)
        self._budget = RateBudget(
            max_concurrency=self._max_concurrency,
            start_concurrency=max_concurrency or min(START_CONCURRENCY, self._max_concurrency),
            pause=self._rate_limit_pause,
        )
        self._retry = Retrier(
            budget=self._budget,
            base_url=self._base_url,
            timeout=self._timeout,
            total_timeout=self._total_timeout,
            max_retries=max_retries,
            backoff_base=self._backoff_base,
            backoff_max=self._backoff_max,
        )
        self._planner = RequestPlanner(
            model=model,
            info=self._info,
            budget=self._budget,
            max_batch_items=max_batch_items,
            max_batch_tokens=max_batch_tokens,
            truncate=self._truncate,
        )
        self._tokenizer_path = None if tokenizer_file is None else Path(tokenizer_file)
        self._clients = HTTPClients(
            timeout=self._timeout,
            max_concurrency=self._max_concurrency,
            http_client=http_client,
            async_http_client=async_http_client,
        )
        self._serial = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep
        self._asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # -- description ----------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model name sent on the wire (``jina-embeddings-v3``)."""
        return self._model

    @property
    def model(self) -> str:
        """The model's name, as sent on the wire (same as :attr:`model_name`)."""
        return self._model

    @property
    def model_info(self) -> ModelInfo:
        """The model's facts: tasks, sizes, context length, late chunking (no I/O)."""
        return self._info

    @property
    def supports_late_chunking(self) -> bool:
        """Whether the model offers late chunking through the API (Jina's v5 models do not)."""
        return self._info.late_chunking

    @property
    def max_tokens(self) -> int:
        """The model's context length (8192 for v3 and v5-nano, 32768 for v4 and v5-small)."""
        return self._info.max_tokens

    @property
    def base_url(self) -> str:
        """The server's root URL (requests go to ``{base_url}/v1/embeddings``)."""
        return self._base_url

    @property
    def max_dimensions(self) -> int:
        """The model's full output size: 1024 for Jina's API; a self-hosted server is asked.

        The answer of ``GET /v1/models`` is kept; a failed probe (after the usual retries of
        429/5xx/network errors) raises and is never replaced by a guess. The probe ends within
        ``timeout`` per attempt and ``total_timeout`` in all, however the server answers.

        Raises:
            APIError: the server could not tell (pass ``max_dimensions=`` to skip asking).
        """
        if self._max_dims is None:
            self._max_dims = self._discover(self._retry.call_deadline())
        return self._max_dims

    @property
    def max_concurrency(self) -> int:
        """The most requests ever in flight at once (see :attr:`rate_limits` for the current)."""
        return self._max_concurrency

    @property
    def rate_limits(self) -> RateLimits:
        """What this provider learned of its key's limits so far (read-only snapshot).

        Learned from the ``X-RateLimit-Remaining-*`` headers and the 429 bodies of the server's
        answers, shared by every thread and event loop using this provider; ``None`` fields
        are not learned yet. ``concurrency`` is the number of requests allowed in flight now.
        """
        return self._budget.limits()

    def count_tokens(
        self, texts: Sequence[str], *, task: TaskLike = None, late_chunking: bool = False
    ) -> TokenCount:
        """Conservative token estimates (:meth:`estimate_tokens`; ``exact=False``, no I/O)."""
        return super().count_tokens(texts, task=task, late_chunking=late_chunking)

    def estimate_tokens(self, text: str, *, task: TaskLike = None) -> int:
        """A conservative token estimate for ``text`` (no tokenizer, no network)."""
        from ._types import resolve_task

        return estimate_tokens(text, task=resolve_task(task))

    def __repr__(self) -> str:
        return (
            f"JinaAPIProvider(base_url={self._base_url!r}, model={self._model!r}, "
            f"dimensions={self._dimensions!r}, wire_format={self._wire_format!r}, "
            f"api_key={'***' if self._resolve_key() else None})"
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the configuration only: never the key, never a client or a lock."""
        return {
            "base_url": self._base_url,
            "model": self._model,
            "dimensions": self._dimensions,
            "timeout": self._timeout,
            "total_timeout": self._total_timeout,
            "max_retries": self._max_retries,
            "max_concurrency": self._concurrency_option,
            "max_batch_items": self._max_batch_items,
            "max_batch_tokens": self._batch_tokens_option,
            "wire_format": self._wire_format,
            "truncate": self._truncate,
            "max_dimensions": self._max_dims,
            "backoff_base": self._backoff_base,
            "backoff_max": self._backoff_max,
            "rate_limit_pause": self._rate_limit_pause,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # -- key and clients --------------------------------------------------------------------

    def _resolve_key(self) -> str | None:
        if self._api_key:
            return self._api_key
        env = os.environ.get("JINA_API_KEY", "").strip()
        return env or None

    def _headers(self) -> dict[str, str]:
        key = self._resolve_key()
        if key is None and self._official:
            raise ConfigurationError(
                "no Jina API key: pass JinaAPIProvider(api_key=...) or set the JINA_API_KEY "
                "environment variable (get a key at https://jina.ai/api-dashboard/key-manager)"
            )
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _redact(self) -> tuple[str, ...]:
        key = self._resolve_key()
        return (key,) if key else ()

    def close(self) -> None:
        """Close the HTTP clients this provider created (injected clients stay open)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self._clients.aclose()

    def tokenizer_file(self) -> Path:
        """The model's ``tokenizer.json`` on local disk (hybrid search's keyword vectors).

        Looked up without any network call: the ``tokenizer_file`` argument, else
        ``$JV3_TOKENIZER``, else the Hugging Face cache's copy of the model.

        Raises:
            ConfigurationError: none is available; the message says how to get one.
        """
        return find_tokenizer(self._tokenizer_path, model=self._model, hub_id=self._info.hub_id)

    # -- model size discovery (self-hosted servers only) ---------------------------------------

    def _parse_models(self, response: httpx.Response) -> int:
        return parse_models(
            response,
            model=self._model,
            default=self._info.dim,  # a server without the list serves the model's full size
            where=self._base_url + MODELS_PATH,
            redact=self._redact(),
        )

    def _discover(self, call_deadline: float | None) -> int:
        client = self._clients.get_client()
        where = self._base_url + MODELS_PATH
        for attempt in range(self._max_retries + 1):
            try:
                response = send(
                    client,
                    "GET",
                    where,
                    headers=self._headers(),
                    end=self._retry.probe_deadline(call_deadline, _PROBE_TIMEOUT),
                    bounded=self._clients.bounded,
                )
                return self._parse_models(response)
            except httpx.HTTPError as exc:
                error: APIError = self._retry.network_error(exc)
            except APIError as exc:
                error = exc
            self._sleep(self._retry.probe_failed(attempt, error, call_deadline, where))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _adiscover(self, call_deadline: float | None) -> None:
        client, _ = self._clients.get_aclient()
        where = self._base_url + MODELS_PATH
        for attempt in range(self._max_retries + 1):
            try:
                response = await asend(
                    client,
                    "GET",
                    where,
                    headers=self._headers(),
                    end=self._retry.probe_deadline(call_deadline, _PROBE_TIMEOUT),
                )
                self._max_dims = self._parse_models(response)
                return
            except httpx.HTTPError as exc:
                error: APIError = self._retry.network_error(exc)
            except APIError as exc:
                error = exc
            await self._asleep(self._retry.probe_failed(attempt, error, call_deadline, where))

    def embed(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Embed ``texts`` (see :meth:`BaseProvider.embed`); ``total_timeout`` bounds it all."""
        task = self._planner.model_task(task)
        token = CALL_DEADLINE.set(self._retry.call_deadline())
        try:
            if self._max_dims is None:
                self._max_dims = self._discover(CALL_DEADLINE.get())
            return super().embed(
                texts,
                task=task,
                dimensions=dimensions,
                normalized=normalized,
                late_chunking=late_chunking,
            )
        finally:
            CALL_DEADLINE.reset(token)

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Async twin of :meth:`embed` (same arguments, same result)."""
        task = self._planner.model_task(task)
        token = CALL_DEADLINE.set(self._retry.call_deadline())
        try:
            if self._max_dims is None:
                await self._adiscover(CALL_DEADLINE.get())
            return await super().aembed(
                texts,
                task=task,
                dimensions=dimensions,
                normalized=normalized,
                late_chunking=late_chunking,
            )
        finally:
            CALL_DEADLINE.reset(token)

    def _body(self, request: EmbedRequest, batch: _Batch) -> bytes:
        full = self.max_dimensions
        body = build_request(
            request.texts[batch.start : batch.stop],
            model=self._model,
            task=request.task,
            dimensions=None if request.dimensions == full else request.dimensions,
            normalized=request.normalized,
            late_chunking=request.late_chunking,
            embedding_type=self._wire_format,
            truncate=batch.truncate,
        )
        if request.task is not None:
            body["task"] = self._info.wire_task(request.task)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _result(
        self, response: httpx.Response, request: EmbedRequest, batch: _Batch
    ) -> tuple[npt.NDArray[np.float32], int]:
        if response.status_code >= 300:
            self._budget.observe(response.headers)
            raise error_from_response(
                response.status_code, response.headers, response.content, redact=self._redact()
            )
        try:
            payload = json.loads(response.content)
        except ValueError:
            raise APIResponseError(
                f"the server answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from None
        try:
            return parse_embeddings_response(
                payload,
                n_items=batch.stop - batch.start,
                dimensions=request.dimensions,
                embedding_type=self._wire_format,
                normalized=request.normalized,
            )
        except APIResponseError as exc:
            exc.status = response.status_code
            exc.request_id = response.headers.get("x-request-id")
            raise
