"""Qdrant: jina-embeddings-v3 retrieval on a Qdrant collection.

Install with ``pip install jv3-integrations[qdrant]``.
"""

from __future__ import annotations

from .integrations._store import Hit
from .integrations.qdrant import AsyncQdrantStore, QdrantStore

__all__ = ["AsyncQdrantStore", "Hit", "QdrantStore"]
