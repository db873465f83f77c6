"""What the framework adapters share: checking and resolving ``provider=`` arguments.

Every adapter takes ``provider=`` as either a :func:`~jv3_integrations.core.load_provider` spec
string (``"api"``, ``"local:DIR_OR_ID"``, ``"http(s)://host:port"``; the serializable form) or an
:class:`~jv3_integrations.core.EmbeddingProvider` instance. Specs are checked when the adapter is
built (no I/O) and turned into providers on first use. Local specs go through a process-wide
cache, so every adapter configured with the same local model shares one loaded model.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from ..core._errors import ConfigurationError
from ..core._load import is_provider, load_provider
from ..core._provider import EmbeddingProvider
from ..core._spec import ProviderSpec
from ..core._types import Task, TaskLike, resolve_task

__all__ = [
    "ProviderArg",
    "ProviderHolder",
    "check_provider",
    "check_task",
    "is_local_spec",
    "resolve_provider",
]

logger = logging.getLogger(__name__)

ProviderArg = str | EmbeddingProvider

_LOCAL_CACHE: dict[str, EmbeddingProvider] = {}
_LOCAL_LOCK = threading.Lock()


def check_provider(provider: object) -> ProviderArg:
    """Check a ``provider=`` argument without building anything (no I/O, no model load).

    Returns:
        The spec string (stripped) or the provider instance, unchanged.

    Raises:
        ConfigurationError: for a string that is not a valid spec, or an object that is neither
            a string nor an :class:`EmbeddingProvider`.
    """
    if isinstance(provider, str):
        try:
            ProviderSpec.parse(provider)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc}, or an EmbeddingProvider instance") from None
        return provider.strip()
    if is_provider(provider):
        return provider
    raise ConfigurationError(
        f"provider must be a spec string or an EmbeddingProvider, not {type(provider).__name__}"
    )


def is_local_spec(provider: ProviderArg) -> bool:
    """Whether ``provider`` is a ``local:`` spec string."""
    return isinstance(provider, str) and ProviderSpec.parse(provider).is_local


def _cache_key(spec: str) -> str:
    model = ProviderSpec.parse(spec).target
    # "local:./m" and "local:/abs/m" name the same directory: key on the absolute path.
    if os.path.isdir(model):
        model = os.path.abspath(model)
    return model


def resolve_provider(
    provider: ProviderArg, *, api_key: str | None = None
) -> tuple[EmbeddingProvider, bool]:
    """Turn a checked ``provider=`` argument into a provider.

    Args:
        provider: A spec string or a provider instance (see :func:`check_provider`).
        api_key: Key for API-backed specs (``"api"`` or a URL); ignored for local specs.

    Returns:
        ``(provider, owned)``: ``owned`` is True when the caller built the provider and must
        close it; instances passed in and cached local models are never owned.
    """
    if not isinstance(provider, str):
        return provider, False
    if is_local_spec(provider):
        key = _cache_key(provider)
        with _LOCAL_LOCK:
            cached = _LOCAL_CACHE.get(key)
            if cached is None:
                logger.debug("creating shared local provider for %s", key)
                cached = load_provider(f"local:{key}")
                _LOCAL_CACHE[key] = cached
        return cached, False
    return load_provider(provider, api_key=api_key), True


class ProviderHolder:
    """One adapter's provider: built from a spec on first use, or the instance it was given.

    A provider built here from an API spec is owned: :meth:`close` closes it (and the next use
    builds a new one). Instances passed in and shared local models are never closed here.

    Args:
        provider: A checked ``provider=`` argument (see :func:`check_provider`), or ``None`` for
            an adapter whose instance is no longer attached (e.g. after pickling).
        api_key: The key for an API spec, or a function called on first use to get it.
    """

    def __init__(
        self,
        provider: ProviderArg | None,
        api_key: str | Callable[[], str | None] | None = None,
    ) -> None:
        self._spec = provider if isinstance(provider, str) else None
        self._provider: EmbeddingProvider | None = None if isinstance(provider, str) else provider
        self._api_key = api_key
        self._owned = False

    @property
    def current(self) -> EmbeddingProvider | None:
        """The provider if it has been built (or was given), else None; builds nothing."""
        return self._provider

    def get(self) -> EmbeddingProvider:
        """The provider, built on first use.

        Raises:
            ConfigurationError: no spec and no instance (an instance lost in pickling).
        """
        if self._provider is None:
            if self._spec is None:
                raise ConfigurationError(
                    "this object was built from a provider instance that is no longer attached "
                    "(e.g. after pickling); build it with a provider spec string instead"
                )
            key = self._api_key() if callable(self._api_key) else self._api_key
            self._provider, self._owned = resolve_provider(self._spec, api_key=key)
        return self._provider

    def close(self) -> None:
        """Close the provider if it was built here (shared local models stay loaded)."""
        if self._provider is not None and self._owned:
            provider, self._provider, self._owned = self._provider, None, False
            provider.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._provider is not None and self._owned:
            provider, self._provider, self._owned = self._provider, None, False
            await provider.aclose()


def check_task(task: TaskLike) -> Task | None:
    """Resolve a task argument at construction time (InputError for an unknown one)."""
    return resolve_task(task)
