"""The one exception tree of jv3_integrations.

Every error this package raises on purpose derives from :class:`Jv3Error`::

    Jv3Error
    ├── InputError (ValueError)            bad texts, task, dimensions, chunks ...
    │   └── InputTypeError (TypeError)     wrong Python type (a bare str, a None item ...)
    ├── ConfigurationError (ValueError)    bad constructor arguments, no key, no model files
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── ModelLoadError                     checkpoint files missing or inconsistent
    ├── DeviceMemoryError (MemoryError)    one text does not fit in the GPU's memory
    └── APIError                           the Jina API (or a compatible server) said no
        ├── AuthenticationError            401
        ├── InsufficientBalanceError       402 / 403
        ├── BadRequestError                400 / 422 (never retried)
        ├── RateLimitError                 429 (retried, then raised)
        ├── ServerError                    5xx (retried, then raised)
        ├── APITimeoutError                the request timed out (retried, then raised)
        ├── APIConnectionError             connection failed or reset (retried, then raised)
        └── APIResponseError               the server answered something we cannot trust
                                           (malformed JSON, wrong item count, bad indexes)

Messages say what to do. They never contain an API key.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DeviceMemoryError",
    "InputError",
    "InputTypeError",
    "InsufficientBalanceError",
    "Jv3Error",
    "MissingDependencyError",
    "ModelLoadError",
    "RateLimitError",
    "ServerError",
]


class Jv3Error(Exception):
    """Base class of every error raised by jv3_integrations."""


class InputError(Jv3Error, ValueError):
    """An input value is invalid (unknown task, dimensions out of range, empty chunk ...)."""


class InputTypeError(InputError, TypeError):
    """An input has the wrong Python type (a bare ``str`` for a list, a ``None`` item ...)."""


class ConfigurationError(Jv3Error, ValueError):
    """The provider or adapter is configured in a way that cannot work."""


class ModelLoadError(Jv3Error):
    """Model files are missing, unreadable or do not match the expected layout.

    Attributes:
        summary: the problem in one short sentence (``None``: the message is that sentence).
        fix: the one shell command that fixes it, when there is one (``hf download ...``).
    """

    def __init__(self, message: str, *, summary: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.summary = summary
        self.fix = fix


class MissingDependencyError(Jv3Error, ImportError):
    """An optional dependency is missing; the message is the exact pip command to fix it."""


def missing_extra(extra: str, package: str) -> MissingDependencyError:
    """Build the error raised when ``package`` (from extra ``extra``) cannot be imported."""
    return MissingDependencyError(
        f"{package} is required for this feature but is not installed. "
        f"Install it with: pip install 'jv3-integrations[{extra}]'"
    )


class APIError(Jv3Error):
    """An HTTP API answered with an error (or could not be reached).

    Attributes:
        status: HTTP status code, or ``None`` for network errors and timeouts.
        code: The machine-readable code from the body (e.g. ``RATE_REQUEST_LIMIT_EXCEEDED``).
        detail: The human-readable message from the body (or the raw body text).
        request_id: The request id from the body or headers, when the server sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail if detail is not None else message
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.args[0] if self.args else ""]
        extras = []
        if self.status is not None:
            extras.append(f"status={self.status}")
        if self.code:
            extras.append(f"code={self.code}")
        if self.request_id:
            extras.append(f"request_id={self.request_id}")
        if extras:
            parts.append(f"({', '.join(extras)})")
        return " ".join(p for p in parts if p)


class AuthenticationError(APIError):
    """401: the API key is missing, malformed or invalid."""


class InsufficientBalanceError(APIError):
    """402/403: the key has no balance left or hit a resource limit."""


class BadRequestError(APIError):
    """400/422: the request was rejected as invalid; fix the input, do not retry."""


class RateLimitError(APIError):
    """429: still rate-limited after every retry."""


class ServerError(APIError):
    """5xx: the server kept failing after every retry."""


class APITimeoutError(APIError):
    """The request timed out on every attempt."""


class APIConnectionError(APIError):
    """The server could not be reached (connection refused, reset, DNS ...)."""


class APIResponseError(APIError):
    """The server answered 2xx with a body that cannot be trusted (malformed, wrong count)."""


class DeviceMemoryError(Jv3Error, MemoryError):
    """A text cannot fit in the device's memory even in a batch of its own."""
