"""LlamaIndex embedding model and late-chunking transform for jina-embeddings-v3.

:class:`JinaV3Embedding` routes queries to ``retrieval.query`` and texts to
``retrieval.passage`` through any :class:`~jv3_integrations.core.EmbeddingProvider`.
:class:`JinaV3LateChunkingEmbedder` is an ingestion transform that embeds the nodes of each
source document together (late chunking) and sets ``node.embedding``; ``VectorStoreIndex``
indexes such nodes as they are.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

from ..core._deps import require
from ..core._errors import InputError
from ..core._late_chunking import EmbeddedChunk, aembed_chunks_many, embed_chunks_many
from ..core._provider import EmbeddingProvider
from ..core._types import Task
from ..core._validate import check_int_or_none
from ._groups import source_groups
from ._shared import (
    ProviderArg,
    ProviderHolder,
    check_provider,
    check_task,
)

require("llama_index.core", "llama-index", "llama-index-core")

from llama_index.core.base.embeddings.base import (  # noqa: E402
    BaseEmbedding,
    Embedding,
)
from llama_index.core.callbacks import CBEventType, EventPayload  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: E402
from llama_index.core.instrumentation.events.embedding import (  # noqa: E402
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import BaseNode, MetadataMode, TransformComponent  # noqa: E402
from pydantic import Field, PrivateAttr  # noqa: E402

__all__ = ["JinaV3Embedding", "JinaV3LateChunkingEmbedder"]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)


class _ProviderMixin:
    """Lazy provider resolution shared by the two pydantic classes below."""

    provider: str | None
    _holder: ProviderHolder

    def _set_provider(self, checked: ProviderArg, api_key: str | None) -> None:
        self._holder = ProviderHolder(checked, api_key=api_key)

    def _get_provider(self) -> EmbeddingProvider:
        return self._holder.get()

    def close(self) -> None:
        """Close a provider this object built (shared local models stay loaded)."""
        self._holder.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self._holder.aclose()


class JinaV3Embedding(_ProviderMixin, BaseEmbedding):
    """jina-embeddings-v3 as a LlamaIndex embedding model.

    Queries are embedded with ``retrieval.query``, texts (nodes) with ``retrieval.passage``.
    Batching, retries and async concurrency limits are the provider's: an async batch is handed
    to the provider as one call, never fired as an unbounded set of concurrent requests.

    Args:
        provider: A ``load_provider`` spec (``"api"``, ``"local:DIR_OR_ID"``, a server URL) or an
            :class:`EmbeddingProvider` instance (then ``to_dict()`` has ``provider=None``).
        api_key: Key for API-backed specs; default: env ``JINA_API_KEY`` (read by the provider).
            Never serialized.
        dimensions: Matryoshka output size; default: the provider's.
        query_task: Task adapter for queries (default ``retrieval.query``).
        text_task: Task adapter for texts/nodes (default ``retrieval.passage``).
        **kwargs: ``BaseEmbedding`` fields (``embed_batch_size``, ``callback_manager`` ...).

    Raises:
        ConfigurationError: bad ``provider``.
        InputError: bad ``dimensions``.

    Example:
        >>> from llama_index.core import Settings
        >>> from jv3_integrations.llama_index import JinaV3Embedding
        >>> Settings.embed_model = JinaV3Embedding(provider="local:./jina-embeddings-v3")
    """

    provider: str | None = Field(
        default="api", description="load_provider spec; None when built from an instance."
    )
    dimensions: int | None = Field(
        default=None, description="Matryoshka output size; None = the provider's default."
    )
    query_task: str | None = Field(
        default=Task.RETRIEVAL_QUERY.value, description="Task adapter for queries."
    )
    text_task: str | None = Field(
        default=Task.RETRIEVAL_PASSAGE.value, description="Task adapter for texts (nodes)."
    )
    _holder: ProviderHolder = PrivateAttr(default_factory=lambda: ProviderHolder(None))

    def __init__(
        self,
        provider: str | EmbeddingProvider | None = "api",
        *,
        api_key: str | None = None,
        dimensions: int | None = None,
        query_task: str | None = Task.RETRIEVAL_QUERY.value,
        text_task: str | None = Task.RETRIEVAL_PASSAGE.value,
        model_name: str = "jina-embeddings-v3",
        embed_batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        checked = check_provider(provider)
        q_task, t_task = check_task(query_task), check_task(text_task)
        super().__init__(  # type: ignore[call-arg]
            provider=checked if isinstance(checked, str) else None,
            dimensions=check_int_or_none("dimensions", dimensions, error=InputError),
            query_task=q_task.value if q_task is not None else None,
            text_task=t_task.value if t_task is not None else None,
            model_name=model_name,
            embed_batch_size=embed_batch_size,
            **kwargs,
        )
        self._set_provider(checked, api_key)

    @classmethod
    def class_name(cls) -> str:
        """Serialization id of this class."""
        return "JinaV3Embedding"

    # -- the six hooks ----------------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._queries([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        emb = await self._get_provider().aembed(
            [query], task=self.query_task, dimensions=self.dimensions
        )
        result: list[list[float]] = emb.vectors.tolist()
        return result[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        emb = self._get_provider().embed(texts, task=self.text_task, dimensions=self.dimensions)
        result: list[list[float]] = emb.vectors.tolist()
        return result

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        emb = await self._get_provider().aembed(
            texts, task=self.text_task, dimensions=self.dimensions
        )
        result: list[list[float]] = emb.vectors.tolist()
        return result

    def _queries(self, queries: list[str]) -> list[Embedding]:
        emb = self._get_provider().embed(queries, task=self.query_task, dimensions=self.dimensions)
        result: list[list[float]] = emb.vectors.tolist()
        return result

    @dispatcher.span  # type: ignore[misc]
    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed texts asynchronously in ONE provider call.

        The base class would fire one coroutine per ``embed_batch_size`` texts all at once;
        the provider instead splits the call into requests under its own concurrency limit.
        """
        texts = list(texts)
        model_dict = self.to_payload()
        dispatcher.event(EmbeddingStartEvent(model_dict=model_dict))
        event_id = self.callback_manager.on_event_start(
            CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: model_dict}
        )
        if self.embeddings_cache is not None:
            embeddings = await self._aget_text_embeddings_cached(texts)
        else:
            embeddings = await self._aget_text_embeddings_rate_limited(texts)
        dispatcher.event(EmbeddingEndEvent(chunks=texts, embeddings=embeddings))
        self.callback_manager.on_event_end(
            CBEventType.EMBEDDING,
            payload={EventPayload.CHUNKS: texts, EventPayload.EMBEDDINGS: embeddings},
            event_id=event_id,
        )
        return embeddings


