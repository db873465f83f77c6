"""LangChain ``Embeddings`` for jina-embeddings-v3, backed by any embedding provider."""

from __future__ import annotations

import logging
from typing import Any

from ..core._deps import require
from ..core._errors import InputError, InputTypeError
from ..core._provider import EmbeddingProvider
from ..core._types import Task
from ..core._validate import check_int_or_none
from ._shared import ProviderHolder, check_provider, check_task

require("langchain_core", "langchain", "langchain-core")

from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.utils import secret_from_env  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr  # noqa: E402

__all__ = ["JinaV3Embeddings"]

logger = logging.getLogger(__name__)


class JinaV3Embeddings(BaseModel, Embeddings):
    """jina-embeddings-v3 as LangChain ``Embeddings``.

    ``embed_documents`` uses task ``retrieval.passage``, ``embed_query`` ``retrieval.query``,
    at the configured Matryoshka ``dimensions``; the async methods are natively async.
    Batching, retries and concurrency limits are the provider's.

    Args:
        provider: A ``load_provider`` spec (``"api"``, ``"local:DIR_OR_ID"``, a server URL) or
            an :class:`EmbeddingProvider` instance (then the ``provider`` field is ``None``).
        api_key: Key for API-backed specs; default: env ``JINA_API_KEY``. A ``SecretStr``,
            never shown in reprs or serialized.
        dimensions: Matryoshka output size; default: the provider's.
        query_task: Task adapter for queries (default ``retrieval.query``).
        document_task: Task adapter for documents (default ``retrieval.passage``).

    Raises:
        ConfigurationError: bad ``provider``.
        InputError: bad ``dimensions``.

    Example:
        >>> from jv3_integrations.langchain import JinaV3Embeddings
        >>> emb = JinaV3Embeddings(provider="local:./jina-embeddings-v3", dimensions=256)
        >>> emb.embed_query("Who wrote Faust?")[:3]  # doctest: +SKIP
        [0.031, -0.012, 0.077]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    provider: str | None = Field(default="api")
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("JINA_API_KEY", default=None), repr=False
    )
    dimensions: int | None = None
    query_task: str | None = Task.RETRIEVAL_QUERY.value
    document_task: str | None = Task.RETRIEVAL_PASSAGE.value

    _holder: ProviderHolder = PrivateAttr(default_factory=lambda: ProviderHolder(None))

    def __init__(self, provider: str | EmbeddingProvider | None = "api", **kwargs: Any) -> None:
        checked = check_provider(provider)
        if "dimensions" in kwargs:
            kwargs["dimensions"] = check_int_or_none(
                "dimensions", kwargs["dimensions"], error=InputError
            )
        for name in ("query_task", "document_task"):
            if name in kwargs:
                task = check_task(kwargs[name])
                kwargs[name] = task.value if task is not None else None
        super().__init__(provider=checked if isinstance(checked, str) else None, **kwargs)
        self._holder = ProviderHolder(checked, api_key=self._key)

    def _key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def _get_provider(self) -> EmbeddingProvider:
        return self._holder.get()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts for indexing (task ``retrieval.passage``); one vector per text, in order."""
        emb = self._get_provider().embed(texts, task=self.document_task, dimensions=self.dimensions)
        return emb.tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query (task ``retrieval.query``)."""
        _check_query(text)
        emb = self._get_provider().embed([text], task=self.query_task, dimensions=self.dimensions)
        return emb.tolist()[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async twin of :meth:`embed_documents`."""
        emb = await self._get_provider().aembed(
            texts, task=self.document_task, dimensions=self.dimensions
        )
        return emb.tolist()

    async def aembed_query(self, text: str) -> list[float]:
        """Async twin of :meth:`embed_query`."""
        _check_query(text)
        emb = await self._get_provider().aembed(
            [text], task=self.query_task, dimensions=self.dimensions
        )
        return emb.tolist()[0]

    def close(self) -> None:
        """Close a provider this object built (shared local models stay loaded)."""
        self._holder.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self._holder.aclose()


def _check_query(text: object) -> None:
    if not isinstance(text, str):
        raise InputTypeError(
            f"query must be a str, not {type(text).__name__}; use embed_documents for a list"
        )
