"""Pinecone: jina-embeddings-v3 on a Pinecone serverless index.

Install with ``pip install jv3-integrations[pinecone]``.
"""

from __future__ import annotations

from .integrations._store import Hit
from .integrations.pinecone import MAX_METADATA_BYTES, AsyncPineconeStore, PineconeStore

__all__ = ["MAX_METADATA_BYTES", "AsyncPineconeStore", "Hit", "PineconeStore"]
