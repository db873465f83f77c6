"""Chunkers: cut a document into chunks that tile it.

The late-chunking pipeline that embeds these chunks lives in :mod:`._late_chunking`.

Chunk rules, shared by every chunker here:

- Chunks tile the document: the first starts at 0, each starts where the previous ended, the
  last ends at ``len(document)``; ``document[c.start:c.end] == c.text``. An empty document gives
  no chunks.
- Whitespace stays attached to the end of the chunk before it (leading whitespace of the
  document belongs to the first chunk).
- Blank chunks (only whitespace or invisible format characters such as zero-width spaces) are
  merged into the chunk before them (into the next one when they come first): they would have
  no tokens to pool. A document that is all blank is one chunk.

What the model sees: each chunk's text with the whitespace at its edges removed. The tokenizer
turns a trailing space into a stray ``▁`` token, and each later chunk gets the tokenizer's own
leading ``▁`` when tokenized alone, which stands for the separator; so the stripped chunks give
the same token sequence as the whole text would. Spans and ``EmbeddedChunk.text`` always refer
to the unstripped chunk.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._errors import InputError, InputTypeError

__all__ = [
    "BoundaryChunker",
    "CappedChunker",
    "Chunk",
    "Chunker",
    "SentenceChunker",
    "TokenChunker",
]

#: :class:`CappedChunker`'s default longest chunk, in characters.
MAX_CHUNK_CHARS = 4000

# Characters that carry no token: whitespace plus invisible format characters.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_EDGE = re.compile(rf"^[\s{_INVISIBLE}]+|[\s{_INVISIBLE}]+$")
_BLANK = re.compile(rf"[\s{_INVISIBLE}]*")


def _is_blank(text: str) -> bool:
    return _BLANK.fullmatch(text) is not None


def _model_text(text: str) -> str:
    """The chunk text the model sees: whitespace at both edges removed."""
    return _EDGE.sub("", text)


# -- chunks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One piece of a document and where it lies in it.

    Attributes:
        text: The chunk text, exactly ``document[start:end]``.
        start: Character offset of the first character (inclusive).
        end: Character offset after the last character (exclusive).

    Example:
        >>> Chunk("Hi. ", 0, 4).span
        (0, 4)
    """

    text: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputTypeError(f"Chunk.text must be str, not {type(self.text).__name__}")
        if self.start < 0 or self.end - self.start != len(self.text):
            raise InputError(
                f"Chunk span ({self.start}, {self.end}) does not fit its text of "
                f"{len(self.text)} characters"
            )

    @property
    def span(self) -> tuple[int, int]:
        """``(start, end)`` character offsets in the document."""
        return (self.start, self.end)


@runtime_checkable
class Chunker(Protocol):
    """Anything that cuts a document into chunks that tile it (see the module rules)."""

    def chunk(self, document: str) -> list[Chunk]: ...


def _merge(document: str, bounds: list[tuple[int, int]], keep: list[bool]) -> list[Chunk]:
    """Merge every piece with ``keep[i] == False`` into its neighbour and build the chunks.

    A dropped piece joins the kept piece before it, or the first kept piece after it when none
    comes before. When no piece is kept, the whole range is one chunk.
    """
    merged: list[list[int]] = []
    pending_start: int | None = None
    for (start, end), ok in zip(bounds, keep, strict=True):
        if ok:
            if pending_start is not None:
                merged.append([pending_start, end])
                pending_start = None
            else:
                merged.append([start, end])
        elif merged:
            merged[-1][1] = end
        elif pending_start is None:
            pending_start = start
    if pending_start is not None:  # nothing kept at all
        merged.append([pending_start, bounds[-1][1]])
    return [Chunk(document[s:e], s, e) for s, e in merged]


def _chunks_from_cuts(document: str, cuts: Sequence[int]) -> list[Chunk]:
    """Chunks between sorted cut positions (0 and len(document) implied), blanks merged."""
    if not document:
        return []
    edges = [0, *(c for c in cuts if 0 < c < len(document)), len(document)]
    bounds = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    return _merge(document, bounds, [not _is_blank(document[a:b]) for a, b in bounds])


