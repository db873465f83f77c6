"""The late-chunking pipeline: :func:`embed_chunks` and friends (planner and runner).

Late chunking encodes a whole document once and mean-pools each chunk's token span, so every
chunk vector carries the document's context (see ``spec/MODEL.md``, "Late chunking"). This
module sends each document's chunks (cut by a chunker from :mod:`._chunkers`) to a provider so
that one late-chunking pass or request never holds two documents, and a document is only split
where it must be.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ._chunkers import Chunk, Chunker, SentenceChunker, _is_blank, _merge, _model_text
from ._errors import APIError, BadRequestError, InputError, InputTypeError
from ._progress import expect_progress, report_progress
from ._provider import EmbeddingProvider, check_late_chunking, validate_dimensions
from ._types import Embeddings, Task, TaskLike, Usage, resolve_task

__all__ = [
    "EmbeddedChunk",
    "EmbeddedChunks",
    "aembed_chunks",
    "aembed_chunks_many",
    "embed_chunks",
    "embed_chunks_many",
]

logger = logging.getLogger(__name__)

#: Most chunks one late-chunking request may hold (the Jina API's input limit).
_MAX_ITEMS = 2048
#: Context carried on each side of a window when the caller does not say (tokens).
_DEFAULT_CONTEXT_TOKENS = 512
#: Times a window the server rejects as too long is re-planned (token counts x2 each time).
_MAX_REPLANS = 4


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


# -- window planning (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """One late-chunking request: chunks ``lo:hi`` are sent, chunks ``start:end`` are kept."""

    lo: int
    start: int
    end: int
    hi: int


def _plan_windows(
    counts: Sequence[int], budget: int, context: int, max_items: int | None = None
) -> list[_Window]:
    """Split a document's chunks into consecutive windows of whole chunks.

    Every window's sent chunks total at most ``budget`` tokens (and ``max_items`` chunks). The
    kept ranges tile ``0..len(counts)`` in order. A window after the first carries up to
    ``context`` tokens of the chunks before its kept range, one before the last carries up to
    ``context`` tokens of the chunks after it, and at least the adjacent chunk on each side:
    every chunk whose two neighbours fit in one window with it sees both of them.

    Args:
        counts: Token count of each chunk (without special tokens or instruction).
        budget: Tokens available for chunks in one request.
        context: Target context tokens on each side of a window.
        max_items: Most chunks in one request (None: no limit; at least 3 when set).

    Raises:
        ValueError: a single chunk is larger than ``budget`` (the caller reports which).
    """
    n = len(counts)
    cap = n if max_items is None else max(3, max_items)
    for c in counts:
        if c > budget:
            raise ValueError(f"a chunk of {c} tokens does not fit a window of {budget}")
    if sum(counts) <= budget and n <= cap:
        return [_Window(0, 0, n, n)] if n else []
    total = list(itertools.accumulate(counts, initial=0))  # total[i] = sum(counts[:i])
    windows: list[_Window] = []
    s = 0
    while s < n:
        lo, before = _context_before(counts, s, context, cap)
        # the first kept chunk and its right neighbour must fit: drop far context first
        nxt = counts[s + 1] if s + 1 < n else 0
        while lo < s and before + counts[s] + nxt > budget:
            before -= counts[lo]
            lo += 1
        # the rest of the document fits: last window
        if before + total[n] - total[s] <= budget and n - lo <= cap:
            windows.append(_Window(lo, s, n, n))
            break
        # kept chunks: leave room after them for `context` tokens and at least the next chunk
        end, used = s + 1, before + counts[s]
        while end < n and end - lo < cap - cap // 3:
            reserve = max(context, counts[end + 1]) if end + 1 < n else 0
            if used + counts[end] + reserve > budget:
                break
            used += counts[end]
            end += 1
        hi = _context_after(counts, lo, end, used, budget, context, cap)
        windows.append(_Window(lo, s, end, hi))
        s = end
    return windows


def _context_before(counts: Sequence[int], s: int, context: int, cap: int) -> tuple[int, int]:
    """``(lo, tokens)``: whole chunks back from ``s``, up to ``context`` tokens (at least one)."""
    lo, before = s, 0
    while lo > 0 and before + counts[lo - 1] <= context and s - lo < cap // 3:
        lo -= 1
        before += counts[lo]
    if lo == s and s > 0:
        lo, before = s - 1, counts[s - 1]
    return lo, before


def _context_after(
    counts: Sequence[int], lo: int, end: int, used: int, budget: int, context: int, cap: int
) -> int:
    """``hi``: whole chunks after ``end``, up to ``context`` tokens (at least one if it fits)."""
    n = len(counts)
    hi, after = end, 0
    while (
        hi < n
        and after + counts[hi] <= context
        and used + after + counts[hi] <= budget
        and hi - lo < cap
    ):
        after += counts[hi]
        hi += 1
    if hi == end and end < n and used + counts[end] <= budget and hi - lo < cap:
        hi = end + 1
    return hi


# -- the pipeline ------------------------------------------------------------------------


@dataclass
class _Doc:
    index: int
    chunks: list[Chunk]
    texts: list[str]  # what the model sees
    vectors: list[npt.NDArray[np.float32] | None]
    usage: Usage = field(default_factory=Usage)
    counts: list[int] | None = None  # tokens per chunk (exact or estimated), once counted


@dataclass(frozen=True)
class _Job:
    doc: int
    window: _Window


def _doc_from_chunks(index: int, items: Sequence[object]) -> _Doc:
    chunks: list[Chunk] = []
    pos = 0
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InputTypeError(
                f"documents[{index}][{i}] is {type(t).__name__}; chunks must be strings"
            )
        if _is_blank(t):
            raise InputError(
                f"documents[{index}][{i}] is empty or blank; in late chunking every chunk needs "
                "text (merge it into a neighbour, or pass the document as a str and a chunker)"
            )
        chunks.append(Chunk(t, pos, pos + len(t)))
        pos += len(t)
    return _Doc(index, chunks, [_model_text(c.text) for c in chunks], [None] * len(chunks))


def _doc_from_text(index: int, document: str, chunker: Chunker) -> _Doc:
    chunks = chunker.chunk(document)
    if not isinstance(chunks, list) or not all(isinstance(c, Chunk) for c in chunks):
        raise InputTypeError(f"{chunker!r}.chunk() must return a list of Chunk")
    pos = 0
    for i, c in enumerate(chunks):
        if c.start != pos or document[c.start : c.end] != c.text:
            raise InputError(
                f"{chunker!r} returned chunks that do not tile documents[{index}] "
                f"(chunk {i} spans {c.span}, expected to start at {pos})"
            )
        pos = c.end
    if pos != len(document):
        raise InputError(f"{chunker!r} left documents[{index}] uncovered after offset {pos}")
    if chunks:  # a custom chunker may return blank chunks: same merge rule as ours
        chunks = _merge(document, [c.span for c in chunks], [not _is_blank(c.text) for c in chunks])
    return _Doc(index, chunks, [_model_text(c.text) for c in chunks], [None] * len(chunks))


def _prepare_docs(documents: object, chunker: Chunker | None) -> tuple[list[_Doc], list[bool]]:
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise InputTypeError(
            "documents must be a list of documents (each a str, or a list of its chunks), "
            f"not {type(documents).__name__}"
        )
    if chunker is None:
        chunker = SentenceChunker()
    elif not isinstance(chunker, Chunker):
        raise InputTypeError(
            f"chunker must have a chunk(document) method, not {type(chunker).__name__}"
        )
    docs: list[_Doc] = []
    from_text: list[bool] = []
    for i, d in enumerate(documents):
        if isinstance(d, str):
            docs.append(_doc_from_text(i, d, chunker))
            from_text.append(True)
        elif isinstance(d, Sequence) and not isinstance(d, bytes):
            docs.append(_doc_from_chunks(i, d))
            from_text.append(False)
        else:
            raise InputTypeError(
                f"documents[{i}] is {type(d).__name__}; a document is a str or a list of chunks"
            )
    return docs, from_text


def _merge_zero_token_chunks(
    docs: list[_Doc], from_text: list[bool], counts: list[list[int]]
) -> None:
    """Chunks the tokenizer turns into nothing: merge (chunked docs) or reject (given chunks)."""
    for d, doc in enumerate(docs):
        zero = [i for i, c in enumerate(counts[d]) if c == 0]
        if not zero:
            continue
        if not from_text[d]:
            raise InputError(
                f"documents[{doc.index}][{zero[0]}] has no tokens (only characters the "
                "tokenizer drops); in late chunking every chunk needs at least one token"
            )
        old = list(zip(doc.chunks, counts[d], strict=True))
        document = "".join(c.text for c in doc.chunks)
        merged = _merge(document, [c.span for c in doc.chunks], [n > 0 for n in counts[d]])
        logger.debug("merged %d zero-token chunks of document %d", len(zero), doc.index)
        doc.chunks = merged
        doc.texts = [_model_text(c.text) for c in merged]
        doc.vectors = [None] * len(merged)
        counts[d] = [
            sum(n for c, n in old if m.start <= c.start and c.end <= m.end) for m in merged
        ]


@dataclass(frozen=True)
class _Plan:
    docs: list[_Doc]
    jobs: list[_Job]
    task: Task | None
    dimensions: int | None
    normalized: bool
    concurrency: int
    native: bool
    budget: int = 0  # chunk tokens per request (request windows only)
    context: int = 0  # context tokens on each side of a window


def _make_plan(
    provider: EmbeddingProvider,
    documents: object,
    *,
    chunker: Chunker | None,
    task: TaskLike,
    dimensions: int | None,
    normalized: bool,
    window_tokens: int | None,
    context_tokens: int | None,
    max_concurrency: int | None,
) -> _Plan:
    """Everything that can fail on input, before any model or network call."""
    check_late_chunking(provider)
    resolved = resolve_task(task)
    if dimensions is not None:
        validate_dimensions(dimensions, provider.max_dimensions)
    _check_plan_options(window_tokens, context_tokens, max_concurrency)
    docs, from_text = _prepare_docs(documents, chunker)
    native = provider.supports_long_late_chunking and window_tokens is None
    # Per-chunk counts without <s>/</s> (the empty text's count is exactly those); the
    # overhead of one request is <s>, </s> and the task instruction.
    base = provider.count_tokens([""]).counts[0]
    overhead = provider.count_tokens([""], task=resolved).counts[0]
    counts = _count_chunks(provider, docs, from_text, base)

    jobs: list[_Job] = []
    budget = context = 0
    if native:
        jobs = [
            _Job(d, _Window(0, 0, len(doc.texts), len(doc.texts)))
            for d, doc in enumerate(docs)
            if doc.texts
        ]
    else:
        window = provider.max_tokens if window_tokens is None else window_tokens
        budget, context = _window_budget(window, overhead, context_tokens)
        for d, doc in enumerate(docs):
            _check_chunks_fit(doc, counts[d], budget, window)
            windows = _plan_windows(counts[d], budget, context, _MAX_ITEMS)
            jobs.extend(_Job(d, w) for w in windows)
    conc = max(1, provider.max_concurrency) if max_concurrency is None else max_concurrency
    if native:
        conc = 1  # one pass per document, each using every core already
    if len(jobs) > 1:
        logger.debug("late chunking %d documents in %d passes", len(docs), len(jobs))
    if native:  # the provider reports its tokens as its windows finish, with its overhead
        expect_progress(sum(sum(c) + overhead for c in counts if c))
    else:
        expect_progress(sum(map(sum, counts)))
    return _Plan(docs, jobs, resolved, dimensions, bool(normalized), conc, native, budget, context)


def _check_plan_options(
    window_tokens: int | None, context_tokens: int | None, max_concurrency: int | None
) -> None:
    for name, value in (
        ("window_tokens", window_tokens),
        ("context_tokens", context_tokens),
        ("max_concurrency", max_concurrency),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputTypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if max_concurrency is not None and max_concurrency < 1:
        raise InputError(f"max_concurrency must be >= 1, got {max_concurrency}")


def _count_chunks(
    provider: EmbeddingProvider, docs: list[_Doc], from_text: list[bool], base: int
) -> list[list[int]]:
    """Each document's chunk token counts (no special tokens), stored on the documents too."""
    counts: list[list[int]] = []
    for doc in docs:
        counted = provider.count_tokens(doc.texts) if doc.texts else None
        floor = 0 if counted is None or counted.exact else 1  # an estimate is never zero
        counts.append([max(floor, c - base) for c in counted.counts] if counted else [])
    _merge_zero_token_chunks(docs, from_text, counts)
    for doc, doc_counts in zip(docs, counts, strict=True):
        doc.counts = doc_counts
    return counts


