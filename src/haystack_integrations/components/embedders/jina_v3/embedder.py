"""Haystack components for jina-embeddings-v3: a text embedder and a document embedder.

They live in Haystack's ``haystack_integrations`` namespace, so a pipeline that holds them
loads with Haystack's default deserialization allowlist; ``jv3_integrations.haystack`` is an
alias.

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

from jv3_integrations.core._deps import require
from jv3_integrations.core._errors import ConfigurationError, InputError, InputTypeError
from jv3_integrations.core._late_chunking import (
    EmbeddedChunks,
    aembed_chunks_many,
    embed_chunks_many,
)
from jv3_integrations.core._progress import progress
from jv3_integrations.core._provider import EmbeddingProvider
from jv3_integrations.core._types import Embeddings, Task
from jv3_integrations.core._validate import check_int, check_int_or_none
from jv3_integrations.integrations._groups import pack_groups, source_groups
from jv3_integrations.integrations._shared import (
    ProviderArg,
    ProviderHolder,
    check_provider,
    check_task,
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


def _usage_meta(model: str, total_tokens: int) -> dict[str, Any]:
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
        self.dimensions = check_int_or_none("dimensions", dims, error=InputError)
        self._holder = ProviderHolder(self.provider, api_key=self.api_key.resolve_value)

    @property
    def _provider(self) -> EmbeddingProvider | None:
        return self._holder.current

    def warm_up(self) -> None:
        """Build the provider and load the local model (shared with same-settings components)."""
        self._holder.get().load()

    async def warm_up_async(self) -> None:
        """Async twin of :meth:`warm_up` (loads the local model in a worker thread)."""
        await asyncio.to_thread(self.warm_up)

    def _get_provider(self) -> EmbeddingProvider:
        self.warm_up()
        return self._holder.get()

    def close(self) -> None:
        """Close a provider this component built (shared local models stay loaded)."""
        self._holder.close()

    async def close_async(self) -> None:
        """Async twin of :meth:`close`."""
        await self._holder.aclose()

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
        >>> from haystack_integrations.components.embedders.jina_v3 import JinaV3TextEmbedder
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
        """Deserialize a component written by :meth:`to_dict` (also under its old type path)."""
        return default_from_dict(cls, _current_type(cls, data))

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
        >>> from haystack_integrations.components.embedders.jina_v3 import JinaV3DocumentEmbedder
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
        self.batch_size = check_int("batch_size", batch_size, error=InputError)
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
        """Deserialize a component written by :meth:`to_dict` (also under its old type path)."""
        return default_from_dict(cls, _current_type(cls, data))

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

    def _plan(self, documents: list[Document]) -> list[_Call]:
        """The provider calls for ``documents``: batches, or whole source documents."""
        if not self.late_chunking:
            n, size = len(documents), self.batch_size
            return [
                _Call([list(range(i, min(i + size, n)))], late=False) for i in range(0, n, size)
            ]
        groups = _late_chunking_groups(documents)
        return [_Call(call, late=True) for call in pack_groups(groups, len, self.batch_size)]

    def _inputs(self, documents: list[Document], call: _Call) -> list[list[str]]:
        """Per group: its chunks (late chunking), or the texts of one batch."""
        if call.late:
            return [[documents[i].content or "" for i in g] for g in call.groups]
        return [[self._text_of(documents[i]) for i in g] for g in call.groups]

    @staticmethod
    def _output(
        documents: list[Document],
        vectors: list[list[float] | None],
        model: str,
        tokens: int,
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
        docs, provider = self._check_documents(documents), self._get_provider()
        result, task, dims = _Result(len(docs)), self.task, self.dimensions
        with progress(len(docs), "Embedding", enabled=self.progress_bar, unit="doc") as bar:
            for call in self._plan(docs):
                inputs = self._inputs(docs, call)
                if call.late:
                    chunks = embed_chunks_many(provider, inputs, task=task, dimensions=dims)
                    result.add_chunks(call, chunks)
                else:
                    result.add(call, provider.embed(inputs[0], task=task, dimensions=dims))
                bar.update(call.size)
        return self._output(docs, result.vectors, provider.model_name, result.tokens)

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """Async twin of :meth:`run`."""
        docs, provider = self._check_documents(documents), self._get_provider()
        result, task, dims = _Result(len(docs)), self.task, self.dimensions
        with progress(len(docs), "Embedding", enabled=self.progress_bar, unit="doc") as bar:
            for call in self._plan(docs):
                inputs = self._inputs(docs, call)
                if call.late:
                    chunks = await aembed_chunks_many(provider, inputs, task=task, dimensions=dims)
                    result.add_chunks(call, chunks)
                else:
                    result.add(call, await provider.aembed(inputs[0], task=task, dimensions=dims))
                bar.update(call.size)
        return self._output(docs, result.vectors, provider.model_name, result.tokens)


@dataclasses.dataclass(frozen=True)
class _Call:
    """One provider call: groups of document indexes (one group per source with late chunking)."""

    groups: list[list[int]]
    late: bool

    @property
    def size(self) -> int:
        return sum(len(g) for g in self.groups)


class _Result:
    """Vectors by document index and the tokens used, filled call by call (pure)."""

    def __init__(self, n: int) -> None:
        self.vectors: list[list[float] | None] = [None] * n
        self.tokens = 0

    def add(self, call: _Call, emb: Embeddings) -> None:
        for i, vec in zip(call.groups[0], emb.vectors.tolist(), strict=True):
            self.vectors[i] = vec
        self.tokens += emb.usage.total_tokens

    def add_chunks(self, call: _Call, results: Sequence[EmbeddedChunks]) -> None:
        for group, embedded in zip(call.groups, results, strict=True):
            if len(embedded) != len(group):
                raise InputError(  # pragma: no cover - chunks given as a list are kept as is
                    f"late chunking returned {len(embedded)} vectors for {len(group)} chunks"
                )
            for i, chunk in zip(group, embedded, strict=True):
                self.vectors[i] = chunk.vector.tolist()
            self.tokens += embedded.usage.total_tokens


#: Where the components lived before they moved into Haystack's namespace (old pipelines).
_OLD_MODULE = "jv3_integrations.integrations.haystack"


def _current_type(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with an old ``jv3_integrations`` type path replaced by the class's own."""
    if data.get("type") == f"{_OLD_MODULE}.{cls.__name__}":
        return {**data, "type": f"{cls.__module__}.{cls.__name__}"}
    return data


