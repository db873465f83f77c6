"""The ``--provider`` of ``jv3 index`` / ``jv3 search``: built from its spec, with the notices
a user should see first (a first download, random test weights, an unresolvable host)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core import (
    JINA_EMBEDDINGS_V3,
    APIConnectionError,
    ConfigurationError,
    EmbeddingProvider,
    load_provider,
)
from ..core._spec import ProviderSpec, redact_url

__all__ = ["check_model", "first_download_notice", "make_provider", "random_weights_notice"]


def _absolute_local(spec: str) -> str:
    """``local:./dir`` as an absolute path, so ``jv3 search`` works from any folder."""
    return str(ProviderSpec.parse(spec).absolute())


_OFFICIAL_SHAPE = {"hidden_size": 1024, "num_layers": 24, "vocab_size": 250002}


def _local_model(spec: str) -> str | None:
    parsed = ProviderSpec.parse(spec)
    return parsed.target if parsed.is_local else None


def first_download_notice(spec: str) -> str | None:
    """The line shown before a local Hub model is downloaded (what, how big, its licence).

    ``None`` when nothing will be downloaded: not a ``local:`` Hub id, already in the cache,
    downloads off (``HF_HUB_OFFLINE``) or the Hub unreachable (that error comes next).
    """
    from ..core._checkpoint import _HUB_ID, _offline_env, hub_cached, hub_reachable

    model = _local_model(spec)
    if model is None or Path(model).expanduser().exists() or not _HUB_ID.match(model):
        return None
    if _offline_env() or hub_cached(model) or not hub_reachable():
        return None
    size = " (about 1.1 GB)" if model == JINA_EMBEDDINGS_V3.hub_id else ""
    return (
        f"downloading {model}{size} from the Hugging Face Hub, once (then cached). The "
        "jina-embeddings-v3 weights are licensed CC BY-NC 4.0 (non-commercial use; "
        "commercial use needs Jina's API or a licence from Jina AI); this package's code is "
        f"Apache-2.0. See https://huggingface.co/{model}"
    )


def random_weights_notice(spec: str) -> str | None:
    """A warning for the demo when the local checkpoint is not the official model.

    The official checkpoint has 24 layers, 1024 dimensions and XLM-RoBERTa's 250,002-token
    vocabulary; a checkpoint of another shape (the tiny conformance model ...) has random
    weights, so its scores and rankings mean nothing.
    """
    from ..core._checkpoint import ModelSource

    model = _local_model(spec)
    if model is None or not Path(model).expanduser().is_dir():
        return None  # the API, a server, or the Hub id (the official model)
    try:
        cfg = ModelSource(model).config()
    except Exception:  # the provider reports a broken directory itself
        return None
    shape = {k: getattr(cfg, k) for k in _OFFICIAL_SHAPE}
    if shape == _OFFICIAL_SHAPE:
        return None
    return (
        f"the model in {model} is not the official jina-embeddings-v3 ({cfg.num_layers} "
        f"layers, {cfg.hidden_size} dimensions instead of 24 and 1024): its weights are "
        "random test weights, so the scores and rankings below are meaningless"
    )


def _check_host_resolves(spec: str) -> None:
    """Offline, fail in a second before any store opens, not after it (the API client would
    fail at the first request too, without retrying, but only once the store is up)."""
    import socket
    from urllib.parse import urlsplit

    parsed = ProviderSpec.parse(spec)
    if parsed.is_local:
        return
    text = parsed.target
    if parsed.kind == "api":
        if not os.environ.get("JINA_API_KEY", "").strip():
            return  # the missing key is the first thing to fix, and the provider says so
        from ..core._wire import DEFAULT_BASE_URL

        text = DEFAULT_BASE_URL
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return  # the proxy resolves names, not us
    host = urlsplit(text).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        raise APIConnectionError(
            f"could not reach {redact_url(text)}: the host name {host!r} does not resolve "
            "(offline, or a typo in the URL)"
        ) from None


def check_model(spec: str, model: str | None) -> str | None:
    """The ``--model`` to pass to the provider of ``spec`` (None: the provider's default).

    Raises:
        ConfigurationError: another model than jina-embeddings-v3 asked of a local provider.
    """
    if model is None or not ProviderSpec.parse(spec).is_local:
        return model
    if model != JINA_EMBEDDINGS_V3.name:
        raise ConfigurationError(
            f"--model {model}: the local provider runs only {JINA_EMBEDDINGS_V3.name}; use "
            "--provider api (Jina's API, JINA_API_KEY) or a server URL for other models"
        )
    return None


def make_provider(spec: str, dimensions: int | None, model: str | None = None) -> EmbeddingProvider:
    """``load_provider(spec)`` with the Matryoshka size and the model (``--model``), if any."""
    model = check_model(spec, model)
    notice = first_download_notice(spec)
    if notice:
        print(f"jv3: {notice}", file=sys.stderr)
    _check_host_resolves(spec)
    kwargs: dict[str, object] = {}
    if dimensions is not None:
        kwargs["dimensions"] = dimensions
    if model is not None:
        kwargs["model"] = model
    return load_provider(spec, **kwargs)
