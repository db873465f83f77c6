"""Exit statuses of ``jv3`` and the one-line messages its errors become on stderr."""

from __future__ import annotations

import argparse
import os
import sys

from ..core import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    Jv3Error,
    ModelLoadError,
    default_provider_spec,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT_IN_USE = 3
EXIT_INTERRUPTED = 130

_FIX_PROVIDER = (
    "set JINA_API_KEY to use Jina's API, pass --provider local:DIR for a model already on "
    "disk, or run once with network access so the model can be downloaded"
)


def explain(exc: Jv3Error, args: argparse.Namespace) -> str:
    """One line for the user: the error, plus how to fix it when the provider is the problem."""
    message = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    if args.command == "serve" or not hasattr(args, "provider"):
        return message  # `jv3 serve` takes no provider: the provider hints do not apply
    from ..core._spec import ProviderSpec
    from .state import redact_spec

    spec = args.provider or default_provider_spec()
    provider_given = bool(args.provider) or bool(os.environ.get("JV3_PROVIDER"))
    try:
        remote = ProviderSpec.parse(spec).kind == "http"
    except ConfigurationError:
        remote = False
    if isinstance(exc, ModelLoadError) and exc.fix and exc.summary:
        # one sentence, then the one command (issue 27); the API as the alternative when the
        # user did not choose the local model
        other = "" if provider_given else ", or set JINA_API_KEY to use Jina's API"
        return f"{exc.summary}. Fix: {exc.fix}{other}"
    if isinstance(exc, ModelLoadError) and not provider_given:
        return f"{message}. No API key and no usable local model: {_FIX_PROVIDER}"
    if isinstance(exc, AuthenticationError) and remote:
        return (
            f"{message}. The server at {redact_spec(spec)} refused the key: for http(s):// "
            "providers jv3 sends $JINA_API_KEY as the Bearer key, so set JINA_API_KEY to that "
            "server's key (its --api-key / JV3_SERVER_API_KEY)"
        )
    if (
        isinstance(exc, AuthenticationError | ConfigurationError)
        and spec == "api"
        and ("JINA_API_KEY" in message or "API key" in message or "api_key" in message)
        and not os.environ.get("JINA_API_KEY")
    ):
        return f"{message}. To fix: {_FIX_PROVIDER}"
    if isinstance(exc, APIConnectionError):
        return f"{message}. Check the network or the --provider URL"
    return message


_HOST_MODULES = (
    "qdrant_client",
    "pymilvus",
    "milvus_lite",
    "pinecone",
    "grpc",
    "httpx",
    "httpcore",
)


def is_host_error(exc: BaseException) -> bool:
    """An error raised by a vector store's client (server down, locked file, bad credentials)."""
    return type(exc).__module__.split(".")[0] in _HOST_MODULES or isinstance(exc, ConnectionError)


def print_error(message: str) -> None:
    """The one error line, with every key the package knows (and header forms) masked: a
    host's error text may echo the request's headers."""
    from ..core._redact import redact_secrets

    print(f"jv3: error: {redact_secrets(message)}", file=sys.stderr)


def explain_host_error(exc: BaseException) -> str:
    from ..core._redact import redact_secrets

    message = redact_secrets(" ".join(str(exc).split())) or type(exc).__name__
    if len(message) > 300:
        message = message[:300] + "…"
    return (
        f"the vector store failed: {type(exc).__name__}: {message} (check that the --store "
        "server is reachable, its credentials are set, and no other process holds a local store)"
    )