def _late_chunking_groups(documents: Sequence[Document]) -> list[list[int]]:
    """Group document indexes by ``meta["source_id"]``, each group in ``split_id`` order.

    Groups come in the order of their first document; a document without ``source_id`` is its
    own group. Raises InputError for an empty chunk, a duplicate ``split_id`` within one source,
    or chunks whose ``split_idx_start`` ranges overlap (``DocumentSplitter(split_overlap>0)``).
    """
    for i, doc in enumerate(documents):
        if not doc.content:
            raise InputError(
                f"documents[{i}] (id {doc.id}) has no text; late chunking needs text in every "
                "chunk (drop empty documents first, e.g. with DocumentCleaner)"
            )
    groups = source_groups(
        [d.meta.get("source_id") for d in documents],
        [d.meta.get("split_id") for d in documents],
    )
    for source, members in groups:
        for prev, nxt in itertools.pairwise(members):
            _check_pair(documents[prev], documents[nxt], source)
    return [members for _, members in groups]


def _check_pair(prev: Document, nxt: Document, source: object) -> None:
    """Two consecutive chunks of one source: distinct ``split_id``, no overlap."""
    split_prev, split_next = prev.meta.get("split_id"), nxt.meta.get("split_id")
    if split_prev is not None and split_prev == split_next:
        raise InputError(
            f"two documents of source {source!r} have the same split_id; "
            "late chunking needs each chunk once"
        )
    start_prev = prev.meta.get("split_idx_start")
    start_next = nxt.meta.get("split_idx_start")
    if not isinstance(start_prev, int) or not isinstance(start_next, int):
        return
    if start_next < start_prev + len(prev.content or ""):
        raise InputError(
            f"chunks of source {source!r} overlap; late chunking "
            "needs non-overlapping chunks: use DocumentSplitter(split_overlap=0)"
        )
