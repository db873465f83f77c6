"""Milvus: :class:`JinaV3EmbeddingFunction`, a drop-in for pymilvus-model's
``JinaEmbeddingFunction`` (``encode_documents``, ``encode_queries``, ``__call__``, ``dim``;
``api_key``, ``task``, ``late_chunking``), a ``BaseEmbeddingFunction`` when pymilvus-model is
installed (imported only when the name is first used), without depending on it; ``dim`` comes
from configuration, never from a network call. The stores are in :mod:`.milvus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..core._errors import ConfigurationError, missing_extra
from ..core._load import load_provider
from ..core._provider import EmbeddingProvider, validate_dimensions
from ..core._types import JINA_EMBEDDINGS_V3, Task, resolve_task

try:
    import pymilvus  # noqa: F401  (the extra this belongs to)
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("milvus", "pymilvus") from exc

__all__ = ["JinaV3EmbeddingFunction", "embedding_function_class"]


class _JinaV3EmbeddingFunction:
    """jina-embeddings-v3 as a drop-in for pymilvus-model's ``JinaEmbeddingFunction``.

    A subclass of pymilvus-model's ``BaseEmbeddingFunction`` when that package is installed
    (see :func:`embedding_function_class`), with the same methods and options:
    ``encode_documents`` (``retrieval.passage``), ``encode_queries`` (``retrieval.query``),
    ``__call__`` (``task``), ``dim``. Unlike the peer, ``dim`` comes from configuration (no
    billable call) and inputs are batched and retried.

    Args:
        provider: An :class:`EmbeddingProvider` or a ``load_provider`` spec. The peer's first
            argument, the model name ``"jina-embeddings-v3"``, also works and means ``"api"``.
        api_key: Jina API key (default: ``$JINA_API_KEY``); only with a spec string.
        task: Task of ``__call__`` (default ``retrieval.passage``, as the peer).
        dimensions: Output size (default: the provider's).
        late_chunking: Treat each call's texts as the chunks of one document (as the peer).

    Raises:
        ConfigurationError: ``api_key`` with a provider instance, bad ``dimensions``.
        InputError: an unknown ``task`` (the message lists the valid ones).

    Example:
        >>> ef = JinaV3EmbeddingFunction("local:./tiny-v3", dimensions=64)  # doctest: +SKIP
        >>> ef.dim  # doctest: +SKIP
        64
        >>> vectors = ef.encode_documents(["Berlin is the capital of Germany."])  # doctest: +SKIP
    """

    def __init__(
        self,
        provider: EmbeddingProvider | str | None = None,
        *,
        api_key: str | None = None,
        task: str = Task.RETRIEVAL_PASSAGE.value,
        dimensions: int | None = None,
        late_chunking: bool = False,
    ) -> None:
        if isinstance(provider, str) and provider.strip() == JINA_EMBEDDINGS_V3.name:
            provider = "api"  # pymilvus-model's JinaEmbeddingFunction("jina-embeddings-v3")
        if api_key is not None:
            if provider is not None and not isinstance(provider, str):
                raise ConfigurationError(
                    "api_key goes with a provider spec ('api', 'http://...'); a provider "
                    "instance carries its own key"
                )
            self.provider = load_provider(provider, api_key=api_key)
        else:
            self.provider = load_provider(provider)
        self.task = resolve_task(task)
        self.late_chunking = bool(late_chunking)
        max_dims = self.provider.max_dimensions
        self._dim = validate_dimensions(
            self.provider.dimensions if dimensions is None else dimensions, max_dims
        )

    @property
    def dim(self) -> int:
        """Size of the vectors (from configuration; no network call)."""
        return self._dim

    def _encode(self, texts: Sequence[str], task: Task | None) -> list[npt.NDArray[np.float32]]:
        emb = self.provider.embed(
            texts, task=task, dimensions=self._dim, late_chunking=self.late_chunking
        )
        return list(emb.vectors)

    def encode_documents(self, documents: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """Embed passages for indexing (``retrieval.passage``): one float32 array per text."""
        return self._encode(documents, Task.RETRIEVAL_PASSAGE)

    def encode_queries(self, queries: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """Embed search queries (``retrieval.query``): one float32 array per text."""
        return self._encode(queries, Task.RETRIEVAL_QUERY)

    def __call__(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """Embed with the configured ``task`` (pymilvus.model convention)."""
        return self._encode(texts, self.task)


_ef_class: type[_JinaV3EmbeddingFunction] | None = None


def embedding_function_class() -> type[_JinaV3EmbeddingFunction]:
    """The class exported as ``JinaV3EmbeddingFunction``, built on first use.

    With pymilvus-model installed it also derives from ``BaseEmbeddingFunction``. Importing
    ``pymilvus.model`` imports torch, transformers and onnxruntime (about 20 s on a small
    CPU), so it happens only when the name is first looked up, never for ``MilvusStore``
    alone (``jv3 index`` / ``jv3 search``).
    """
    global _ef_class
    if _ef_class is None:
        try:
            from pymilvus.model.base import BaseEmbeddingFunction
        except ImportError:
            _ef_class = _JinaV3EmbeddingFunction
        else:
            _ef_class = type(
                "JinaV3EmbeddingFunction",
                (_JinaV3EmbeddingFunction, BaseEmbeddingFunction),
                {"__module__": __name__, "__doc__": _JinaV3EmbeddingFunction.__doc__},
            )
    return _ef_class


if TYPE_CHECKING:
    JinaV3EmbeddingFunction = _JinaV3EmbeddingFunction
else:

    def __getattr__(name: str) -> Any:
        if name == "JinaV3EmbeddingFunction":
            return embedding_function_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