class JinaV3LateChunkingEmbedder(_ProviderMixin, TransformComponent):
    """Ingestion transform: embeds each source document's nodes together (late chunking).

    Nodes that share a source document (``node.ref_doc_id``) are ordered by
    ``start_char_idx`` and encoded as one sequence; each node gets a vector pooled over its own
    span in that context and stored in ``node.embedding``. ``VectorStoreIndex`` keeps these
    embeddings (it only embeds nodes without one). Nodes without a source are their own
    document. Chunks must not overlap: split with ``chunk_overlap=0``.

    Args:
        provider: A ``load_provider`` spec or an :class:`EmbeddingProvider` instance.
        api_key: Key for API-backed specs (never serialized).
        dimensions: Matryoshka output size; default: the provider's.
        task: Task adapter for the chunks (default ``retrieval.passage``).

    Example:
        >>> from llama_index.core.ingestion import IngestionPipeline
        >>> from llama_index.core.node_parser import SentenceSplitter
        >>> from jv3_integrations.llama_index import JinaV3LateChunkingEmbedder
        >>> pipeline = IngestionPipeline(transformations=[
        ...     SentenceSplitter(chunk_size=256, chunk_overlap=0),
        ...     JinaV3LateChunkingEmbedder(provider="local:./jina-embeddings-v3"),
        ... ])
    """

    provider: str | None = Field(default="api")
    dimensions: int | None = Field(default=None)
    task: str | None = Field(default=Task.RETRIEVAL_PASSAGE.value)
    _holder: ProviderHolder = PrivateAttr(default_factory=lambda: ProviderHolder(None))

    def __init__(
        self,
        provider: str | EmbeddingProvider | None = "api",
        *,
        api_key: str | None = None,
        dimensions: int | None = None,
        task: str | None = Task.RETRIEVAL_PASSAGE.value,
        **kwargs: Any,
    ) -> None:
        checked = check_provider(provider)
        resolved = check_task(task)
        super().__init__(  # type: ignore[call-arg]
            provider=checked if isinstance(checked, str) else None,
            dimensions=check_int_or_none("dimensions", dimensions, error=InputError),
            task=resolved.value if resolved is not None else None,
            **kwargs,
        )
        self._set_provider(checked, api_key)

    @classmethod
    def class_name(cls) -> str:
        """Serialization id of this class."""
        return "JinaV3LateChunkingEmbedder"

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Set ``node.embedding`` on every node (in place); returns the nodes in input order."""
        groups = _groups(nodes)
        if not groups:
            return nodes
        results = embed_chunks_many(
            self._get_provider(),
            [[_text(nodes[i]) for i in g] for g in groups],
            task=self.task,
            dimensions=self.dimensions,
        )
        _attach_vectors(nodes, groups, results)
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Async twin of ``__call__`` (requests bounded by the provider's concurrency)."""
        groups = _groups(nodes)
        if not groups:
            return nodes
        results = await aembed_chunks_many(
            self._get_provider(),
            [[_text(nodes[i]) for i in g] for g in groups],
            task=self.task,
            dimensions=self.dimensions,
        )
        _attach_vectors(nodes, groups, results)
        return nodes


