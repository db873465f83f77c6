"""Core of jv3_integrations: the provider contract, the providers, vector math and errors.

Importing this module is light: no torch, no host library. The local model loads torch on
first use; adapters import their host library when their module is imported.
"""

from __future__ import annotations

from ._api import JinaAPIProvider
from ._chunkers import (
    BoundaryChunker,
    CappedChunker,
    Chunk,
    Chunker,
    SentenceChunker,
    TokenChunker,
)
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeviceMemoryError,
    InputError,
    InputTypeError,
    InsufficientBalanceError,
    Jv3Error,
    MissingDependencyError,
    ModelLoadError,
    RateLimitError,
    ServerError,
)
from ._late_chunking import (
    EmbeddedChunk,
    EmbeddedChunks,
    aembed_chunks,
    aembed_chunks_many,
    embed_chunks,
    embed_chunks_many,
)
from ._load import default_provider_spec, load_provider
from ._local import LocalProvider
from ._provider import (
    BaseProvider,
    EmbeddingProvider,
    EmbedRequest,
    validate_dimensions,
    validate_texts,
)
from ._sparse import TermEncoder, TermVector
from ._spec import ProviderSpec, redact_url
from ._types import (
    JINA_EMBEDDINGS_V3,
    Embeddings,
    ModelInfo,
    Task,
    TokenCount,
    Usage,
    resolve_task,
)
from ._vecmath import (
    b64_decode_f32,
    b64_encode_f32,
    binary_to_ubinary,
    l2_normalize,
    matryoshka,
    quantize_binary,
    quantize_ubinary,
    truncate,
    unpack_bits,
)

__all__ = [
    "JINA_EMBEDDINGS_V3",
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BaseProvider",
    "BoundaryChunker",
    "CappedChunker",
    "Chunk",
    "Chunker",
    "ConfigurationError",
    "DeviceMemoryError",
    "EmbedRequest",
    "EmbeddedChunk",
    "EmbeddedChunks",
    "EmbeddingProvider",
    "Embeddings",
    "InputError",
    "InputTypeError",
    "InsufficientBalanceError",
    "JinaAPIProvider",
    "Jv3Error",
    "LocalProvider",
    "MissingDependencyError",
    "ModelInfo",
    "ModelLoadError",
    "ProviderSpec",
    "RateLimitError",
    "SentenceChunker",
    "ServerError",
    "Task",
    "TermEncoder",
    "TermVector",
    "TokenChunker",
    "TokenCount",
    "Usage",
    "aembed_chunks",
    "aembed_chunks_many",
    "b64_decode_f32",
    "b64_encode_f32",
    "binary_to_ubinary",
    "default_provider_spec",
    "embed_chunks",
    "embed_chunks_many",
    "l2_normalize",
    "load_provider",
    "matryoshka",
    "quantize_binary",
    "quantize_ubinary",
    "redact_url",
    "resolve_task",
    "truncate",
    "unpack_bits",
    "validate_dimensions",
    "validate_texts",
]
