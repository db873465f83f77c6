"""``JinaAPIProvider``: jina-embeddings-v3 through Jina's HTTP API or any compatible server.

Sync and async paths mirror each other over the I/O-free wire code in ``_wire.py``: plan the
batches, build each body, send it with retries, check and decode the answer. What it does that
the existing Jina clients do not: retries 429/5xx/timeouts/resets with backoff honouring
``Retry-After`` and the ``X-RateLimit-Remaining-*`` headers, bounded concurrency in sync and
async code, batches by items and by an estimated token budget, keeps a late-chunking document
in one request, checks every answer (count, indexes, sizes) and never leaks the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt

from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    ConfigurationError,
    InputError,
)
from ._provider import BaseProvider, EmbedRequest
from ._types import JINA_EMBEDDINGS_V3, Embeddings, TaskLike, TokenCount, Usage
from ._validate import check_int
from ._wire import (
    DEFAULT_BASE_URL,
    EMBEDDINGS_PATH,
    MAX_INPUTS,
    MAX_TOKENS,
    MODEL_NAME,
    MODELS_PATH,
    RETRYABLE_STATUS,
    build_request,
    error_from_response,
    estimate_tokens,
    parse_embeddings_response,
    parse_rate_limit_remaining,
    parse_retry_after,
)

__all__ = ["JinaAPIProvider"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_TOKENS: Final = 131_072
_MIN_SPLIT: Final = 64
_PER_MINUTE_CODES: Final = frozenset({"RATE_TOKEN_LIMIT_EXCEEDED", "RATE_REQUEST_LIMIT_EXCEEDED"})
_MAX_RETRY_AFTER: Final = 120.0  # seconds; a longer Retry-After is clipped to this
_BUDGET_WINDOW: Final = 60.0  # seconds over which a per-minute budget frees
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


class _Slots:
    """The provider's bound on requests in flight, shared by threads and event loops.

    Sync callers block their thread; async callers wait on a future of their own loop (the
    loop is never blocked). A released slot is handed to the oldest waiter, sync or async.
    """

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._free = n
        self._waiters: deque[threading.Event | tuple[asyncio.AbstractEventLoop, Any]] = deque()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                event = None
            else:
                event = threading.Event()
                self._waiters.append(event)
        if event is not None:
            event.wait()  # set by release(): the slot was handed to us
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
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
            # release() handed us the slot already: give it on (unless _hand will, seeing the
            # cancelled future)
            if waiter[1].done() and not waiter[1].cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    return
                loop, future = waiter
                try:
                    loop.call_soon_threadsafe(self._hand, future)
                    return
                except RuntimeError:  # that loop is closed: its waiter is gone
                    continue
            self._free += 1

    def _hand(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled meanwhile: pass the slot on
            self.release()
        else:
            future.set_result(None)


@dataclass(frozen=True)
class _Batch:
    """One planned request: a contiguous slice of the call's texts."""

    start: int
    stop: int
    tokens: int
    truncate: bool


class _Aborted(Exception):
    """Another batch of the same call failed: this one stops (never reaches the caller)."""


