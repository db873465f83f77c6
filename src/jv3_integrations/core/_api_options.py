"""``JinaAPIProvider``'s options checked and normalized: the server's URL, the model, durations.

Pure functions the constructor runs (no I/O), and the defaults it shares with the planner.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final
from urllib.parse import urlsplit

import httpx

from ._errors import ConfigurationError
from ._models import MODELS, model_info
from ._types import JINA_EMBEDDINGS_V3, ModelInfo
from ._wire import DEFAULT_BASE_URL, EMBEDDINGS_PATH

DEFAULT_MAX_BATCH_TOKENS: Final = 131_072
DEFAULT_MAX_CONCURRENCY: Final = 8
START_CONCURRENCY: Final = 4  # requests in flight before the server said anything
_WIRE_FORMATS: Final = ("float", "base64")


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
