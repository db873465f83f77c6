"""jina-embeddings-v3 as a Dify text-embedding model, on jv3-integrations' JinaAPIProvider.

Everything on the wire (batching by items and tokens, retries with backoff, timeouts, the rate
budget, the typed errors) is the provider's; this module only translates: Dify's credentials
into a provider, Dify's input type into a task, our errors into Dify's ``Invoke*`` errors (with
their messages kept).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from dify_plugin import TextEmbeddingModel
from dify_plugin.entities.model import EmbeddingInputType, PriceType
from dify_plugin.entities.model.text_embedding import EmbeddingUsage, TextEmbeddingResult
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

from jv3_integrations import JinaAPIProvider
from jv3_integrations.core import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InputError,
    InsufficientBalanceError,
    Jv3Error,
    RateLimitError,
    ServerError,
)

DEFAULT_ENDPOINT = "https://api.jina.ai"
DEFAULT_MODEL = "jina-embeddings-v3"
MAX_DIMENSIONS = 1024
# Dify's plugin runtime gives a call MAX_REQUEST_TIMEOUT (300 s by default): a call, retries
# and their waits included, ends before that, so Dify shows our error, not its own timeout.
TOTAL_TIMEOUT = 240.0
ATTEMPT_TIMEOUT = 60.0
MAX_RETRIES = 6
# providers kept alive (connection pool and rate budget per endpoint, key and settings)
_CACHE_SIZE = 8

# Dify's input type -> the model's task adapter (query/passage asymmetric retrieval)
TASKS: Mapping[EmbeddingInputType, str] = {
    EmbeddingInputType.QUERY: "retrieval.query",
    EmbeddingInputType.DOCUMENT: "retrieval.passage",
}

# our typed errors -> Dify's (first match wins; subclasses before their bases)
ERROR_MAP: tuple[tuple[type[InvokeError], tuple[type[Exception], ...]], ...] = (
    (InvokeAuthorizationError, (AuthenticationError, InsufficientBalanceError)),
    (InvokeRateLimitError, (RateLimitError,)),
    (InvokeConnectionError, (APIConnectionError, APITimeoutError)),
    (InvokeServerUnavailableError, (ServerError, APIResponseError)),
    (InvokeBadRequestError, (BadRequestError, InputError, ConfigurationError)),
)


class Settings:
    """The provider credentials of the form in ``provider/jina_v3.yaml``, validated."""

    def __init__(self, credentials: Mapping[str, Any]) -> None:
        endpoint = str(credentials.get("endpoint") or DEFAULT_ENDPOINT).strip().rstrip("/")
        # the root URL; ".../v1" as the official plugin's form asks for it is accepted too
        self.endpoint = endpoint.removesuffix("/v1")
        if not self.endpoint.startswith(("http://", "https://")):
            raise CredentialsValidateFailedError(
                f"Endpoint must start with http:// or https://, got {self.endpoint!r}."
            )
        self.api_key = str(credentials.get("api_key") or "").strip() or None
        self.model = str(credentials.get("model") or DEFAULT_MODEL).strip()
        self.dimensions = _dimensions(credentials.get("dimensions"))
        self.truncate = _flag(credentials.get("truncate"), default=True)

    def key(self) -> tuple[Any, ...]:
        return (self.endpoint, self.api_key, self.model, self.dimensions, self.truncate)

    def provider(self) -> JinaAPIProvider:
        return JinaAPIProvider(
            api_key=self.api_key,
            base_url=self.endpoint,
            model=self.model,
            dimensions=self.dimensions,
            truncate=self.truncate,
            timeout=ATTEMPT_TIMEOUT,
            total_timeout=TOTAL_TIMEOUT,
            max_retries=MAX_RETRIES,
        )


def _dimensions(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        dims = int(str(value).strip())
    except ValueError:
        dims = 0
    if not 1 <= dims <= MAX_DIMENSIONS:
        raise CredentialsValidateFailedError(
            f"Dimensions must be a whole number from 1 to {MAX_DIMENSIONS} (empty: "
            f"{MAX_DIMENSIONS}), got {value!r}. Matryoshka sizes that keep most quality: "
            "32, 64, 128, 256, 512, 768, 1024."
        )
    return dims


def _flag(value: Any, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise CredentialsValidateFailedError(f"Truncate must be true or false, got {value!r}.")


class _Providers:
    """A few providers kept open, one per distinct credentials (bounded, least recently used)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._open: OrderedDict[tuple[Any, ...], JinaAPIProvider] = OrderedDict()

    def get(self, settings: Settings) -> JinaAPIProvider:
        key = settings.key()
        with self._lock:
            provider = self._open.pop(key, None) or settings.provider()
            self._open[key] = provider
            evicted = []
            while len(self._open) > self._size:
                evicted.append(self._open.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return provider


PROVIDERS = _Providers(_CACHE_SIZE)


def to_invoke_error(error: Exception) -> InvokeError:
    """Dify's ``Invoke*`` error for one of ours, with our message (which says what to do)."""
    if isinstance(error, InvokeError):
        return error
    if isinstance(error, CredentialsValidateFailedError):
        return InvokeBadRequestError(str(error))
    for invoke_error, ours in ERROR_MAP:
        if isinstance(error, ours):
            return invoke_error(f"{type(error).__name__}: {error}")
    return InvokeError(f"{type(error).__name__}: {error}")


class JinaV3TextEmbeddingModel(TextEmbeddingModel):
    """jina-embeddings-v3: Dify's query input -> retrieval.query, documents -> retrieval.passage.

    Late chunking is not offered: Dify's indexing does not guarantee that one call's texts are
    one document's consecutive chunks (see the plugin's README).
    """

    def _invoke(
        self,
        model: str,
        credentials: dict,
        texts: list[str],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> TextEmbeddingResult:
        settings = Settings(credentials)
        provider = PROVIDERS.get(settings)
        result = provider.embed(list(texts), task=TASKS[input_type])
        tokens = result.usage.total_tokens
        return TextEmbeddingResult(
            model=model,
            embeddings=result.vectors.tolist(),
            usage=self._usage(model, credentials, tokens),
        )

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        """Token counts as the provider estimates them (conservative, no network call)."""
        settings = Settings(credentials)
        return list(PROVIDERS.get(settings).count_tokens(list(texts)).counts)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        """One short request to the endpoint with these credentials.

        Raises:
            CredentialsValidateFailedError: with our message (a wrong key, an endpoint that
                cannot be reached, a dimensions value out of range ...).
        """
        try:
            settings = Settings(credentials)
            with settings.provider() as provider:  # a fresh provider: never a cached verdict
                provider.embed(["ping"], task="retrieval.query")
        except CredentialsValidateFailedError:
            raise
        except Exception as exc:
            raise CredentialsValidateFailedError(str(to_invoke_error(exc))) from exc

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        mapping: dict[type[InvokeError], list[type[Exception]]] = {
            invoke_error: list(ours) for invoke_error, ours in ERROR_MAP
        }
        mapping[InvokeError] = [APIError, Jv3Error]
        return mapping

    def _transform_invoke_error(self, error: Exception) -> InvokeError:
        # the SDK's default replaces an auth error's message by a generic one; ours says what
        # to do, so it is kept (never a key: our errors redact it)
        return to_invoke_error(error)

    def _usage(self, model: str, credentials: dict, tokens: int) -> EmbeddingUsage:
        price = self.get_price(model, credentials, PriceType.INPUT, tokens)
        return EmbeddingUsage(
            tokens=tokens,
            total_tokens=tokens,
            unit_price=price.unit_price,
            price_unit=price.unit,
            total_price=price.total_amount,
            currency=price.currency,
            latency=time.perf_counter() - self.started_at if self.started_at else 0.0,
        )