class _RateGate:
    """Shared pause for every request of one provider: after a 429 or an exhausted budget."""

    def __init__(self, pause: float) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._tokens_left: int | None = None
        self._pause = pause
        self._serial_until = 0.0

    def start_serial(self, seconds: float) -> None:
        """A per-minute budget is spent: one request at a time for ``seconds``."""
        with self._lock:
            self._serial_until = max(self._serial_until, time.monotonic() + seconds)

    def serial(self) -> bool:
        """Whether requests go one at a time now (see :meth:`start_serial`)."""
        return time.monotonic() < self._serial_until

    def wait_time(self, tokens: int) -> float:
        now = time.monotonic()
        with self._lock:
            delay = self._resume_at - now
            if self._tokens_left is not None and tokens > self._tokens_left:
                # Our next request would overdraw the reported token budget: give it time.
                self._tokens_left = None
                self._resume_at = max(self._resume_at, now + self._pause)
                delay = max(delay, self._pause)
            return max(0.0, delay)

    def block(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def observe(self, headers: httpx.Headers) -> None:
        requests_left, tokens_left = parse_rate_limit_remaining(headers)
        with self._lock:
            if tokens_left is not None:
                self._tokens_left = tokens_left
        if requests_left == 0 or (tokens_left is not None and tokens_left <= 0):
            wait = parse_retry_after(headers.get("retry-after"))
            self.block(self._pause if wait is None else wait)


class _HostNotFoundError(APIConnectionError):
    """The host name does not resolve: final, never retried (still an APIConnectionError)."""


def _name_not_resolved(exc: BaseException) -> bool:
    """Whether a connection error comes from a failed DNS lookup (``socket.gaierror``)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, socket.gaierror):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


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
        max_concurrency: Requests in flight at once for this provider instance: over all its
            calls, threads and event loops, sync and async together.
        max_batch_items: Texts per request (at most 2048, the API's limit).
        max_batch_tokens: Estimated tokens per request (see :meth:`estimate_tokens`).
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
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = MODEL_NAME,
        dimensions: int | None = None,
        timeout: float = 60.0,
        total_timeout: float | None = None,
        max_retries: int = 6,
        max_concurrency: int = 4,
        max_batch_items: int = MAX_INPUTS,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
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
        check_int("max_retries", max_retries, 0)
        check_int("max_concurrency", max_concurrency, 1)
        check_int("max_batch_items", max_batch_items, 1, MAX_INPUTS)
        check_int("max_batch_tokens", max_batch_tokens, 1)
        for name, value in (
            ("timeout", timeout),
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("rate_limit_pause", rate_limit_pause),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        if total_timeout is not None and (
            isinstance(total_timeout, bool)
            or not isinstance(total_timeout, (int, float))
            or total_timeout <= 0
        ):
            raise ConfigurationError(
                f"total_timeout must be a number of seconds > 0 or None, got {total_timeout!r}"
            )
        self._total_timeout = None if total_timeout is None else float(total_timeout)
        if wire_format not in _WIRE_FORMATS:
            raise ConfigurationError(
                f"wire_format must be 'float' or 'base64', got {wire_format!r}"
            )
        if max_dimensions is not None:
            check_int("max_dimensions", max_dimensions, 1)
        elif self._official:
            max_dimensions = JINA_EMBEDDINGS_V3.dim
        self._max_dims: int | None = max_dimensions
        if dimensions is not None:
            check_int("dimensions", dimensions, 1, max_dimensions)
        self._dimensions = dimensions
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._max_concurrency = max_concurrency
        self._max_batch_items = max_batch_items
        self._max_batch_tokens = max_batch_tokens
        self._wire_format = wire_format
        self._truncate = bool(truncate)
        self._backoff_base = float(backoff_base)
        self._backoff_max = float(backoff_max)
        self._gate = _RateGate(float(rate_limit_pause))
        self._tokenizer_path = None if tokenizer_file is None else Path(tokenizer_file)
        self._slots = _Slots(max_concurrency)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = http_client
        self._owns_client = http_client is None
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
    def base_url(self) -> str:
        """The server's root URL (requests go to ``{base_url}/v1/embeddings``)."""
        return self._base_url

    @property
    def max_dimensions(self) -> int:
        """The model's full output size: 1024 for Jina's API; a self-hosted server is asked.

        The answer of ``GET /v1/models`` is kept; a failed probe (after the usual retries of
        429/5xx/network errors) raises and is never replaced by a guess.

        Raises:
            APIError: the server could not tell (pass ``max_dimensions=`` to skip asking).
        """
        if self._max_dims is None:
            self._max_dims = self._discover(self._get_client())
        return self._max_dims

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once (the ``max_concurrency`` it was built with)."""
        return self._max_concurrency

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
            "max_concurrency": self._max_concurrency,
            "max_batch_items": self._max_batch_items,
            "max_batch_tokens": self._max_batch_tokens,
            "wire_format": self._wire_format,
            "truncate": self._truncate,
            "max_dimensions": self._max_dims,
            "backoff_base": self._backoff_base,
            "backoff_max": self._backoff_max,
            "rate_limit_pause": self._gate._pause,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(None, **state)  # type: ignore[misc]

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

    def _new_client_options(self) -> dict[str, Any]:
        # One TLS context per provider: building one costs ~0.2 s, and async code run with
        # asyncio.run() needs a fresh AsyncClient per event loop.
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return {
            "timeout": httpx.Timeout(self._timeout),
            "limits": self._limits(),
            "verify": self._ssl_context,
        }

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._new_client_options())
            return self._client

    def _get_aclient(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if self._owns_aclient and (self._aclient is None or self._aclient_loop is not loop):
            # An AsyncClient is bound to its event loop: a new loop (asyncio.run) needs a new one.
            self._aclient = httpx.AsyncClient(**self._new_client_options())
            self._aclient_loop = loop
        client = self._aclient
        if client is None:  # closed while in use: start afresh on this loop
            client = self._aclient = httpx.AsyncClient(**self._new_client_options())
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
        path = self._tokenizer_path
        if path is None and os.environ.get("JV3_TOKENIZER", "").strip():
            path = Path(os.environ["JV3_TOKENIZER"].strip())
        if path is None:
            path = _cached_tokenizer(JINA_EMBEDDINGS_V3.hub_id)
        if path is None or not path.is_file():
            where = f" ({path} is not a file)" if path is not None else ""
            raise ConfigurationError(
                f"hybrid search needs {self._model}'s tokenizer.json on this machine for its "
                f"keyword vectors{where}; download it once (huggingface-cli download "
                f"{JINA_EMBEDDINGS_V3.hub_id} tokenizer.json), then pass "
                "JinaAPIProvider(tokenizer_file=PATH) or set JV3_TOKENIZER=PATH"
            )
        return path

    # -- model size discovery (self-hosted servers only) ---------------------------------------

    def _parse_models(self, response: httpx.Response) -> int:
        """The model size from a ``/v1/models`` answer.

        A server without the endpoint (404/405) or whose list does not give the size serves
        the full-size model: 1024. Any other answer is no answer (never a guess).

        Raises:
            APIError: any other non-200 answer, or a body that is not the models list.
        """
        if response.status_code in (404, 405):
            return JINA_EMBEDDINGS_V3.dim
        if response.status_code != 200:
            raise error_from_response(
                response.status_code, response.headers, response.content, redact=self._redact()
            )
        try:
            data = response.json().get("data", [])
        except (ValueError, AttributeError):
            raise APIResponseError(
                f"GET {self._base_url}{MODELS_PATH} answered 200 with a body that is not the "
                "models list; pass max_dimensions= to the provider",
                status=200,
            ) from None
        for entry in data if isinstance(data, list) else []:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("id", ""))
            if name == self._model or name.endswith("/" + self._model):
                size = entry.get("max_output_length")
                if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                    return size
        return JINA_EMBEDDINGS_V3.dim

    def _probe_failed(self, attempt: int, error: APIError) -> float:
        """The delay before probing again, or raise ``error`` (with the fix) if it is final."""
        retryable = not isinstance(error, _HostNotFoundError) and (
            error.status is None or error.status in RETRYABLE_STATUS
        )
        if not retryable or attempt >= self._max_retries:
            error.args = (
                f"could not read the model size from {self._base_url}{MODELS_PATH}: {error} "
                "(pass max_dimensions= to the provider to skip asking)",
            )
            raise error
        return self._retry_delay(attempt, error, None)

    def _discover(self, client: httpx.Client) -> int:
        for attempt in range(self._max_retries + 1):
            try:
                response = client.get(
                    self._base_url + MODELS_PATH,
                    headers=self._headers(),
                    timeout=min(self._timeout, 10.0),
                )
                return self._parse_models(response)
            except httpx.HTTPError as exc:
                error: APIError = self._network_error(exc)
            except APIError as exc:
                error = exc
            self._sleep(self._probe_failed(attempt, error))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _adiscover(self) -> None:
        client, _ = self._get_aclient()
        for attempt in range(self._max_retries + 1):
            try:
                response = await client.get(
                    self._base_url + MODELS_PATH,
                    headers=self._headers(),
                    timeout=min(self._timeout, 10.0),
                )
                self._max_dims = self._parse_models(response)
                return
            except httpx.HTTPError as exc:
                error: APIError = self._network_error(exc)
            except APIError as exc:
                error = exc
            await self._asleep(self._probe_failed(attempt, error))

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
        if self._max_dims is None:
            await self._adiscover()
        return await super().aembed(
            texts,
            task=task,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )

    # -- planning (pure) ----------------------------------------------------------------------

    def _plan(self, request: EmbedRequest) -> list[_Batch]:
        texts = request.texts
        estimates = [estimate_tokens(t) - 2 for t in texts]
        if request.task is not None:
            estimates[0] = estimate_tokens(texts[0], task=request.task) - 2
        if request.late_chunking:
            total = sum(estimates) + 2
            if len(texts) > MAX_INPUTS:
                raise InputError(
                    f"late_chunking sends one document in one request, but it has {len(texts)} "
                    f"chunks and the API takes at most {MAX_INPUTS}; use fewer, larger chunks, "
                    "or LocalProvider for long late chunking"
                )
            if total > MAX_TOKENS:
                raise InputError(
                    f"late_chunking sends all {len(texts)} texts as one document in ONE request, "
                    f"but they come to about {total} tokens (conservative estimate) and the API "
                    f"takes at most {MAX_TOKENS} per late-chunking request; split the document "
                    "into smaller documents, or use LocalProvider, whose long late chunking "
                    "handles documents of any length"
                )
            return [_Batch(0, len(texts), total, False)]
        n = len(texts)
        per_round = self._max_concurrency * self._max_batch_items
        rounds = math.ceil(n / per_round)
        target = math.ceil(n / (self._max_concurrency * rounds))
        target = min(self._max_batch_items, max(_MIN_SPLIT, target))
        target = math.ceil(n / math.ceil(n / target))
        batches: list[_Batch] = []
        start = tokens = 0
        long_text = False
        for i, est in enumerate(estimates):
            full = est + 2
            if i > start and (i - start >= target or tokens + full > self._max_batch_tokens):
                batches.append(_Batch(start, i, tokens, long_text))
                start, tokens, long_text = i, 0, False
            tokens += full
            long_text = long_text or (self._truncate and full > MAX_TOKENS)
        batches.append(_Batch(start, n, tokens, long_text))
        return batches

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
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _result(
        self, response: httpx.Response, request: EmbedRequest, batch: _Batch
    ) -> tuple[npt.NDArray[np.float32], int]:
        self._gate.observe(response.headers)
        if response.status_code >= 300:
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

    def _retry_delay(self, attempt: int, error: APIError, response: httpx.Response | None) -> float:
        if response is not None:
            after = parse_retry_after(response.headers.get("retry-after"))
            if after is not None:
                return min(after, _MAX_RETRY_AFTER)
        if error.code in _PER_MINUTE_CODES:
            # A per-minute budget is spent: it frees over a 60 s window, so a retry in half a
            # second only burns an attempt. Start at 10x the base delay, allow up to 2x the cap
            # (defaults: 5, 10, 20, 40, 60, 60 s).
            ceiling = min(2 * self._backoff_max, 10 * self._backoff_base * (2.0**attempt))
        else:
            ceiling = min(self._backoff_max, self._backoff_base * (2.0**attempt))
        return ceiling * random.uniform(0.5, 1.0)

    def _give_up(self, attempt: int, error: APIError, response: httpx.Response | None) -> float:
        """Raise ``error`` if it is final; else return the delay before the next attempt."""
        retryable = error.status is None or error.status in RETRYABLE_STATUS
        final = isinstance(error, APIResponseError | _HostNotFoundError)
        if final or not retryable or attempt >= self._max_retries:
            raise error
        delay = self._retry_delay(attempt, error, response)
        if error.status == 429:
            # Every request of this provider waits (the gate), not just this one.
            self._gate.block(delay)
            delay = 0.0
            if error.code in _PER_MINUTE_CODES:
                # Until the window frees, only one request probes (and spends its retries);
                # the others wait their turn instead of burning theirs on more 429s.
                self._gate.start_serial(_BUDGET_WINDOW)
        logger.info(
            "embeddings request failed (%s); retry %d/%d in %.2f s",
            error.status or type(error).__name__,
            attempt + 1,
            self._max_retries,
            delay,
        )
        return delay

    def _network_error(self, exc: httpx.HTTPError) -> APIError:
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"the embeddings request to {self._base_url} timed out after {self._timeout} s "
                f"({type(exc).__name__}); raise timeout= or lower max_batch_items"
            )
        if _name_not_resolved(exc):
            # No DNS answer for the host (offline, or a typo): retrying for 45 s cannot help.
            host = httpx.URL(self._base_url).host
            return _HostNotFoundError(
                f"could not reach {self._base_url}: the host name {host!r} does not resolve "
                "(offline, or a typo in the URL)"
            )
        return APIConnectionError(
            f"could not reach {self._base_url}: {type(exc).__name__}: {exc}".rstrip(": ")
        )

    # -- sync I/O -----------------------------------------------------------------------------

    def _pause(self, seconds: float, abort: threading.Event | None) -> None:
        if abort is not None and self._sleep is time.sleep:
            abort.wait(seconds)  # wakes at once when another batch of the call failed
        else:
            self._sleep(seconds)

    def _attempt_deadline(self, call_deadline: float | None) -> float:
        deadline = time.monotonic() + self._timeout
        return deadline if call_deadline is None else min(deadline, call_deadline)

    def _call_deadline(self) -> float | None:
        return None if self._total_timeout is None else time.monotonic() + self._total_timeout

    def _check_call_deadline(self, call_deadline: float | None, error: APIError | None) -> None:
        if call_deadline is not None and time.monotonic() >= call_deadline:
            raise APITimeoutError(
                f"the embeddings call to {self._base_url} did not finish within total_timeout="
                f"{self._total_timeout:g} s (retries included)"
                + (f"; last error: {error}" if error is not None else "")
            )

    def _post(
        self, client: httpx.Client, url: str, content: bytes, headers: dict[str, str], end: float
    ) -> httpx.Response:
        """POST and read the whole answer before ``end`` (monotonic), however it trickles in."""
        left = end - time.monotonic()
        if left <= 0:
            raise httpx.TimeoutException("the attempt's deadline passed")
        with client.stream(
            "POST", url, content=content, headers=headers, timeout=httpx.Timeout(left)
        ) as streamed:
            if streamed.is_stream_consumed:  # already in memory (an in-process transport)
                streamed.read()
                return streamed
            body = bytearray()
            for chunk in streamed.iter_raw():
                body += chunk
                if time.monotonic() > end:
                    raise httpx.ReadTimeout(
                        "the answer did not arrive within the attempt's deadline",
                        request=streamed.request,
                    )
            return httpx.Response(
                streamed.status_code,
                headers=streamed.headers,
                content=bytes(body),
                request=streamed.request,
            )

    def _send(
        self,
        request: EmbedRequest,
        batch: _Batch,
        abort: threading.Event | None = None,
        call_deadline: float | None = None,
    ) -> tuple[npt.NDArray[np.float32], int]:
        client = self._get_client()
        url = self._base_url + EMBEDDINGS_PATH
        content = self._body(request, batch)
        headers = self._headers()
        attempt = 0
        serial = False  # holding self._serial: the one request allowed while a budget is spent
        last: APIError | None = None
        try:
            while True:
                if abort is not None and abort.is_set():
                    raise _Aborted
                self._check_call_deadline(call_deadline, last)
                if not serial and self._gate.serial():
                    if not self._serial.acquire(timeout=0.2):
                        continue
                    serial = True
                wait = self._gate.wait_time(batch.tokens)
                if wait > 0:
                    self._pause(wait, abort)
                    if abort is not None and abort.is_set():
                        raise _Aborted
                response: httpx.Response | None = None
                with self._slots.hold():
                    try:
                        end = self._attempt_deadline(call_deadline)
                        response = self._post(client, url, content, headers, end)
                        return self._result(response, request, batch)
                    except httpx.HTTPError as exc:
                        error: APIError = self._network_error(exc)
                        error.__cause__ = exc
                    except APIError as exc:
                        error = exc
                last = error
                delay = self._give_up(attempt, error, response)
                if call_deadline is not None:
                    delay = min(delay, max(0.0, call_deadline - time.monotonic()))
                if delay > 0:
                    self._pause(delay, abort)
                attempt += 1
        finally:
            if serial:
                self._serial.release()

    def _embed(self, request: EmbedRequest) -> Embeddings:
        batches = self._plan(request)
        self._headers()  # a missing key fails here, before any request
        out = np.empty((len(request.texts), request.dimensions), dtype=np.float32)
        total = 0
        call_deadline = self._call_deadline()
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
    ) -> tuple[npt.NDArray[np.float32], int]:
        client, serial_lock = self._get_aclient()
        url = self._base_url + EMBEDDINGS_PATH
        content = self._body(request, batch)
        headers = self._headers()
        attempt = 0
        serial = False
        last: APIError | None = None
        try:
            while True:
                self._check_call_deadline(call_deadline, last)
                if not serial and self._gate.serial():
                    await serial_lock.acquire()
                    serial = True
                wait_s = self._gate.wait_time(batch.tokens)
                if wait_s > 0:
                    await self._asleep(wait_s)
                response: httpx.Response | None = None
                await self._slots.acquire()
                try:
                    end = self._attempt_deadline(call_deadline)
                    async with asyncio.timeout(max(0.0, end - time.monotonic())):
                        response = await client.post(url, content=content, headers=headers)
                    return self._result(response, request, batch)
                except TimeoutError:  # the whole attempt's deadline, however bytes trickle
                    error = self._network_error(
                        httpx.TimeoutException("the attempt's deadline passed")
                    )
                except httpx.HTTPError as exc:
                    error = self._network_error(exc)
                    error.__cause__ = exc
                except APIError as exc:
                    error = exc
                finally:
                    self._slots.release()
                last = error
                delay = self._give_up(attempt, error, response)
                if call_deadline is not None:
                    delay = min(delay, max(0.0, call_deadline - time.monotonic()))
                if delay > 0:
                    await self._asleep(delay)
                attempt += 1
        finally:
            if serial:
                serial_lock.release()

    async def _aembed(self, request: EmbedRequest) -> Embeddings:
        batches = self._plan(request)
        self._headers()
        out = np.empty((len(request.texts), request.dimensions), dtype=np.float32)
        tokens = [0] * len(batches)
        pending = iter(range(len(batches)))
        call_deadline = self._call_deadline()

        async def worker() -> None:
            for i in pending:  # one shared iterator: each batch is taken by one worker
                batch = batches[i]
                vectors, tokens[i] = await self._asend(request, batch, call_deadline)
                out[batch.start : batch.stop] = vectors

        # At most max_concurrency workers (and the provider-wide semaphore across calls).
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


def _cached_tokenizer(repo: str) -> Path | None:
    """``tokenizer.json`` of ``repo`` from the Hugging Face cache, if there (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, "tokenizer.json")
    return Path(found) if isinstance(found, str) else None
