"""A late-chunking call's plan: its documents, their chunks' token counts and the requests.

Everything that can fail on input is checked here, before any model or network call: the
documents and chunks (:func:`_prepare_docs`), the options, and whether each chunk fits one
request. A window the server finds too long is planned again into smaller ones
(:func:`_replan`). The runner is :mod:`._late_chunking`; windows come from
:mod:`._late_windows`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ._chunkers import Chunk, Chunker, SentenceChunker, _is_blank, _merge, _model_text
from ._errors import APIError, BadRequestError, InputError, InputTypeError
from ._late_windows import _plan_windows, _Window
from ._progress import expect_progress
from ._provider import EmbeddingProvider, check_late_chunking, validate_dimensions
from ._types import Task, TaskLike, Usage, resolve_task

# the pipeline's one logger (its records keep the name they had before the split)
logger = logging.getLogger("jv3_integrations.core._late_chunking")

#: Most chunks one late-chunking request may hold (the Jina API's input limit).
_MAX_ITEMS = 2048
#: Context carried on each side of a window when the caller does not say (tokens).
_DEFAULT_CONTEXT_TOKENS = 512
#: Times a window the server rejects as too long is re-planned (token counts x2 each time).
_MAX_REPLANS = 4


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
