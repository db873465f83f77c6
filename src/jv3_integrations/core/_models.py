"""The models the API provider speaks to, as data: one frozen :class:`ModelInfo` each.

Facts from Jina's official OpenAPI schema (``EmbeddingsV3Request``, ``EmbeddingsV4Request``,
``EmbeddingsV5Request`` and the endpoint's description): task names, the largest output size
(``dimensions`` maximum), context length, whether ``late_chunking`` and ``normalized`` are
request fields. jina-embeddings-v3 stays the default and the only model this package runs
locally. Facts the schema does not state (languages, license) are ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ._errors import ConfigurationError
from ._types import JINA_EMBEDDINGS_V3, ModelInfo, Task

__all__ = [
    "JINA_EMBEDDINGS_V4",
    "JINA_EMBEDDINGS_V5_TEXT_NANO",
    "JINA_EMBEDDINGS_V5_TEXT_SMALL",
    "MODELS",
    "model_info",
]

# v4 through the API: text input only here (images and PDFs are not embedded by this package).
JINA_EMBEDDINGS_V4: Final = ModelInfo(
    name="jina-embeddings-v4",
    dim=2048,
    max_tokens=32_768,
    tasks=(
        Task.RETRIEVAL_QUERY,
        Task.RETRIEVAL_PASSAGE,
        Task.TEXT_MATCHING,
        Task.CODE_QUERY,
        Task.CODE_PASSAGE,
    ),
    matryoshka_dimensions=(),  # the API takes any size in 1..2048
    languages=None,
    license=None,
    hub_id="jinaai/jina-embeddings-v4",
    late_chunking=True,
    normalized_option=False,  # EmbeddingsV4Request has no "normalized" field
)

_V5_TASKS: Final = (
    Task.RETRIEVAL_QUERY,
    Task.RETRIEVAL_PASSAGE,
    Task.TEXT_MATCHING,
    Task.SEPARATION,  # sent as "clustering"
    Task.CLASSIFICATION,
)

JINA_EMBEDDINGS_V5_TEXT_SMALL: Final = ModelInfo(
    name="jina-embeddings-v5-text-small",
    dim=1024,
    max_tokens=32_768,
    tasks=_V5_TASKS,
    matryoshka_dimensions=(),
    languages=None,
    license=None,
    hub_id="jinaai/jina-embeddings-v5-text-small",
    late_chunking=False,  # EmbeddingsV5Request has no "late_chunking" field
    wire_task_names=((Task.SEPARATION, "clustering"),),
)

JINA_EMBEDDINGS_V5_TEXT_NANO: Final = ModelInfo(
    name="jina-embeddings-v5-text-nano",
    dim=768,
    max_tokens=8192,
    tasks=_V5_TASKS,
    matryoshka_dimensions=(),
    languages=None,
    license=None,
    hub_id="jinaai/jina-embeddings-v5-text-nano",
    late_chunking=False,
    wire_task_names=((Task.SEPARATION, "clustering"),),
)

MODELS: Final[Mapping[str, ModelInfo]] = MappingProxyType(
    {
        m.name: m
        for m in (
            JINA_EMBEDDINGS_V3,
            JINA_EMBEDDINGS_V4,
            JINA_EMBEDDINGS_V5_TEXT_SMALL,
            JINA_EMBEDDINGS_V5_TEXT_NANO,
        )
    }
)


def model_info(name: str) -> ModelInfo:
    """The facts of the API model ``name``.

    Raises:
        ConfigurationError: an unknown name; the message lists the known ones.
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(n) for n in MODELS)
        raise ConfigurationError(f"unknown model {name!r}; Jina's API models: {known}") from None
