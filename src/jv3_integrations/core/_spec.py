"""The provider spec (``"api"``, ``"local:<dir-or-hub-id>"``, ``"http(s)://..."``), parsed once.

:func:`~jv3_integrations.core.load_provider`, the framework adapters, Ray, the ``jv3`` CLI and its
index state all read a spec through :class:`ProviderSpec`: one parser, one way to show a spec
without secrets (:meth:`ProviderSpec.describe`, :func:`redact_url`), one way to build it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._provider import EmbeddingProvider

__all__ = ["ProviderSpec", "redact_url"]

SpecKind = Literal["api", "local", "http"]

_FORMS = (
    "use 'api', 'local:<dir-or-hub-id>' or an http(s):// URL of a Jina-compatible server "
    "(e.g. jv3 serve)"
)


def redact_url(url: str) -> str:
    """``url`` safe to show or store: user name, password, query and fragment removed.

    Example:
        >>> redact_url("https://user:pw@example.com:8080/v1?key=s#x")
        'https://example.com:8080/v1'
    """
    text = url.strip()
    if "://" not in text:
        return text
    parts = urlsplit(text)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class ProviderSpec:
    """A parsed provider spec.

    Attributes:
        kind: ``"api"`` (Jina's API), ``"local"`` (the local PyTorch model) or ``"http"`` (any
            Jina-compatible server, e.g. ``jv3 serve``).
        target: The model directory or Hub id (``local``), the server URL as given (``http``;
            it may hold credentials: show :meth:`describe` instead), ``""`` for ``api``.

    Example:
        >>> ProviderSpec.parse("local:jinaai/jina-embeddings-v3").kind
        'local'
        >>> ProviderSpec.parse("https://u:pw@host:8080/").describe()
        'https://host:8080'
    """

    kind: SpecKind
    target: str = ""

    @classmethod
    def parse(cls, spec: object) -> ProviderSpec:
        """Parse a spec string (surrounding whitespace ignored).

        Raises:
            ConfigurationError: anything but the three forms (says which they are).
        """
        if not isinstance(spec, str):
            raise ConfigurationError(
                f"a provider spec must be a str, not {type(spec).__name__}; {_FORMS}"
            )
        text = spec.strip()
        if text == "api":
            return cls("api")
        if text.startswith(("http://", "https://")):
            if not urlsplit(text).hostname:
                raise ConfigurationError(f"provider URL {redact_url(text)!r} has no host")
            return cls("http", text.rstrip("/"))
        if text.startswith("local:"):
            model = text[len("local:") :].strip()
            if not model:
                raise ConfigurationError(
                    "the provider spec 'local:' needs a model directory or Hub id, e.g. "
                    "'local:jinaai/jina-embeddings-v3'"
                )
            return cls("local", model)
        raise ConfigurationError(f"unknown provider spec {redact_url(text)!r}; {_FORMS}")

    def __str__(self) -> str:
        """The spec string (an ``http`` URL as given: may hold credentials)."""
        if self.kind == "api":
            return "api"
        if self.kind == "local":
            return f"local:{self.target}"
        return self.target

    def describe(self) -> str:
        """The spec without secrets, for messages, logs and saved settings."""
        return redact_url(self.target).rstrip("/") if self.kind == "http" else str(self)

    @property
    def is_local(self) -> bool:
        """Whether the model runs in this process (``local:``)."""
        return self.kind == "local"

    @property
    def is_remote(self) -> bool:
        """Whether calls go over HTTP (``api`` or a server URL)."""
        return self.kind != "local"

    def absolute(self) -> ProviderSpec:
        """A ``local:`` directory that exists here as an absolute path (so the spec works from
        another folder or on a worker); any other spec unchanged."""
        if self.kind != "local":
            return self
        target = Path(self.target).expanduser()
        if target.exists():
            return ProviderSpec("local", str(target.resolve()))
        return self

    def build(self, **kwargs: Any) -> EmbeddingProvider:
        """The provider (nothing loaded or contacted yet); ``kwargs`` go to its constructor."""
        if self.kind == "local":
            from ._local import LocalProvider

            return LocalProvider(self.target, **kwargs)
        from ._api import JinaAPIProvider

        if self.kind == "http":
            return JinaAPIProvider(base_url=self.target, **kwargs)
        return JinaAPIProvider(**kwargs)
