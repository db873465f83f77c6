"""Ray Data: embed a Dataset on a pool of Ray actors and write it to Qdrant, Milvus or Pinecone.

Install with ``pip install 'jv3-integrations[ray]'``.
"""

from __future__ import annotations

from .integrations.ray import WriteResult, embed_dataset, write_store

__all__ = ["WriteResult", "embed_dataset", "write_store"]
