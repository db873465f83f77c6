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

# Every core name stays importable from here (older imports); __all__ below is what users
# write. Explicit, so a new core name is a decision, not a side effect of a star import.
from .core import (
    JINA_EMBEDDINGS_V3,
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BaseProvider,
    BoundaryChunker,
    CappedChunker,
    Chunk,
    Chunker,
    ConfigurationError,
    DeviceMemoryError,
    EmbeddedChunk,
    EmbeddedChunks,
    EmbeddingProvider,
    Embeddings,
    EmbedRequest,
    InputError,
    InputTypeError,
    InsufficientBalanceError,
    JinaAPIProvider,
    Jv3Error,
    LocalProvider,
    MissingDependencyError,
    ModelInfo,
    ModelLoadError,
    ProviderSpec,
    RateLimitError,
    SentenceChunker,
    ServerError,
    Task,
    TermEncoder,
    TermVector,
    TokenChunker,
    TokenCount,
    Usage,
    aembed_chunks,
    aembed_chunks_many,
    b64_decode_f32,
    b64_encode_f32,
    binary_to_ubinary,
    default_provider_spec,
    embed_chunks,
    embed_chunks_many,
    l2_normalize,
    load_provider,
    matryoshka,
    quantize_binary,
    quantize_ubinary,
    redact_url,
    resolve_task,
    truncate,
    unpack_bits,
    validate_dimensions,
    validate_texts,
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
    # the `jv3 index` job (loaded on first use, see _LAZY)
    "index_folder",
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

# The `jv3 index` job, importable from here too but loaded on first use (its module pulls in
# the store adapters' code); documented in jv3_integrations.indexing and docs/cli.md.
_LAZY = {"IndexReport", "IndexInterrupted", "index_folder"}


def __getattr__(name: str) -> object:
    """``index_folder`` and its types load their module (store adapters, files) on first use."""
    if name in _LAZY:
        from . import indexing

        return getattr(indexing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
