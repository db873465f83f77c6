"""The provider contract (:class:`EmbeddingProvider`) and the shared base every provider uses.

:class:`BaseProvider` does the work every provider must do identically, before any model or
network call: input validation, the empty-input short cut, task and dimension resolution, the
query/passage helpers and the sync/async context managers. Providers implement ``_embed`` (and
``_aembed`` when they have native async I/O) over an already validated :class:`EmbedRequest`.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ._errors import ConfigurationError, InputError, InputTypeError
from ._types import Embeddings, Task, TaskLike, TokenCount, resolve_task
from ._wire import MAX_TOKENS, estimate_tokens

__all__ = [
    "BaseProvider",
    "EmbedRequest",
    "check_late_chunking",
    "EmbeddingProvider",
    "validate_dimensions",
    "validate_texts",
]


@runtime_checkable
class EmbeddingProvider(Protocol):
    """What every embedding provider offers (the local model, the Jina API, a Jina server).

    ``embed`` returns one float32 vector per text, in input order. ``task=None`` means no task
    adapter; ``embed_documents`` / ``embed_queries`` pick ``retrieval.passage`` /
    ``retrieval.query`` so callers never type task strings.

    A provider also says what it can do, so callers never probe it: ``max_dimensions`` (the
    full output size), ``max_concurrency`` (calls it serves well at once), ``max_tokens`` (the
    token limit of one text or late-chunking pass), ``count_tokens`` (exact or estimated) and
    ``supports_long_late_chunking`` (it late-chunks documents longer than ``max_tokens``
    itself), ``supports_late_chunking`` (its model offers late chunking at all: Jina's v5
    models do not). ``load`` loads what the provider needs now (a no-op for remote providers).
    """

    @property
    def model_name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    @property
    def max_dimensions(self) -> int: ...

    @property
    def max_concurrency(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def supports_long_late_chunking(self) -> bool: ...

    @property
    def supports_late_chunking(self) -> bool: ...

    def count_tokens(
        self, texts: Sequence[str], *, task: TaskLike = None, late_chunking: bool = False
    ) -> TokenCount: ...

    def load(self) -> None: ...

    def embed(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings: ...

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings: ...

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings: ...

    def embed_queries(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings: ...

    async def aembed_documents(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings: ...

    async def aembed_queries(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...

    def tokenizer_file(self) -> Path: ...


def validate_texts(texts: object) -> list[str]:
    """Check that ``texts`` is a sequence of str and return it as a list.

    Raises:
        InputTypeError: for a bare str/bytes, a non-sequence, or a non-str item (named by index).
        InputError: a text with a lone surrogate (not valid Unicode; named by index).
    """
    if isinstance(texts, (str, bytes)):
        raise InputTypeError(
            "texts must be a list of strings, not a single string; wrap it: embed([text])"
        )
    if not isinstance(texts, Sequence):
        raise InputTypeError(
            f"texts must be a list (or other sequence) of strings, not {type(texts).__name__}"
        )
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InputTypeError(
                f"texts[{i}] is {type(t).__name__}, not str; every item must be a string"
            )
        if not t.isascii() and (bad := _LONE_SURROGATE.search(t)) is not None:
            raise InputError(
                f"texts[{i}] has a lone surrogate U+{ord(bad.group()):04X} at position "
                f"{bad.start()}: not valid Unicode, so it cannot be tokenized or sent as UTF-8; "
                "decode the source with errors='replace' (or fix it) first"
            )
    return out


# Lone UTF-16 surrogates (e.g. from bytes decoded with errors='surrogateescape').
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def validate_dimensions(dimensions: object, max_dimensions: int) -> int:
    """Check a Matryoshka output size: an int in ``1..max_dimensions``."""
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        raise InputTypeError(
            f"dimensions must be an int in 1..{max_dimensions}, not {type(dimensions).__name__}"
        )
    if not 1 <= dimensions <= max_dimensions:
        raise InputError(f"dimensions must be in 1..{max_dimensions}, got {dimensions}")
    return dimensions


def check_late_chunking(
    provider: EmbeddingProvider,
    option: str = "late_chunking=True",
    off: str = "late_chunking=False",
) -> None:
    """Refuse late chunking (before any request) when the provider's model does not offer it.

    Raises:
        InputError: naming the model and the option, and what to do instead.
    """
    if not provider.supports_late_chunking:
        raise InputError(
            f"{provider.model_name} does not offer late chunking ({option}); use {off} to "
            "embed each chunk on its own, or jina-embeddings-v3 or jina-embeddings-v4 for "
            "late chunking"
        )


@dataclass(frozen=True)
class EmbedRequest:
    """A validated embedding call, as providers receive it."""

    texts: list[str]
    task: Task | None
    dimensions: int
    normalized: bool
    late_chunking: bool


class BaseProvider(abc.ABC):
    """Shared implementation of the :class:`EmbeddingProvider` contract.

    Subclasses set ``_model_name`` and ``_default_dimensions`` (or override the properties),
    implement :meth:`max_dimensions`, :meth:`_embed`, and optionally :meth:`_aembed` and
    :meth:`close` / :meth:`aclose`.
    """

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """Name of the model behind this provider."""

    @property
    @abc.abstractmethod
    def max_dimensions(self) -> int:
        """The model's full output size (the upper bound for ``dimensions``)."""

    @property
    def dimensions(self) -> int:
        """The configured default output size (Matryoshka), known without any network call."""
        configured: int | None = getattr(self, "_dimensions", None)
        return configured if configured is not None else self.max_dimensions

    @property
    def max_concurrency(self) -> int:
        """Calls this provider serves well at once (late chunking runs that many passes)."""
        return 4

    @property
    def max_tokens(self) -> int:
        """Token limit of one text or one late-chunking pass (the model's 8192 by default)."""
        return MAX_TOKENS

    @property
    def supports_long_late_chunking(self) -> bool:
        """True when the provider late-chunks documents longer than ``max_tokens`` itself."""
        return False

    @property
    def supports_late_chunking(self) -> bool:
        """True when the model offers late chunking at all (jina-embeddings-v3 does)."""
        return True

    def count_tokens(
        self, texts: Sequence[str], *, task: TaskLike = None, late_chunking: bool = False
    ) -> TokenCount:
        """Token counts of ``texts``; by default a conservative estimate (``exact=False``).

        Counts include ``<s>``, ``</s>`` and the task instruction. With ``late_chunking=True``
        the texts are the chunks of one document and each count is the chunk's share of that
        one sequence (the first carries ``<s>`` and the instruction, the last ``</s>``).

        Args:
            texts: The texts (or one document's chunks).
            task: The task whose instruction is prefixed (None: no instruction).
            late_chunking: Count the texts as one late-chunked document.

        Returns:
            A :class:`TokenCount`, one count per text.
        """
        items = validate_texts(texts)
        resolved = resolve_task(task)
        if not late_chunking:
            return TokenCount([estimate_tokens(t, task=resolved) for t in items], exact=False)
        if not items:
            return TokenCount([], exact=False)
        out = [estimate_tokens(t) - 2 for t in items]
        out[0] = estimate_tokens(items[0], task=resolved) - 1
        out[-1] += 1
        return TokenCount(out, exact=False)

    def load(self) -> None:
        """Load what the provider needs now (weights, tokenizer); a no-op by default."""

    # -- the contract -------------------------------------------------------------------

    def prepare(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> EmbedRequest:
        """Validate one call's arguments (no I/O) and resolve its defaults."""
        items = validate_texts(texts)
        resolved_task = resolve_task(task)
        dims = self.dimensions if dimensions is None else dimensions
        dims = validate_dimensions(dims, self.max_dimensions)
        if late_chunking:
            for i, t in enumerate(items):
                if not t:
                    raise InputError(
                        f"texts[{i}] is empty; in late-chunking mode every chunk needs text "
                        "(an empty chunk has no tokens to pool)"
                    )
        return EmbedRequest(items, resolved_task, dims, bool(normalized), bool(late_chunking))

    def embed(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Embed ``texts`` with the given task adapter; one row per text, in input order.

        Args:
            texts: The texts (a list of str). With ``late_chunking=True``, the chunks of ONE
                document, in order; each gets a vector pooled over its span in context.
            task: A :class:`Task` or its string value; ``None`` = no adapter.
            dimensions: Matryoshka output size (1..model size); default: the provider's.
            normalized: L2-normalize the (truncated) vectors.
            late_chunking: Encode all texts as one document and pool each text's span.

        Returns:
            :class:`Embeddings` of shape ``(len(texts), dimensions)``.

        Raises:
            InputTypeError: texts is not a list of str.
            InputError: unknown task, dimensions out of range, empty chunk in late chunking.
        """
        req = self.prepare(
            texts,
            task=task,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )
        if not req.texts:
            return Embeddings.empty(model=self.model_name, task=req.task, dimensions=req.dimensions)
        return self._embed(req)

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        task: TaskLike = None,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Async twin of :meth:`embed` (same arguments, same result)."""
        req = self.prepare(
            texts,
            task=task,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )
        if not req.texts:
            return Embeddings.empty(model=self.model_name, task=req.task, dimensions=req.dimensions)
        return await self._aembed(req)

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Embed passages for indexing (task ``retrieval.passage``)."""
        return self.embed(
            texts,
            task=Task.RETRIEVAL_PASSAGE,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )

    def embed_queries(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Embed search queries (task ``retrieval.query``)."""
        return self.embed(
            texts,
            task=Task.RETRIEVAL_QUERY,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )

    async def aembed_documents(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Async twin of :meth:`embed_documents`."""
        return await self.aembed(
            texts,
            task=Task.RETRIEVAL_PASSAGE,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )

    async def aembed_queries(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Embeddings:
        """Async twin of :meth:`embed_queries`."""
        return await self.aembed(
            texts,
            task=Task.RETRIEVAL_QUERY,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking=late_chunking,
        )

    # -- for subclasses -----------------------------------------------------------------

    @abc.abstractmethod
    def _embed(self, request: EmbedRequest) -> Embeddings:
        """Embed a validated, non-empty request."""

    async def _aembed(self, request: EmbedRequest) -> Embeddings:
        """Async embedding; by default the sync path in a worker thread."""
        return await asyncio.to_thread(self._embed, request)

    def close(self) -> None:
        """Release resources (HTTP pools, model memory). Safe to call twice."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    def tokenizer_file(self) -> Path:
        """The model's ``tokenizer.json`` on local disk (keyword term vectors of hybrid search).

        Raises:
            ConfigurationError: this provider has no local tokenizer (the default).
        """
        raise ConfigurationError(
            f"{type(self).__name__} has no local tokenizer file, which hybrid search needs for "
            "its keyword vectors; use a provider that has one (LocalProvider, or "
            "JinaAPIProvider(tokenizer_file=...)) or search with mode='dense'"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
