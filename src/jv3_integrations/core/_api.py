"""``JinaAPIProvider``: Jina's embedding models through Jina's HTTP API or a compatible server.

The provider's one job: plan the requests of a call (batches by items and by estimated
tokens, a late-chunking document in one request, what the model can do checked first), send
them through the transport, and check and decode every answer (count, indexes, sizes, norms)
without ever showing the key. The rest lives beside it: ``_transport`` (deadlines that cover
every byte, the slots bounding requests in flight, retry delays), ``_budget`` (the key's
limits learned from headers and 429 bodies: request sizes, pacing, AIMD concurrency),
``_discovery`` (``/v1/models``, the tokenizer file) and ``_models`` (each model's facts).
Sync and async paths mirror each other over the I/O-free wire code in ``_wire.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt

from ._budget import RateBudget, RateLimits
from ._discovery import find_tokenizer, parse_models
from ._errors import (
    APIError,
    APIResponseError,
    ConfigurationError,
    InputError,
)
from ._models import MODELS, model_info
from ._provider import BaseProvider, EmbedRequest
from ._retry import CALL_DEADLINE, Retrier, Sent
from ._transport import asend, new_client, send
from ._types import JINA_EMBEDDINGS_V3, Embeddings, ModelInfo, Task, TaskLike, TokenCount, Usage
from ._validate import check_int
from ._wire import (
    DEFAULT_BASE_URL,
    EMBEDDINGS_PATH,
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

DEFAULT_MAX_BATCH_TOKENS: Final = 131_072
DEFAULT_MAX_CONCURRENCY: Final = 8
START_CONCURRENCY: Final = 4  # requests in flight before the server said anything
_MIN_SPLIT: Final = 64
_PROBE_TIMEOUT: Final = 10.0  # seconds per GET /v1/models attempt, at most
_WIRE_FORMATS: Final = ("float", "base64")
_USER_AGENT: Final = "jv3-integrations"


def _is_official(base_url: str) -> bool:
    return httpx.URL(base_url).host == httpx.URL(DEFAULT_BASE_URL).host


def _normalize_base_url(base_url: str) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        shown = safe_url(base_url) if isinstance(base_url, str) else repr(base_url)
        raise ConfigurationError(
            f"base_url must be an http(s):// URL, e.g. {DEFAULT_BASE_URL!r}, got {shown!r}"
        )
    parts = urlsplit(base_url.strip())
    if "@" in parts.netloc or parts.query or parts.fragment:
        # Credentials in a URL end up in logs (httpx logs every request URL), reprs, pickles
        # and error messages; refuse them, naming only the parts that are safe to show.
        raise ConfigurationError(
            f"base_url {safe_url(base_url)!r} carries a user/password, a query string or a "
            "fragment; give the server's plain URL and pass the key with api_key= (or "
            "JINA_API_KEY; --api-key / JV3_SERVER_API_KEY on the server side)"
        )
    url = base_url.strip().rstrip("/")
    for suffix in (EMBEDDINGS_PATH, "/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def safe_url(url: str) -> str:
    """``url`` as it may be shown: scheme, host, port and path; no user, password or query."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme:
        return "<not a URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class _Batch:
    """One planned request: a contiguous slice of the call's texts."""

    start: int
    stop: int
    tokens: int
    truncate: bool


def _model_info(model: str, *, official: bool) -> ModelInfo:
    if model in MODELS:
        return MODELS[model]
    if official:
        return model_info(model)  # raises, naming the models Jina's API has
    # a compatible server may name its jina-embeddings-v3 otherwise
    return dataclasses.replace(JINA_EMBEDDINGS_V3, name=model, local=False)


