"""LlamaIndex integration for jina-embeddings-v3 (extra: ``jv3-integrations[llama-index]``)."""

from __future__ import annotations

from .integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingEmbedder

__all__ = ["JinaV3Embedding", "JinaV3LateChunkingEmbedder"]