def _attach_vectors(
    nodes: Sequence[BaseNode],
    groups: list[list[int]],
    results: Sequence[Sequence[EmbeddedChunk]],
) -> None:
    for group, embedded in zip(groups, results, strict=True):
        for i, chunk in zip(group, embedded, strict=True):
            nodes[i].embedding = chunk.vector.tolist()


def _text(node: BaseNode) -> str:
    return node.get_content(metadata_mode=MetadataMode.NONE)


def _groups(nodes: Sequence[BaseNode]) -> list[list[int]]:
    """Node indexes grouped by source document, each group in document order."""
    for i, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            raise InputError(f"nodes[{i}] is {type(node).__name__}, not a LlamaIndex node")
        if not _text(node):
            raise InputError(
                f"nodes[{i}] (id {node.node_id}) has no text; late chunking needs text in "
                "every chunk"
            )
    groups = source_groups(
        [n.source_node.node_id if n.source_node is not None else None for n in nodes],
        [getattr(n, "start_char_idx", None) for n in nodes],
    )
    for source, members in groups:
        for prev, nxt in itertools.pairwise(members):
            _check_no_overlap(nodes[prev], nodes[nxt], source)
    return [members for _, members in groups]


def _check_no_overlap(prev: BaseNode, nxt: BaseNode, source: object) -> None:
    end_prev = getattr(prev, "end_char_idx", None)
    if end_prev is None:
        end_prev = (getattr(prev, "start_char_idx", 0) or 0) + len(_text(prev))
    start_next = getattr(nxt, "start_char_idx", None)
    if start_next is not None and start_next < end_prev:
        raise InputError(
            f"nodes of source document {source!r} overlap; late chunking needs "
            "non-overlapping chunks: split with chunk_overlap=0"
        )
