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

from .core import *  # noqa: F403  (every core name stays importable from here)
from .core import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BoundaryChunker,
    Chunk,
    Chunker,
    ConfigurationError,
    EmbeddedChunk,
    EmbeddedChunks,
    EmbeddingProvider,
    Embeddings,
    InputError,
    InputTypeError,
    JinaAPIProvider,
    Jv3Error,
    LocalProvider,
    MissingDependencyError,
    ModelLoadError,
    RateLimitError,
    SentenceChunker,
    Task,
    TokenChunker,
    TokenCount,
    Usage,
    aembed_chunks,
    aembed_chunks_many,
    embed_chunks,
    embed_chunks_many,
    load_provider,
)

__version__ = "0.1.0"

# What users write. Provider-implementer names (BaseProvider, EmbedRequest), vector math,
# validators and the rest of the error tree live in jv3_integrations.core.
__all__ = [
    "__version__",
    # providers
    "EmbeddingProvider",
    "JinaAPIProvider",
    "LocalProvider",
    "load_provider",
    # types
    "Embeddings",
    "Task",
    "TokenCount",
    "Usage",
    # chunkers and late chunking
    "BoundaryChunker",
    "Chunk",
    "Chunker",
    "SentenceChunker",
    "TokenChunker",
    "EmbeddedChunk",
    "EmbeddedChunks",
    "aembed_chunks",
    "aembed_chunks_many",
    "embed_chunks",
    "embed_chunks_many",
    # errors
    "Jv3Error",
    "ConfigurationError",
    "InputError",
    "InputTypeError",
    "MissingDependencyError",
    "ModelLoadError",
    "APIError",
    "APIConnectionError",
    "AuthenticationError",
    "RateLimitError",
]
