"""Our Jina-compatible embeddings server (``jv3 serve``): the local model behind Jina's API.

Any Jina client (ours, Haystack's, LlamaIndex's, pymilvus-model's) works against it unchanged:
``POST /v1/embeddings`` with the official validation, error bodies and encodings, plus
``GET /v1/models`` and ``GET /health``. Needs the ``server`` extra (starlette, uvicorn).

Example:
    >>> from jv3_integrations.server import serve
    >>> serve("jinaai/jina-embeddings-v3", port=8080, api_key="secret")  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from ..core._deps import require
from ..core._errors import ConfigurationError
from ..core._provider import BaseProvider
from ._limits import LIMITS, check_api_key, check_limits, check_port

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["create_app", "serve", "uvicorn_options"]

logger = logging.getLogger(__name__)

_APP_OPTIONS = frozenset(
    {
        "model_names",
        "batch_tokens",
        "max_wait",
        "max_queue_requests",
        "max_queue_tokens",
        "max_body_bytes",
        "body_budget_bytes",
        "body_timeout",
        "request_timeout",
    }
)
# Connection limits: options of uvicorn (and of our protocol), not of the app.
DEFAULT_TIMEOUT_KEEP_ALIVE = int(LIMITS["timeout_keep_alive"].default)
DEFAULT_HEAD_TIMEOUT = LIMITS["head_timeout"].default
DEFAULT_MAX_CONNECTIONS = int(LIMITS["max_connections"].default)
SWITCH_INTERVAL = 0.001  # seconds: sys.setswitchinterval() of the `jv3 serve` process


def create_app(
    provider_or_model: BaseProvider | str,
    *,
    api_key: str | None = None,
    **options: Any,
) -> Starlette:
    """Build the ASGI app (Starlette) serving a provider over Jina's embeddings API.

    Args:
        provider_or_model: A provider instance (served as is, not closed by the app), or a
            model directory / Hub id loaded with :class:`LocalProvider` (closed on shutdown).
        api_key: The Bearer key clients must send; ``None`` = no authentication.
        **options: Server limits — ``batch_tokens`` (tokens per forward pass, 16384),
            ``max_wait`` (seconds to gather a batch, 0.002), ``max_queue_requests`` (256) and
            ``max_queue_tokens`` (1,048,576) before 429, ``max_body_bytes`` (64 MiB, 413
            past it), ``body_budget_bytes`` (256 MiB: request bodies held at once, all
            connections together; 429 past it), ``body_timeout`` (seconds to receive the
            whole body, 60; 408 past it), ``request_timeout`` (seconds an admitted request
            may take in all, 60; 503 past it), ``model_names`` (names accepted in
            ``model``); any other keyword goes to :class:`LocalProvider` when a model is
            given. The ranges are in ``docs/server.md``.

    Returns:
        The Starlette app (run it with uvicorn, or use :func:`serve`).

    Raises:
        ConfigurationError: a limit out of its range, or an ``api_key`` no client can send.
        MissingDependencyError: the ``server`` extra is not installed.
    """
    require("starlette", "server")
    from ._app import build_app

    app_options = {k: v for k, v in options.items() if k in _APP_OPTIONS}
    provider_kwargs = {k: v for k, v in options.items() if k not in _APP_OPTIONS}
    if isinstance(provider_or_model, str):
        from ..core._local import LocalProvider

        provider: BaseProvider = LocalProvider(provider_or_model, **provider_kwargs)
        owns = True
    elif isinstance(provider_or_model, BaseProvider):
        if provider_kwargs:
            raise ConfigurationError(
                f"unknown server options {sorted(provider_kwargs)}; provider options only "
                "apply when a model path is given"
            )
        provider, owns = provider_or_model, False
    else:
        raise ConfigurationError(
            "create_app needs a provider instance or a model directory / Hub id, not "
            f"{type(provider_or_model).__name__}"
        )
    return build_app(
        provider,
        api_key=check_api_key(api_key) if api_key is not None else None,
        owns_provider=owns,
        **app_options,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def uvicorn_options(
    *,
    timeout_keep_alive: int = DEFAULT_TIMEOUT_KEEP_ALIVE,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> dict[str, Any]:
    """The ``uvicorn.Config`` keywords that bound connections (used by :func:`serve`).

    Args:
        timeout_keep_alive: Seconds an idle keep-alive connection stays open after a response.
        head_timeout: Seconds a connection may take to send a complete request head (an idle
            new socket, a client dripping headers); it is closed past them.
        max_connections: Open connections at once. Past it the oldest idle ones are closed to
            make room; when every one is busy, new requests are answered 503.

    Raises:
        ConfigurationError: a value out of its range (see ``docs/server.md``).
        MissingDependencyError: the ``server`` extra is not installed.
    """
    require("uvicorn", "server")
    limits = check_limits(
        {
            "timeout_keep_alive": timeout_keep_alive,
            "head_timeout": head_timeout,
            "max_connections": max_connections,
        }
    )
    timeout_keep_alive = limits["timeout_keep_alive"]
    head_timeout = limits["head_timeout"]
    max_connections = limits["max_connections"]
    from ._connections import guarded_protocol

    return {
        "http": guarded_protocol(head_timeout=float(head_timeout), max_connections=max_connections),
        "timeout_keep_alive": int(timeout_keep_alive),
        # one above max_connections: the connection that could not evict an idle one gets 503
        "limit_concurrency": int(max_connections) + 1,
    }


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    insecure_no_auth: bool = False,
    log_level: str = "info",
    timeout_keep_alive: int = DEFAULT_TIMEOUT_KEEP_ALIVE,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    **provider_kwargs: Any,
) -> None:
    """Serve ``model`` over Jina's embeddings API until Ctrl-C (which drains in-flight requests).

    Args:
        model: Model directory or Hub id (loaded with :class:`LocalProvider`).
        host: Address to bind; without a key only loopback addresses are allowed.
        port: TCP port.
        api_key: Bearer key clients must send; default ``$JV3_SERVER_API_KEY``.
        insecure_no_auth: Allow a non-loopback ``host`` without any key.
        log_level: uvicorn's log level.
        timeout_keep_alive: See :func:`uvicorn_options` (and ``head_timeout``,
            ``max_connections``).
        **provider_kwargs: Passed to :class:`LocalProvider` (``device=``, ``dtype=``...) or
            server limits (see :func:`create_app`).

    Raises:
        ConfigurationError: no key for a non-loopback host without ``insecure_no_auth``, a
            port outside 1..65535, a key no client can send, or a limit out of its range.
        MissingDependencyError: the ``server`` extra is not installed.
    """
    port = check_port(port)
    if api_key is not None:
        key: str | None = check_api_key(api_key)
    elif os.environ.get("JV3_SERVER_API_KEY", "").strip():
        key = check_api_key(os.environ["JV3_SERVER_API_KEY"], source="JV3_SERVER_API_KEY")
    else:
        key = None
    if key is None and not is_loopback(host) and not insecure_no_auth:
        raise ConfigurationError(
            f"refusing to serve on {host!r} without an API key: anyone who can reach it could "
            "use the model. Set one with --api-key / JV3_SERVER_API_KEY, bind 127.0.0.1, or "
            "pass --insecure-no-auth if the network is trusted."
        )
    uvicorn = require("uvicorn", "server")
    connection = uvicorn_options(
        timeout_keep_alive=timeout_keep_alive,
        head_timeout=head_timeout,
        max_connections=max_connections,
    )
    app = create_app(model, api_key=key, **provider_kwargs)
    if key is None:
        logger.warning("serving on %s:%d WITHOUT authentication", host, port)
    _raise_open_files_limit(max_connections + 256)
    # The event loop shares the GIL with the parsing, counting and model threads: give it back
    # to the loop within 1 ms (Python's default is 5 ms), so 429s and /health stay fast while
    # those threads are busy. This process is the server's own, so the setting is ours to make.
    sys.setswitchinterval(SWITCH_INTERVAL)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=60,
        **connection,
    )


def _raise_open_files_limit(wanted: int) -> None:
    """Lift the soft limit of open files towards ``wanted`` (each connection is one file)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            logger.debug("could not raise the open-files limit to %d", target)