def _window_budget(window: int, overhead: int, context_tokens: int | None) -> tuple[int, int]:
    """``(chunk tokens per request, context tokens on each side)`` for a window size."""
    budget = window - overhead
    if budget < 1:
        raise InputError(
            f"window_tokens must be more than {overhead} (room for the special tokens and "
            f"the task instruction), got {window}"
        )
    if context_tokens is None:
        return budget, min(_DEFAULT_CONTEXT_TOKENS, budget // 4)
    if context_tokens < 0:
        raise InputError(f"context_tokens must be >= 0, got {context_tokens}")
    return budget, context_tokens


def _check_chunks_fit(doc: _Doc, counts: list[int], budget: int, window: int) -> None:
    for i, c in enumerate(counts):
        if c > budget:
            raise InputError(
                f"chunk {i} of documents[{doc.index}] has about {c} tokens, more than "
                f"fit in one late-chunking request ({window} tokens including special "
                "tokens and the task instruction); use a smaller chunker, e.g. "
                "TokenChunker(tokenizer, tokens=512) or SentenceChunker(max_chars=2000)"
            )


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


def _too_many_tokens(exc: APIError) -> bool:
    """The server's 400 for a request over its token limit (our server's or the Jina API's)."""
    if not isinstance(exc, BadRequestError) or exc.status != 400:
        return False
    if exc.code == "INPUT_TOO_LONG":
        return True
    text = f"{exc.code or ''} {exc.detail or ''}".lower()
    return "token" in text and any(
        word in text for word in ("too long", "too many", "more than", "exceed", "maximum")
    )


def _replan(plan: _Plan, job: _Job, exc: APIError, level: int) -> list[_Job]:
    """Smaller windows for a window the server found too long (our estimate was low).

    The window's chunk counts are multiplied by ``2 ** level`` and its sent range is planned
    again; each new window keeps only chunks the old one kept, so every chunk is still kept
    exactly once, in order. Raises ``exc`` when the window cannot be split further.
    """
    w = job.window
    doc = plan.docs[job.doc]
    if plan.native or doc.counts is None or level > _MAX_REPLANS:
        raise exc
    counts = [c << level for c in doc.counts[w.lo : w.hi]]
    try:
        sub = _plan_windows(counts, plan.budget, plan.context, _MAX_ITEMS)
    except ValueError:
        raise exc from None  # one chunk alone is over the limit: nothing left to split
    jobs = []
    for s in sub:
        start, end = max(w.lo + s.start, w.start), min(w.lo + s.end, w.end)
        if start < end:
            jobs.append(_Job(job.doc, _Window(w.lo + s.lo, start, end, w.lo + s.hi)))
    if len(jobs) == 1 and jobs[0].window == w:
        return _replan(plan, job, exc, level + 1)  # the same window again: shrink more
    logger.warning(
        "the server found a late-chunking window of documents[%d] (chunks %d:%d) too long; "
        "sending it as %d smaller windows",
        doc.index,
        w.lo,
        w.hi,
        len(jobs),
    )
    return jobs


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
