"""Milvus: jina-embeddings-v3 on Milvus / Milvus Lite.

Install with ``pip install jv3-integrations[milvus]``.
"""

from __future__ import annotations

from .integrations._store import Hit
from .integrations.milvus import AsyncMilvusStore, JinaV3EmbeddingFunction, MilvusStore

__all__ = ["AsyncMilvusStore", "Hit", "JinaV3EmbeddingFunction", "MilvusStore"]
