"""LangChain integration for jina-embeddings-v3 (extra: ``jv3-integrations[langchain]``)."""

from __future__ import annotations

from .integrations.langchain import JinaV3Embeddings

__all__ = ["JinaV3Embeddings"]