def _check_document(document: object) -> str:
    if not isinstance(document, str):
        raise InputTypeError(f"document must be a str, not {type(document).__name__}")
    return document


# Sentence enders. "Strong" ones end a sentence even with no space after them (CJK and other
# scripts written without spaces); "weak" ones (Latin and similar) only before whitespace or
# the end of the text, so "3.8" or "jina.ai" do not split.
_STRONG = (
    "\u3002\uff01\uff1f\uff61\ufe12\ufe52\ufe56\ufe57\uff0e"  # CJK full stops, ! and ?
    "\u0964\u0965\u1362\u1367\u1368\u104b\u104f\u17d4\u17d5"  # Indic, Ethiopic, Myanmar, Khmer
)
_WEAK = ".!?\u2026\u2025\u203c\u2047\u2048\u2049\u061f\u06d4\u0589"
_CLOSERS = (
    "\"'\u201d\u2019\u00bb\u203a)]}"  # quotes and brackets
    "\uff09\uff3d\uff5d\u300d\u300f\u3011\u3015\u3017\u3019\u301b\u3009\u300b"  # CJK
)
_S, _W, _C = (re.escape(x) for x in (_STRONG, _WEAK, _CLOSERS))
_SENTENCE_END = re.compile(
    rf"[{_W}{_S}]*[{_S}][{_W}{_S}]*[{_C}]*\s*"  # strong ender: always a boundary
    rf"|[{_W}]+[{_C}]*(?:\s+|\Z)"  # weak ender: needs whitespace (or the end) after it
    r"|\n[^\S\n]*\n\s*"  # a blank line ends a paragraph (headings, list blocks)
)


def _sentence_cuts(document: str) -> list[int]:
    cuts: list[int] = []
    for m in _SENTENCE_END.finditer(document):
        end = m.end()
        if end >= len(document):
            break
        if m.group().rstrip().rstrip(_CLOSERS) == ".":
            # "e.g. this", "U.S. law", "J. Smith", "Fig. 3": not the end of a sentence.
            start = m.start()
            while start > 0 and not document[start - 1].isspace():
                start -= 1
            word = document[start : m.start()]
            if "." in word or (len(word) == 1 and word.isalpha()) or document[end].isdigit():
                continue
        cuts.append(end)
    return cuts


class SentenceChunker:
    """Cut a document into sentences (multilingual), optionally grouped up to a size.

    A sentence ends after ``.``, ``!``, ``?``, ``…`` (or a run of them, plus closing quotes and
    brackets) followed by whitespace; after CJK and other enders (``。``, full-width ! and ?)
    even with no space after them (Devanagari ``।``, Ethiopic ``።``, Arabic ``؟`` ...); and
    at a blank line.
    A dot after an abbreviation with dots or a single letter ("e.g.", "U.S.", "J.") or before
    a number ("Fig. 3") is not an end. Whitespace
    after a sentence stays with it, so the chunks tile the text.

    Args:
        max_chars: Group consecutive sentences into chunks of at most this many characters
            (a longer sentence stays one chunk of its own; use :class:`TokenChunker` for a hard
            limit). ``None`` (default): one chunk per sentence.

    Raises:
        InputError: ``max_chars`` is not a positive int.

    Example:
        >>> [c.text for c in SentenceChunker().chunk("Berlin is big. It has 3.8 million people.")]
        ['Berlin is big. ', 'It has 3.8 million people.']
    """

    def __init__(self, max_chars: int | None = None) -> None:
        if max_chars is not None and (
            isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1
        ):
            raise InputError(f"max_chars must be a positive int or None, got {max_chars!r}")
        self.max_chars = max_chars

    def chunk(self, document: str) -> list[Chunk]:
        """Cut ``document`` into sentence chunks that tile it."""
        sentences = _chunks_from_cuts(_check_document(document), _sentence_cuts(document))
        if self.max_chars is None or len(sentences) < 2:
            return sentences
        cuts: list[int] = []
        group_start = 0
        for s in sentences[1:]:
            if s.end - group_start > self.max_chars:
                cuts.append(s.start)
                group_start = s.start
        return _chunks_from_cuts(document, cuts)

    def __repr__(self) -> str:
        return f"SentenceChunker(max_chars={self.max_chars!r})"


