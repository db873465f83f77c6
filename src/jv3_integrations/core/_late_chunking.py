"""The late-chunking pipeline: :func:`embed_chunks` and friends (the runner).

Late chunking encodes a whole document once and mean-pools each chunk's token span, so every
chunk vector carries the document's context (see ``spec/MODEL.md``, "Late chunking"). This
module sends each document's chunks (cut by a chunker from :mod:`._chunkers`) to a provider so
that one late-chunking pass or request never holds two documents, and a document is only split
where it must be. What to send is planned first, before any model or network call, by
:mod:`._late_plan` (windows of a long document: :mod:`._late_windows`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._chunkers import Chunker
from ._errors import APIError, InputTypeError
from ._late_plan import _Job, _make_plan, _Plan, _replan, _too_many_tokens
from ._progress import report_progress
from ._provider import EmbeddingProvider
from ._types import Embeddings, Task, TaskLike, Usage

__all__ = [
    "EmbeddedChunk",
    "EmbeddedChunks",
    "aembed_chunks",
    "aembed_chunks_many",
    "embed_chunks",
    "embed_chunks_many",
]


@dataclass(frozen=True, eq=False)
class EmbeddedChunk:
    """A chunk with its late-chunking vector.

    Attributes:
        text: The chunk text (``document[span[0]:span[1]]``).
        span: ``(start, end)`` character offsets in the document.
        vector: float32 vector of shape ``(dimensions,)``.
    """

    text: str
    span: tuple[int, int]
    vector: npt.NDArray[np.float32]

    @property
    def start(self) -> int:
        """Character offset where the chunk starts."""
        return self.span[0]

    @property
    def end(self) -> int:
        """Character offset where the chunk ends (exclusive)."""
        return self.span[1]

    def __repr__(self) -> str:
        return (
            f"EmbeddedChunk(span={self.span}, chars={len(self.text)}, dims={self.vector.shape[0]})"
        )


class EmbeddedChunks(list[EmbeddedChunk]):
    """One document's embedded chunks, in order (a list), with the tokens it took.

    Attributes:
        usage: Token usage of the late-chunking calls that embedded this document, as the
            provider reported it (context chunks sent in two windows count twice).
    """

    usage: Usage

    def __init__(self, chunks: Iterable[EmbeddedChunk] = (), *, usage: Usage | None = None):
        super().__init__(chunks)
        self.usage = Usage() if usage is None else usage

    def __repr__(self) -> str:
        return f"EmbeddedChunks({list.__repr__(self)}, usage={self.usage!r})"


# -- the pipeline ------------------------------------------------------------------------


def _job_texts(plan: _Plan, job: _Job) -> list[str]:
    return plan.docs[job.doc].texts[job.window.lo : job.window.hi]


def _record_window(plan: _Plan, job: _Job, emb: Embeddings) -> None:
    w = job.window
    doc = plan.docs[job.doc]
    if len(emb) != w.hi - w.lo:  # pragma: no cover - providers check their own counts
        raise RuntimeError(f"provider returned {len(emb)} vectors for {w.hi - w.lo} chunks")
    for i in range(w.start, w.end):
        doc.vectors[i] = np.array(emb.vectors[i - w.lo], dtype=np.float32)
    doc.usage = doc.usage + emb.usage
    if not plan.native and doc.counts is not None:
        report_progress(sum(doc.counts[w.start : w.end]))


def _results(plan: _Plan) -> list[EmbeddedChunks]:
    out: list[EmbeddedChunks] = []
    for doc in plan.docs:
        row: list[EmbeddedChunk] = []
        for c, v in zip(doc.chunks, doc.vectors, strict=True):
            if v is None:  # pragma: no cover - every chunk is kept by exactly one window
                raise RuntimeError("late chunking left a chunk without a vector")
            row.append(EmbeddedChunk(c.text, c.span, v))
        out.append(EmbeddedChunks(row, usage=doc.usage))
    return out


def embed_chunks_many(
    provider: EmbeddingProvider,
    documents: Sequence[str | Sequence[str]],
    *,
    chunker: Chunker | None = None,
    task: TaskLike = Task.RETRIEVAL_PASSAGE,
    dimensions: int | None = None,
    normalized: bool = True,
    window_tokens: int | None = None,
    context_tokens: int | None = None,
    max_concurrency: int | None = None,
) -> list[EmbeddedChunks]:
    """Late-chunk many documents; one list of embedded chunks per document, in order.

    Each late-chunking pass or request holds chunks of exactly one document. With the local
    model (``supports_long_late_chunking``) each document is one call (the provider windows
    past its ``max_tokens`` itself). With any other provider (the Jina API, a compatible
    server) a document is one request when it fits the window; a longer one is split into
    consecutive windows of whole chunks, each also carrying neighbouring context chunks whose
    vectors are discarded.
    Requests run concurrently (at most ``max_concurrency`` at once).

    Args:
        provider: The embedding provider.
        documents: Each a str (cut with ``chunker``) or a list of its chunks in order (the
            document is their concatenation).
        chunker: Cuts str documents (default :class:`SentenceChunker`).
        task: Task adapter (default ``retrieval.passage``).
        dimensions: Matryoshka output size (default: the provider's).
        normalized: L2-normalize each chunk vector.
        window_tokens: Tokens per late-chunking request, special tokens and instruction
            included. Default: the provider's ``max_tokens``; the local model windows by itself
            (setting it makes the local model use request windows too).
        context_tokens: Context tokens carried on each side of a window (default 512, at most a
            quarter of the window).
        max_concurrency: Requests in flight at once (default: the provider's
            ``max_concurrency``).

    Returns:
        For each document, its :class:`EmbeddedChunks` (a list of :class:`EmbeddedChunk` that
        tile the document, with ``usage``: the tokens its calls took, as the provider
        reported them; no extra tokenization).

    Raises:
        InputTypeError: documents or chunks of the wrong type.
        InputError: a blank chunk in a given chunk list, a chunk too large for one request,
            bad dimensions or task (all before any model or network call).

    Example:
        >>> out = embed_chunks_many(provider, [doc_a, doc_b])  # doctest: +SKIP
        >>> out[0][0].span, out[0][0].vector.shape  # doctest: +SKIP
        ((0, 41), (1024,))
    """
    plan = _make_plan(
        provider,
        documents,
        chunker=chunker,
        task=task,
        dimensions=dimensions,
        normalized=normalized,
        window_tokens=window_tokens,
        context_tokens=context_tokens,
        max_concurrency=max_concurrency,
    )

    def run(job: _Job, level: int = 1) -> list[tuple[_Job, Embeddings]]:
        try:
            emb = provider.embed(
                _job_texts(plan, job),
                task=plan.task,
                dimensions=plan.dimensions,
                normalized=plan.normalized,
                late_chunking=True,
            )
        except APIError as exc:
            if not _too_many_tokens(exc):
                raise
            return [r for sub in _replan(plan, job, exc, level) for r in run(sub, level + 1)]
        return [(job, emb)]

    if plan.concurrency == 1 or len(plan.jobs) < 2:
        for job in plan.jobs:
            for done, emb in run(job):
                _record_window(plan, done, emb)
    else:
        with ThreadPoolExecutor(max_workers=min(plan.concurrency, len(plan.jobs))) as pool:
            for results in pool.map(run, plan.jobs):
                for done, emb in results:
                    _record_window(plan, done, emb)
    return _results(plan)


def embed_chunks(
    provider: EmbeddingProvider,
    document: str | Sequence[str],
    *,
    chunker: Chunker | None = None,
    task: TaskLike = Task.RETRIEVAL_PASSAGE,
    dimensions: int | None = None,
    normalized: bool = True,
    window_tokens: int | None = None,
    context_tokens: int | None = None,
    max_concurrency: int | None = None,
) -> EmbeddedChunks:
    """Late-chunk one document: every chunk's vector is pooled from the whole document's pass.

    Args:
        provider: The embedding provider (local model, Jina API or a compatible server).
        document: A str (cut with ``chunker``) or the list of its chunks in order (document =
            ``"".join(chunks)``; spans refer to that).
        chunker: Default :class:`SentenceChunker`. Other arguments: see
            :func:`embed_chunks_many`.

    Returns:
        :class:`EmbeddedChunks`: one :class:`EmbeddedChunk` per chunk, in document order, and
        the ``usage`` of the calls.

    Raises:
        InputTypeError, InputError: see :func:`embed_chunks_many`.

    Example:
        >>> doc = "Berlin is big. Its population is 3.8 million."
        >>> chunks = embed_chunks(provider, doc)  # doctest: +SKIP
        >>> [c.text for c in chunks]  # doctest: +SKIP
        ['Berlin is big. ', 'Its population is 3.8 million.']
    """
    if not isinstance(document, (str, Sequence)) or isinstance(document, bytes):
        raise InputTypeError(
            f"document must be a str or a list of its chunks, not {type(document).__name__}"
        )
    return embed_chunks_many(
        provider,
        [document],
        chunker=chunker,
        task=task,
        dimensions=dimensions,
        normalized=normalized,
        window_tokens=window_tokens,
        context_tokens=context_tokens,
        max_concurrency=max_concurrency,
    )[0]


async def aembed_chunks_many(
    provider: EmbeddingProvider,
    documents: Sequence[str | Sequence[str]],
    *,
    chunker: Chunker | None = None,
    task: TaskLike = Task.RETRIEVAL_PASSAGE,
    dimensions: int | None = None,
    normalized: bool = True,
    window_tokens: int | None = None,
    context_tokens: int | None = None,
    max_concurrency: int | None = None,
) -> list[EmbeddedChunks]:
    """Async twin of :func:`embed_chunks_many` (requests bounded by ``max_concurrency``)."""
    plan = _make_plan(
        provider,
        documents,
        chunker=chunker,
        task=task,
        dimensions=dimensions,
        normalized=normalized,
        window_tokens=window_tokens,
        context_tokens=context_tokens,
        max_concurrency=max_concurrency,
    )
    gate = asyncio.Semaphore(plan.concurrency)

    async def run(job: _Job, level: int = 1) -> None:
        try:
            async with gate:
                emb = await provider.aembed(
                    _job_texts(plan, job),
                    task=plan.task,
                    dimensions=plan.dimensions,
                    normalized=plan.normalized,
                    late_chunking=True,
                )
        except APIError as exc:
            if not _too_many_tokens(exc):
                raise
            for sub in _replan(plan, job, exc, level):
                await run(sub, level + 1)
            return
        _record_window(plan, job, emb)

    if plan.concurrency == 1 or len(plan.jobs) < 2:
        for job in plan.jobs:
            await run(job)
    else:
        tasks = [asyncio.ensure_future(run(job)) for job in plan.jobs]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # one request failed: do not leave the others running
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return _results(plan)


async def aembed_chunks(
    provider: EmbeddingProvider,
    document: str | Sequence[str],
    *,
    chunker: Chunker | None = None,
    task: TaskLike = Task.RETRIEVAL_PASSAGE,
    dimensions: int | None = None,
    normalized: bool = True,
    window_tokens: int | None = None,
    context_tokens: int | None = None,
    max_concurrency: int | None = None,
) -> EmbeddedChunks:
    """Async twin of :func:`embed_chunks`."""
    if not isinstance(document, (str, Sequence)) or isinstance(document, bytes):
        raise InputTypeError(
            f"document must be a str or a list of its chunks, not {type(document).__name__}"
        )
    result = await aembed_chunks_many(
        provider,
        [document],
        chunker=chunker,
        task=task,
        dimensions=dimensions,
        normalized=normalized,
        window_tokens=window_tokens,
        context_tokens=context_tokens,
        max_concurrency=max_concurrency,
    )
    return result[0]
