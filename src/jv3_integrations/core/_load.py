"""``load_provider``: one entry point that turns a spec string into a provider."""

from __future__ import annotations

import os
from typing import Any, TypeGuard

from ._errors import ConfigurationError
from ._provider import BaseProvider, EmbeddingProvider
from ._spec import ProviderSpec
from ._types import JINA_EMBEDDINGS_V3

__all__ = ["default_provider_spec", "is_provider", "load_provider"]


def default_provider_spec() -> str:
    """The spec ``load_provider()`` uses: ``$JV3_PROVIDER``, else ``api`` with a key, else local."""
    spec = os.environ.get("JV3_PROVIDER", "").strip()
    if spec:
        return spec
    if os.environ.get("JINA_API_KEY"):
        return "api"
    return f"local:{JINA_EMBEDDINGS_V3.hub_id}"


def is_provider(obj: object) -> TypeGuard[EmbeddingProvider]:
    """Whether ``obj`` is an :class:`EmbeddingProvider`, without I/O.

    Our providers are checked by class; on Python 3.11 a Protocol ``isinstance`` evaluates every
    property, and a self-hosted provider's ``max_dimensions`` asks its server (GET /v1/models).
    """
    return isinstance(obj, (BaseProvider, EmbeddingProvider))  # in this order


def load_provider(spec: str | EmbeddingProvider | None = None, **kwargs: Any) -> EmbeddingProvider:
    """Build a provider from a spec string.

    Args:
        spec: ``"api"`` (Jina's API, key from ``JINA_API_KEY``), ``"local:<dir-or-hub-id>"``
            (the local PyTorch model), or an ``http(s)://`` URL of any Jina-compatible server
            (e.g. ``jv3 serve``). ``None``: see :func:`default_provider_spec`. A provider
            instance is returned unchanged.
        **kwargs: Passed to the provider's constructor (``dimensions=...``, ``api_key=...``).

    Returns:
        An :class:`EmbeddingProvider`. Nothing is loaded or contacted yet.

    Raises:
        ConfigurationError: for a spec that is none of the above.

    Example:
        >>> provider = load_provider("local:./jina-embeddings-v3")  # doctest: +SKIP
    """
    if spec is None:
        spec = default_provider_spec()
    if not isinstance(spec, str):
        if is_provider(spec):
            return spec
        raise ConfigurationError(
            f"provider must be a spec string or an EmbeddingProvider, not {type(spec).__name__}"
        )
    return ProviderSpec.parse(spec).build(**kwargs)
