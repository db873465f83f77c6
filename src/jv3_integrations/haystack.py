"""Haystack components for jina-embeddings-v3 (extra: ``jv3-integrations[haystack]``)."""

from __future__ import annotations

from .integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder

__all__ = ["JinaV3DocumentEmbedder", "JinaV3TextEmbedder"]
