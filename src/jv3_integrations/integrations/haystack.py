"""Haystack components for jina-embeddings-v3: a text embedder and a document embedder.

Both are backed by any :class:`~jv3_integrations.core.EmbeddingProvider` (the local model, Jina's
API or a Jina-compatible server) and follow Haystack's conventions: ``run``/``run_async``,
``warm_up``, exact ``to_dict``/``from_dict``, ``Secret`` API keys, documents returned as copies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Sequence
from typing import Any

from ..core._deps import require
from ..core._errors import ConfigurationError, InputError, InputTypeError
from ..core._late_chunking import EmbeddedChunk, aembed_chunks_many, embed_chunks_many
from ..core._progress import progress
from ..core._provider import EmbeddingProvider
from ..core._types import Embeddings, Task
from ._shared import (
    ProviderArg,
    check_batch_size,
    check_dimensions,
    check_provider,
    check_task,
    resolve_provider,
)

require("haystack", "haystack", "haystack-ai")

from haystack import (  # noqa: E402
    Document,
    component,
    default_from_dict,
    default_to_dict,
)
from haystack.core.errors import SerializationError  # noqa: E402
from haystack.utils import Secret  # noqa: E402

__all__ = ["JinaV3DocumentEmbedder", "JinaV3TextEmbedder"]

logger = logging.getLogger(__name__)

_DEFAULT_KEY = Secret.from_env_var("JINA_API_KEY", strict=False)


def _usage_meta(model: str, total_tokens: int | None) -> dict[str, Any]:
    if total_tokens is None:  # late chunking through a remote provider: not reported
        return {"model": model, "usage": {}}
    return {
        "model": model,
        "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens},
    }


class _ProviderHolder:
    """Provider resolution, warm-up and serialization shared by both components."""

    provider: ProviderArg
    api_key: Secret
    task: Task | None
    dimensions: int | None

    def _init_provider(self, provider: ProviderArg, api_key: Secret, task: Any, dims: Any) -> None:
        self.provider = check_provider(provider)
        if not isinstance(api_key, Secret):
            raise ConfigurationError(
                "api_key must be a haystack Secret, e.g. Secret.from_env_var('JINA_API_KEY') "
                f"or Secret.from_token(...), not {type(api_key).__name__}"
            )
        self.api_key = api_key
        self.task = check_task(task)
        self.dimensions = check_dimensions(dims)
        self._provider: EmbeddingProvider | None = None
        self._owned = False

    def warm_up(self) -> None:
        """Build the provider and load the local model (shared with same-settings components)."""
        if self._provider is None:
            key = self.api_key.resolve_value() if isinstance(self.provider, str) else None
            self._provider, self._owned = resolve_provider(self.provider, api_key=key)
        self._provider.load()

    async def warm_up_async(self) -> None:
        """Async twin of :meth:`warm_up` (loads the local model in a worker thread)."""
        await asyncio.to_thread(self.warm_up)

    def _get_provider(self) -> EmbeddingProvider:
        self.warm_up()
        assert self._provider is not None
        return self._provider

    def close(self) -> None:
        """Close a provider this component built (shared local models stay loaded)."""
        if self._provider is not None and self._owned:
            self._provider.close()
        self._provider = None

    async def close_async(self) -> None:
        """Async twin of :meth:`close`."""
        if self._provider is not None and self._owned:
            await self._provider.aclose()
        self._provider = None

    def _provider_param(self) -> str:
        if not isinstance(self.provider, str):
            raise SerializationError(
                f"{type(self).__name__} was built with a provider instance, which cannot be "
                "serialized; pass a spec string instead (provider='api', 'local:<dir>' or a "
                "server URL)"
            )
        return self.provider

    def _task_param(self) -> str | None:
        return self.task.value if self.task is not None else None


@component
class JinaV3TextEmbedder(_ProviderHolder):
    """Embeds a string with jina-embeddings-v3 (task ``retrieval.query`` by default).

    Use it in query pipelines, paired with :class:`JinaV3DocumentEmbedder` for indexing.

    Example:
        >>> from jv3_integrations.haystack import JinaV3TextEmbedder
        >>> embedder = JinaV3TextEmbedder(provider="local:./jina-embeddings-v3")
        >>> embedder.warm_up()  # doctest: +SKIP
        >>> embedder.run("Who wrote Faust?")["embedding"][:3]  # doctest: +SKIP
        [0.012, -0.094, 0.051]
    """

    def __init__(
        self,
        provider: str | EmbeddingProvider = "api",
        api_key: Secret = _DEFAULT_KEY,
        task: str | None = "retrieval.query",
        dimensions: int | None = None,
        prefix: str = "",
        suffix: str = "",
    ) -> None:
        """Create the component; no I/O, no model load (that happens in ``warm_up``).

        Args:
            provider: A ``load_provider`` spec (``"api"``, ``"local:DIR_OR_ID"``, a server URL)
                or an :class:`EmbeddingProvider` instance (not serializable).
            api_key: Key for API-backed specs; default: env ``JINA_API_KEY`` (optional for a
                self-hosted server).
            task: Task adapter; ``None`` = no adapter.
            dimensions: Matryoshka output size; default: the provider's.
            prefix: Text added before the input.
            suffix: Text added after the input.

        Raises:
            ConfigurationError: bad ``provider`` or ``api_key``.
            InputError: unknown task, bad dimensions.
        """
        self._init_provider(provider, api_key, task, dimensions)
        self.prefix = prefix
        self.suffix = suffix

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component (a token secret or a provider instance refuses to)."""
        return default_to_dict(
            self,
            provider=self._provider_param(),
            api_key=self.api_key,
            task=self._task_param(),
            dimensions=self.dimensions,
            prefix=self.prefix,
            suffix=self.suffix,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JinaV3TextEmbedder:
        """Deserialize a component written by :meth:`to_dict`."""
        return default_from_dict(cls, data)

    def _text(self, text: Any) -> str:
        if not isinstance(text, str):
            raise InputTypeError(
                f"{type(self).__name__} expects a string as input, not {type(text).__name__}; "
                "to embed a list of Documents use JinaV3DocumentEmbedder"
            )
        return self.prefix + text + self.suffix

    def _output(self, emb: Embeddings) -> dict[str, Any]:
        return {
            "embedding": emb.vectors[0].tolist(),
            "meta": _usage_meta(emb.model, emb.usage.total_tokens),
        }

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    def run(self, text: str) -> dict[str, Any]:
        """Embed one string.

        Returns:
            ``{"embedding": list[float], "meta": {"model": str, "usage": {...}}}``.

        Raises:
            TypeError: ``text`` is not a str.
        """
        full = self._text(text)
        emb = self._get_provider().embed([full], task=self.task, dimensions=self.dimensions)
        return self._output(emb)

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    async def run_async(self, text: str) -> dict[str, Any]:
        """Async twin of :meth:`run`."""
        full = self._text(text)
        provider = self._get_provider()
        emb = await provider.aembed([full], task=self.task, dimensions=self.dimensions)
        return self._output(emb)


@component
class JinaV3DocumentEmbedder(_ProviderHolder):
    """Embeds Documents with jina-embeddings-v3 (task ``retrieval.passage`` by default).

    With ``late_chunking=True``, documents that come from one source document (the same
    ``meta["source_id"]``, as Haystack's ``DocumentSplitter`` writes) are encoded together, in
    ``split_id`` order, and each chunk gets a vector pooled over its span in that context.

    Example:
        >>> from haystack import Document
        >>> from jv3_integrations.haystack import JinaV3DocumentEmbedder
        >>> embedder = JinaV3DocumentEmbedder(provider="local:./jina-embeddings-v3")
        >>> embedder.warm_up()  # doctest: +SKIP
        >>> out = embedder.run([Document(content="Goethe wrote Faust.")])  # doctest: +SKIP
        >>> len(out["documents"][0].embedding)  # doctest: +SKIP
        1024
    """

    def __init__(
        self,
        provider: str | EmbeddingProvider = "api",
        api_key: Secret = _DEFAULT_KEY,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        late_chunking: bool = False,
        prefix: str = "",
        suffix: str = "",
        batch_size: int = 32,
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
    ) -> None:
        """Create the component; no I/O, no model load (that happens in ``warm_up``).

        Args:
            provider: A ``load_provider`` spec (``"api"``, ``"local:DIR_OR_ID"``, a server URL)
                or an :class:`EmbeddingProvider` instance (not serializable).
            api_key: Key for API-backed specs; default: env ``JINA_API_KEY`` (optional for a
                self-hosted server).
            task: Task adapter; ``None`` = no adapter.
            dimensions: Matryoshka output size; default: the provider's.
            late_chunking: Encode the chunks of one source document together (see class doc).
            prefix: Text added before each document's text (not with late chunking).
            suffix: Text added after each document's text (not with late chunking).
            batch_size: Documents handed to the provider per call (with late chunking, whole
                source documents are never split across calls); the provider batches further.
            progress_bar: Show a progress bar.
            meta_fields_to_embed: Meta fields embedded with the content (not with late chunking).
            embedding_separator: Separator between meta fields and content.

        Raises:
            ConfigurationError: bad ``provider``/``api_key``, or late chunking combined with
                ``prefix``/``suffix``/``meta_fields_to_embed`` (they would break the chunks'
                shared context).
            InputError: unknown task, bad dimensions or batch_size.
        """
        self._init_provider(provider, api_key, task, dimensions)
        self.late_chunking = bool(late_chunking)
        self.prefix = prefix
        self.suffix = suffix
        self.batch_size = check_batch_size(batch_size)
        self.progress_bar = progress_bar
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        if self.late_chunking and (prefix or suffix or self.meta_fields_to_embed):
            raise ConfigurationError(
                "late_chunking=True embeds each chunk's own text in its document's context; it "
                "cannot be combined with prefix, suffix or meta_fields_to_embed"
            )

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component (a token secret or a provider instance refuses to)."""
        return default_to_dict(
            self,
            provider=self._provider_param(),
            api_key=self.api_key,
            task=self._task_param(),
            dimensions=self.dimensions,
            late_chunking=self.late_chunking,
            prefix=self.prefix,
            suffix=self.suffix,
            batch_size=self.batch_size,
            progress_bar=self.progress_bar,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JinaV3DocumentEmbedder:
        """Deserialize a component written by :meth:`to_dict`."""
        return default_from_dict(cls, data)

    # -- input preparation (pure) ----------------------------------------------------------

    def _check_documents(self, documents: Any) -> list[Document]:
        if not isinstance(documents, list):
            raise InputTypeError(
                f"{type(self).__name__} expects a list of Documents as input, not "
                f"{type(documents).__name__}; to embed a string use JinaV3TextEmbedder"
            )
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise InputTypeError(
                    f"{type(self).__name__} expects a list of Documents; documents[{i}] is "
                    f"{type(doc).__name__}"
                )
        return documents

    def _text_of(self, doc: Document) -> str:
        meta_values = [
            str(doc.meta[key])
            for key in self.meta_fields_to_embed
            if key in doc.meta and doc.meta[key] is not None
        ]
        return (
            self.prefix
            + self.embedding_separator.join([*meta_values, doc.content or ""])
            + self.suffix
        )

    def _batches(self, n: int) -> list[list[int]]:
        return [list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)]

    def _group_batches(self, documents: list[Document]) -> list[list[list[int]]]:
        """Late-chunking groups (lists of document indexes), packed into provider calls."""
        groups = _late_chunking_groups(documents)
        packed: list[list[list[int]]] = []
        current: list[list[int]] = []
        size = 0
        for group in groups:
            if current and size + len(group) > self.batch_size:
                packed.append(current)
                current, size = [], 0
            current.append(group)
            size += len(group)
        if current:
            packed.append(current)
        return packed

    @staticmethod
    def _store(
        call: list[list[int]],
        results: list[list[EmbeddedChunk]],
        vectors: list[list[float] | None],
    ) -> None:
        for group, embedded in zip(call, results, strict=True):
            if len(embedded) != len(group):
                raise InputError(  # pragma: no cover - chunks given as a list are kept as is
                    f"late chunking returned {len(embedded)} vectors for {len(group)} chunks"
                )
            for i, chunk in zip(group, embedded, strict=True):
                vectors[i] = chunk.vector.tolist()

    @staticmethod
    def _output(
        documents: list[Document],
        vectors: list[list[float] | None],
        model: str,
        tokens: int | None,
    ) -> dict[str, Any]:
        out = [
            dataclasses.replace(doc, embedding=vec) if vec is not None else dataclasses.replace(doc)
            for doc, vec in zip(documents, vectors, strict=True)
        ]
        return {"documents": out, "meta": _usage_meta(model, tokens)}

    # -- run --------------------------------------------------------------------------------

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Embed documents; returns copies with ``embedding`` set, in input order.

        Returns:
            ``{"documents": list[Document], "meta": {"model": str, "usage": {...}}}``.

        Raises:
            TypeError: ``documents`` is not a list of Documents.
            InputError: with late chunking, a chunk without text, duplicate ``split_id`` within
                one source, or overlapping chunks.
        """
        docs = self._check_documents(documents)
        provider = self._get_provider()
        vectors: list[list[float] | None] = [None] * len(docs)
        tokens: int | None = 0
        with progress(
            len(docs), "Embedding documents", enabled=self.progress_bar, unit="doc"
        ) as bar:
            if self.late_chunking:
                for call in self._group_batches(docs):
                    chunks = [[docs[i].content or "" for i in group] for group in call]
                    results = embed_chunks_many(
                        provider, chunks, task=self.task, dimensions=self.dimensions
                    )
                    late = _late_tokens(provider, chunks, self.task)
                    tokens = None if late is None or tokens is None else tokens + late
                    self._store(call, results, vectors)
                    bar.update(sum(len(g) for g in call))
            else:
                for batch in self._batches(len(docs)):
                    emb = provider.embed(
                        [self._text_of(docs[i]) for i in batch],
                        task=self.task,
                        dimensions=self.dimensions,
                    )
                    tokens = (tokens or 0) + emb.usage.total_tokens
                    for i, vec in zip(batch, emb.vectors.tolist(), strict=True):
                        vectors[i] = vec
                    bar.update(len(batch))
        return self._output(docs, vectors, provider.model_name, tokens)

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """Async twin of :meth:`run`."""
        docs = self._check_documents(documents)
        provider = self._get_provider()
        vectors: list[list[float] | None] = [None] * len(docs)
        tokens: int | None = 0
        with progress(
            len(docs), "Embedding documents", enabled=self.progress_bar, unit="doc"
        ) as bar:
            if self.late_chunking:
                for call in self._group_batches(docs):
                    chunks = [[docs[i].content or "" for i in group] for group in call]
                    results = await aembed_chunks_many(
                        provider, chunks, task=self.task, dimensions=self.dimensions
                    )
                    late = _late_tokens(provider, chunks, self.task)
                    tokens = None if late is None or tokens is None else tokens + late
                    self._store(call, results, vectors)
                    bar.update(sum(len(g) for g in call))
            else:
                for batch in self._batches(len(docs)):
                    emb = await provider.aembed(
                        [self._text_of(docs[i]) for i in batch],
                        task=self.task,
                        dimensions=self.dimensions,
                    )
                    tokens = (tokens or 0) + emb.usage.total_tokens
                    for i, vec in zip(batch, emb.vectors.tolist(), strict=True):
                        vectors[i] = vec
                    bar.update(len(batch))
        return self._output(docs, vectors, provider.model_name, tokens)


def _late_tokens(
    provider: EmbeddingProvider, chunks: list[list[str]], task: Task | None
) -> int | None:
    """Tokens of the late-chunking passes, when the provider counts them exactly (local model)."""
    counted = [provider.count_tokens(c, task=task, late_chunking=True) for c in chunks]
    if not all(c.exact for c in counted):
        return None
    return sum(c.total for c in counted)


def _late_chunking_groups(documents: Sequence[Document]) -> list[list[int]]:
    """Group document indexes by ``meta["source_id"]``, each group in ``split_id`` order.

    Groups come in the order of their first document; a document without ``source_id`` is its
    own group. Raises InputError for an empty chunk, a duplicate ``split_id`` within one source,
    or chunks whose ``split_idx_start`` ranges overlap (``DocumentSplitter(split_overlap>0)``).
    """
    groups: dict[object, list[int]] = {}
    order: list[object] = []
    for i, doc in enumerate(documents):
        if not doc.content:
            raise InputError(
                f"documents[{i}] (id {doc.id}) has no text; late chunking needs text in every "
                "chunk (drop empty documents first, e.g. with DocumentCleaner)"
            )
        source = doc.meta.get("source_id")
        key: object = ("own", i) if source is None else ("source", source)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(i)

    result: list[list[int]] = []
    for key in order:
        members = groups[key]
        if len(members) > 1:
            members = _order_by_split_id(documents, members, key)
            _check_no_overlap(documents, members, key)
        result.append(members)
    return result


def _order_by_split_id(documents: Sequence[Document], members: list[int], key: object) -> list[int]:
    split_ids = [documents[i].meta.get("split_id") for i in members]
    if any(s is None for s in split_ids):
        return members  # no order information: keep input order
    if len(set(split_ids)) != len(split_ids):
        raise InputError(
            f"two documents of source {key[1]!r} have the same split_id; "  # type: ignore[index]
            "late chunking needs each chunk once"
        )
    return [i for _, i in sorted(zip(split_ids, members, strict=True))]


def _check_no_overlap(documents: Sequence[Document], members: list[int], key: object) -> None:
    for prev, nxt in itertools.pairwise(members):
        start_prev = documents[prev].meta.get("split_idx_start")
        start_next = documents[nxt].meta.get("split_idx_start")
        if not isinstance(start_prev, int) or not isinstance(start_next, int):
            continue
        if start_next < start_prev + len(documents[prev].content or ""):
            raise InputError(
                f"chunks of source {key[1]!r} overlap; late chunking "  # type: ignore[index]
                "needs non-overlapping chunks: use DocumentSplitter(split_overlap=0)"
            )