def _resolve_tokenizer(obj: Any) -> Any:
    """A ``tokenizers.Tokenizer`` from a Tokenizer, a transformers fast tokenizer or a provider."""
    for _ in range(3):
        backend = getattr(obj, "backend_tokenizer", None)  # transformers' fast tokenizers
        if backend is not None:
            obj = backend
        if callable(getattr(obj, "encode", None)) and callable(getattr(obj, "token_to_id", None)):
            return obj
        inner = getattr(obj, "tokenizer", None)
        if inner is None:
            break
        obj = inner
    raise InputTypeError(
        "TokenChunker needs a tokenizers.Tokenizer or a LocalProvider (its .tokenizer); "
        f"got {type(obj).__name__}. For the Jina API, count with the model's tokenizer: "
        "TokenChunker(LocalProvider('jinaai/jina-embeddings-v3')) loads only tokenizer files"
    )


def _looks_tokenizer_like(obj: Any) -> bool:
    cls = type(obj)
    return (
        hasattr(cls, "tokenizer")
        or "tokenizer" in getattr(obj, "__dict__", {})
        or hasattr(obj, "backend_tokenizer")
        or (callable(getattr(obj, "encode", None)) and callable(getattr(obj, "token_to_id", None)))
    )


class TokenChunker:
    """Cut a document into chunks of at most ``tokens`` tokens of the model's tokenizer.

    The document is tokenized once (no special tokens); a chunk is a run of consecutive tokens
    and its span runs from its first token's first non-space character to the next chunk's
    start (the character offsets come from the tokenizer). Cuts go to the start of a word when
    one lies in the last ``tokens - 1`` tokens of a chunk, so words are not split unless a
    single word is longer than a chunk. Counts refer to the whole document's tokenization (a
    lone ``▁`` token, which is only whitespace, goes with the token after it); a chunk
    tokenized on its own may differ by a token at a cut.

    Args:
        tokenizer_or_provider: A ``tokenizers.Tokenizer``, a transformers fast tokenizer, or a
            :class:`LocalProvider` (its ``.tokenizer`` is loaded on first use: tokenizer files
            only, no weights).
        tokens: Maximum tokens per chunk (default 256).

    Raises:
        InputTypeError: the first argument has no tokenizer.
        InputError: ``tokens`` is not a positive int.

    Example:
        >>> chunker = TokenChunker(LocalProvider(), tokens=128)  # doctest: +SKIP
        >>> chunks = chunker.chunk(long_text)  # doctest: +SKIP
    """

    def __init__(self, tokenizer_or_provider: Any, tokens: int = 256) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise InputError(f"tokens must be a positive int, got {tokens!r}")
        if not _looks_tokenizer_like(tokenizer_or_provider):
            _resolve_tokenizer(tokenizer_or_provider)  # raises the explanatory error
        self._source = tokenizer_or_provider
        self._tokenizer: Any = None
        self.tokens = tokens

    @property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` used (loaded on first use; never truncates or pads)."""
        if self._tokenizer is None:
            tok = _resolve_tokenizer(self._source)
            if getattr(tok, "truncation", None) is not None or getattr(tok, "padding", None):
                # A copy, so a shared tokenizer keeps its settings; truncation would lose text.
                tok = type(tok).from_str(tok.to_str())
                tok.no_truncation()
                tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    def chunk(self, document: str) -> list[Chunk]:
        """Cut ``document`` into chunks of at most ``tokens`` tokens that tile it."""
        if not _check_document(document):
            return []
        enc = self.tokenizer.encode(document, add_special_tokens=False)
        offsets: list[tuple[int, int]] = list(enc.offsets)
        word_ids: list[int | None] = list(enc.word_ids)
        n = len(offsets)

        def char_start(k: int) -> int:
            start, end = offsets[k]
            while start < end and (document[start].isspace() or document[start] in _INVISIBLE):
                start += 1
            return start

        def word_start(k: int) -> bool:
            return word_ids[k] is None or word_ids[k] != word_ids[k - 1]

        cuts: list[int] = []
        i = 0
        while n - i > self.tokens:
            j = i + self.tokens
            k = j
            while k > i + 1 and not word_start(k):
                k -= 1
            if not word_start(k):
                k = j
            cut = char_start(k)
            if cut > (cuts[-1] if cuts else 0):
                cuts.append(cut)
            i = k
        return _chunks_from_cuts(document, cuts)

    def __repr__(self) -> str:
        return f"TokenChunker(tokens={self.tokens})"


class BoundaryChunker:
    """Cut a document at caller-given character offsets.

    Args:
        boundaries: Strictly increasing cut offsets in ``0..len(document)`` (0 and the length
            are allowed and mean the document's edges). Blank pieces are merged into their
            neighbour like every chunker does.

    Raises:
        InputTypeError: a boundary is not an int.
        InputError: boundaries are not strictly increasing or are negative; at ``chunk`` time,
            a boundary lies beyond the document.

    Example:
        >>> [c.text for c in BoundaryChunker([5]).chunk("Hello world")]
        ['Hello', ' world']
    """

    def __init__(self, boundaries: Sequence[int]) -> None:
        if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
            raise InputTypeError(
                f"boundaries must be a list of int offsets, not {type(boundaries).__name__}"
            )
        items = list(boundaries)
        for i, b in enumerate(items):
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
                raise InputTypeError(f"boundaries[{i}] is {type(b).__name__}, not int")
            if b < 0:
                raise InputError(f"boundaries[{i}] is {b}; offsets must be >= 0")
            if i and b <= items[i - 1]:
                raise InputError(
                    f"boundaries must be strictly increasing: boundaries[{i}] = {b} comes after "
                    f"{items[i - 1]}"
                )
        self.boundaries: tuple[int, ...] = tuple(int(b) for b in items)

    def chunk(self, document: str) -> list[Chunk]:
        """Cut ``document`` at the boundaries."""
        _check_document(document)
        if self.boundaries and self.boundaries[-1] > len(document):
            raise InputError(
                f"boundary {self.boundaries[-1]} is beyond the end of the document "
                f"({len(document)} characters)"
            )
        return _chunks_from_cuts(document, self.boundaries)

    def __repr__(self) -> str:
        return f"BoundaryChunker({list(self.boundaries)!r})"


class CappedChunker:
    """Another chunker's chunks, any longer than ``max_chars`` cut at whitespace (a run-on
    "sentence", a log file).

    Keeps every chunk within what stores hold (Milvus VARCHAR, Pinecone metadata) and what the
    model reads in one pass; the pieces still tile the document.

    Args:
        inner: The chunker whose chunks are capped.
        max_chars: The longest chunk (default 4,000 characters).

    Example:
        >>> chunker = CappedChunker(SentenceChunker(max_chars=1000), max_chars=500)
        >>> [len(c.text) for c in chunker.chunk("x" * 1200)]
        [500, 500, 200]
    """

    def __init__(self, inner: Chunker, max_chars: int = MAX_CHUNK_CHARS) -> None:
        if not callable(getattr(inner, "chunk", None)):
            raise InputTypeError("inner must be a chunker (a chunk(document) method)")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 2:
            raise InputError(f"max_chars must be an int >= 2, got {max_chars!r}")
        self.inner = inner
        self.max_chars = max_chars

    def chunk(self, document: str) -> list[Chunk]:
        out: list[Chunk] = []
        for c in self.inner.chunk(document):
            if len(c.text) <= self.max_chars:
                out.append(c)
                continue
            start = c.start
            while start < c.end:
                end = min(c.end, start + self.max_chars)
                if end < c.end:
                    space = document.rfind(" ", start + self.max_chars // 2, end)
                    end = space + 1 if space != -1 else end
                piece = Chunk(document[start:end], start, end)
                if out and out[-1].end == start and not piece.text.strip():
                    last = out.pop()  # a blank piece joins the one before it
                    piece = Chunk(document[last.start : end], last.start, end)
                out.append(piece)
                start = end
        return out