def _check_times(
    *,
    timeout: float,
    total_timeout: float | None,
    backoff_base: float,
    backoff_max: float,
    rate_limit_pause: float,
) -> None:
    """The constructor's durations: finite numbers >= 0 (``timeout`` > 0, ``total_timeout``
    > 0 or None)."""
    for name, value in (
        ("timeout", timeout),
        ("backoff_base", backoff_base),
        ("backoff_max", backoff_max),
        ("rate_limit_pause", rate_limit_pause),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if not math.isfinite(value):
            raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if timeout <= 0:
        raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
    if total_timeout is not None and (
        isinstance(total_timeout, bool)
        or not isinstance(total_timeout, (int, float))
        or not 0 < total_timeout < math.inf
    ):
        raise ConfigurationError(
            f"total_timeout must be a number of seconds > 0 or None, got {total_timeout!r}"
        )


class JinaAPIProvider(BaseProvider):
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
            131,072, or a quarter of the key's learned per-minute token budget if smaller; a
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
        self._max_batch_tokens = max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS
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
        self._tokenizer_path = None if tokenizer_file is None else Path(tokenizer_file)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = http_client
        self._owns_client = http_client is None
        self._bounded = False  # whether self._client bounds every byte itself (new_client)
        self._aclient: httpx.AsyncClient | None = async_http_client
        self._owns_aclient = async_http_client is None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._aserial: asyncio.Lock | None = None
        self._serial = threading.Lock()
        self._aslots_loop: asyncio.AbstractEventLoop | None = None
        self._ssl_context: ssl.SSLContext | None = None
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

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self._max_concurrency + 2,
            max_keepalive_connections=self._max_concurrency + 2,
        )

    def _tls(self) -> ssl.SSLContext:
        # One TLS context per provider: building one costs ~0.2 s, and async code run with
        # asyncio.run() needs a fresh AsyncClient per event loop.
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client, self._bounded = new_client(
                    timeout=self._timeout, limits=self._limits(), ssl_context=self._tls()
                )
            return self._client

    def _new_aclient(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout), limits=self._limits(), verify=self._tls()
        )

    def _get_aclient(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if self._owns_aclient and (self._aclient is None or self._aclient_loop is not loop):
            # An AsyncClient is bound to its event loop: a new loop (asyncio.run) needs a new one.
            self._aclient = self._new_aclient()
            self._aclient_loop = loop
        client = self._aclient
        if client is None:  # closed while in use: start afresh on this loop
            client = self._aclient = self._new_aclient()
            self._aclient_loop = loop
        if self._aserial is None or self._aslots_loop is not loop:
            self._aserial = asyncio.Lock()
            self._aslots_loop = loop
        return client, self._aserial

    def close(self) -> None:
        """Close the HTTP clients this provider created (injected clients stay open)."""
        client: httpx.Client | None = None
        with self._lock:
            if self._owns_client:
                client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._owns_aclient and self._aclient is not None:
            aclient, self._aclient = self._aclient, None
            loop = self._aclient_loop
            self._aclient_loop = None
            if loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(aclient.aclose())

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._owns_aclient and self._aclient is not None:
            aclient, self._aclient = self._aclient, None
            same_loop = self._aclient_loop is asyncio.get_running_loop()
            self._aclient_loop = None
            if same_loop:
                await aclient.aclose()
        self.close()

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
        client = self._get_client()
        where = self._base_url + MODELS_PATH
        for attempt in range(self._max_retries + 1):
            try:
                response = send(
                    client,
                    "GET",
                    where,
                    headers=self._headers(),
                    end=self._retry.probe_deadline(call_deadline, _PROBE_TIMEOUT),
                    bounded=self._bounded,
                )
                return self._parse_models(response)
            except httpx.HTTPError as exc:
                error: APIError = self._retry.network_error(exc)
            except APIError as exc:
                error = exc
            self._sleep(self._retry.probe_failed(attempt, error, call_deadline, where))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _adiscover(self, call_deadline: float | None) -> None:
        client, _ = self._get_aclient()
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
        task = self._model_task(task)
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
        task = self._model_task(task)
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

    # -- what the model can do (pure) -------------------------------------------------------

    def _model_task(self, task: TaskLike) -> TaskLike:
        """``task`` as a :class:`Task`, taking this model's own names (v5's ``clustering``)."""
        if isinstance(task, str) and not isinstance(task, Task):
            for member, wire in self._info.wire_task_names:
                if task == wire:
                    return member
            if task in self._info.api_only_tasks:
                raise InputError(
                    f"{self._model}'s task {task!r} is offered by Jina's API but not by this "
                    "client yet; use one of "
                    + ", ".join(repr(self._info.wire_task(t)) for t in self._info.tasks)
                )
        return task

    def _check_model(self, request: EmbedRequest) -> None:
        """Refuse, before any request, what the model cannot do."""
        info = self._info
        if request.task is not None and request.task not in info.tasks:
            names = ", ".join(repr(info.wire_task(t)) for t in info.tasks)
            raise InputError(
                f"{info.name} has no task {request.task.value!r}; it takes {names} (or None)"
            )
        if request.late_chunking and not info.late_chunking:
            raise InputError(
                f"{info.name} does not offer late_chunking through Jina's API; embed without "
                "it, or use jina-embeddings-v3 or jina-embeddings-v4 for late chunking"
            )
        if not request.normalized and not info.normalized_option:
            raise InputError(
                f"{info.name} takes no normalized= option (its vectors always come back "
                "normalized); call without normalized=False"
            )

    # -- planning (pure) ----------------------------------------------------------------------

    def _token_cap(self) -> int:
        """Most estimated tokens per request now: the option, within what was learned."""
        if self._batch_tokens_option is not None:
            whole = self._budget.window_cap()
            return self._max_batch_tokens if whole is None else min(self._max_batch_tokens, whole)
        learned = self._budget.request_cap()
        return self._max_batch_tokens if learned is None else min(self._max_batch_tokens, learned)

    def _estimates(self, request: EmbedRequest, start: int, stop: int) -> list[int]:
        out = [estimate_tokens(t) for t in request.texts[start:stop]]
        if request.task is not None and start == 0 and stop > 0:
            out[0] = estimate_tokens(request.texts[0], task=request.task)
        return out

    def _plan(self, request: EmbedRequest) -> list[_Batch]:
        self._check_model(request)
        texts = request.texts
        max_tokens = self._info.max_tokens
        estimates = self._estimates(request, 0, len(texts))
        if request.late_chunking:
            total = sum(estimates) - 2 * (len(texts) - 1)
            if len(texts) > MAX_INPUTS:
                raise InputError(
                    f"late_chunking sends one document in one request, but it has {len(texts)} "
                    f"chunks and the API takes at most {MAX_INPUTS}; use fewer, larger chunks, "
                    "or LocalProvider for long late chunking"
                )
            if total > max_tokens:
                raise InputError(
                    f"late_chunking sends all {len(texts)} texts as one document in ONE request, "
                    f"but they come to about {total} tokens (conservative estimate) and the API "
                    f"takes at most {max_tokens} per late-chunking request; split the document "
                    "into smaller documents, or use LocalProvider, whose long late chunking "
                    "handles documents of any length"
                )
            self._check_fits(total, "this late-chunking document (sent as one request)")
            return [_Batch(0, len(texts), total, False)]
        n = len(texts)
        workers = self._budget.slots.limit
        per_round = workers * self._max_batch_items
        rounds = math.ceil(n / per_round)
        target = math.ceil(n / (workers * rounds))
        target = min(self._max_batch_items, max(_MIN_SPLIT, target))
        target = math.ceil(n / math.ceil(n / target))
        return self._pack(estimates, 0, target, self._token_cap())

    def _pack(self, estimates: list[int], offset: int, items: int, cap: int) -> list[_Batch]:
        """Consecutive batches of at most ``items`` texts and ``cap`` estimated tokens."""
        batches: list[_Batch] = []
        start = tokens = 0
        long_text = False
        for i, full in enumerate(estimates):
            self._check_fits(full, f"text {offset + i}")
            if i > start and (i - start >= items or tokens + full > cap):
                batches.append(_Batch(offset + start, offset + i, tokens, long_text))
                start, tokens, long_text = i, 0, False
            tokens += full
            long_text = long_text or (self._truncate and full > self._info.max_tokens)
        batches.append(_Batch(offset + start, offset + len(estimates), tokens, long_text))
        return batches

    def _check_fits(self, estimate: int, what: str) -> None:
        """Refuse what can never pass the key's learned per-minute token budget."""
        whole = self._budget.window_cap()
        if whole is None or estimate <= whole:
            return
        if self._truncate and what.startswith("text ") and whole >= self._info.max_tokens:
            return  # the server clips it to MAX_TOKENS, which fits
        limits = self._budget.limits()
        raise InputError(
            f"{what} has about {estimate:,} tokens (conservative estimate), more than this "
            f"API key allows per {limits.window_s:g} s ({limits.tokens_per_window:,} tokens, "
            "as the server said), so no retry could pass: split it into smaller texts, or "
            "use a key with a larger token budget"
        )

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

    def _split(self, request: EmbedRequest, batch: _Batch) -> list[_Batch] | None:
        """``batch`` cut to what the learned budget allows now (``None``: it fits)."""
        cap = self._token_cap()
        if batch.tokens <= cap or request.late_chunking:
            if request.late_chunking:
                self._check_fits(batch.tokens, "this late-chunking document (one request)")
            return None
        estimates = self._estimates(request, batch.start, batch.stop)
        pieces = self._pack(estimates, batch.start, self._max_batch_items, cap)
        return pieces if len(pieces) > 1 else None

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
        pieces = self._split(request, batch)
        if pieces is not None:  # the budget learned meanwhile is smaller: send it in pieces
            return self._send_pieces(request, pieces, abort, call_deadline)
        client = self._get_client()
        url = self._base_url + EMBEDDINGS_PATH
        content = self._body(request, batch)
        headers = self._headers()

        def split() -> Sent | None:
            pieces = self._split(request, batch)
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
                bounded=self._bounded,
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
        batches = self._plan(request)
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
        pieces = self._split(request, batch)
        if pieces is not None:
            return await self._asend_pieces(request, pieces, call_deadline)
        client, serial_lock = self._get_aclient()
        url = self._base_url + EMBEDDINGS_PATH
        content = self._body(request, batch)
        headers = self._headers()

        async def split() -> Sent | None:
            pieces = self._split(request, batch)
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
        batches = self._plan(request)
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
