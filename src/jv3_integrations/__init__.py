"""jv3_integrations: jina-embeddings-v3 for every vector store and RAG framework.

One embedding provider (the local PyTorch model or Jina's HTTP API) behind adapters for Qdrant,
Milvus, Pinecone, Haystack, LlamaIndex and LangChain. Importing this package loads no torch and
no host library.

Example:
    >>> from jv3_integrations import load_provider
    >>> provider = load_provider("local:./jina-embeddings-v3")  # doctest: +SKIP
    >>> provider.embed_queries(["Wie hoch ist die Zugspitze?"]).vectors.shape  # doctest: +SKIP
    (1, 1024)
"""

from __future__ import annotations

from .core import *  # noqa: F403
from .core import __all__ as _core_all

__version__ = "0.1.0"

__all__ = ["__version__", *_core_all]
