"""jina-embeddings-v3 embedders for Haystack (extra: ``jv3-integrations[haystack]``).

Example:
    >>> from haystack_integrations.components.embedders.jina_v3 import JinaV3TextEmbedder
"""

from .embedder import JinaV3DocumentEmbedder, JinaV3TextEmbedder

__all__ = ["JinaV3DocumentEmbedder", "JinaV3TextEmbedder"]
