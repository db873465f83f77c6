"""Milvus: jina-embeddings-v3 on Milvus / Milvus Lite.

Install with ``pip install jv3-integrations[milvus]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .integrations._store import Hit
from .integrations.milvus import AsyncMilvusStore, MilvusStore

if TYPE_CHECKING:
    from .integrations.milvus import JinaV3EmbeddingFunction
else:

    def __getattr__(name: str) -> Any:
        # Lazy: with pymilvus-model installed the class derives from its
        # BaseEmbeddingFunction, whose import pulls torch/transformers (~20 s).
        if name == "JinaV3EmbeddingFunction":
            from .integrations.milvus import embedding_function_class

            return embedding_function_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AsyncMilvusStore", "Hit", "JinaV3EmbeddingFunction", "MilvusStore"]
