"""Keyword (BM25) term vectors from the model's own tokenizer, for hybrid search.

The stores that cannot analyse text themselves (Qdrant, Pinecone) get one sparse vector per
point next to its dense one(s). The terms are the pieces of jina-embeddings-v3's own
multilingual tokenizer (``tokenizer.json``), so keyword search covers every language the model
does with nothing extra to download:

* text is lowercased, then tokenized without special tokens; the bare word-boundary piece
  (``▁``) is dropped;
* a known piece's term id is its token id; an unknown piece (``<unk>``) keeps its identity: its
  id is a hash of its surface text above the vocabulary (all unknown pieces would otherwise
  collide on one id);
* a document's weight for a term is BM25's saturated term frequency
  ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` with ``dl`` its number of terms;
* a query's weight for each distinct term is 1; a query keeps at most ``max_query_terms``
  distinct terms (default 1,024, the first ones in the text), so one query's keyword side
  cannot cost more than that budget however long it is (the dense side is bounded by the
  model's token limit). 1,024 also fits Pinecone's limit on a sparse query's entries.

Qdrant multiplies in the IDF itself (``Modifier.IDF``), so score = sum over shared terms of
idf * saturated tf: BM25. ``avgdl`` is a fixed parameter (default 256 terms, the value Qdrant's
own FastEmbed BM25 uses), not a corpus statistic: a point's weights then never depend on what
else is in the collection, so writers need no coordination and re-indexing one document never
changes another's vector. Chunks are bounded in size, so a constant is close to the real mean;
set it to your chunks' typical length if they are much shorter or longer.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, missing_extra
from ._validate import check_int

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from ._provider import EmbeddingProvider

__all__ = ["DEFAULT_MAX_QUERY_TERMS", "TermEncoder", "TermVector"]

logger = logging.getLogger(__name__)

#: Distinct keyword terms one query keeps (see the module docstring).
DEFAULT_MAX_QUERY_TERMS = 1024

_BOUNDARY = "\u2581"
#: Term ids stay below 2**31 (Qdrant and Pinecone take uint32; some clients sign-convert).
_ID_SPACE = 2**31


@dataclass(frozen=True)
class TermVector:
    """A sparse vector: term ids (ascending, distinct) and their weights."""

    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


class TermEncoder:
    """BM25-weighted term vectors over the model's tokenizer (see the module docstring).

    Args:
        tokenizer_file: The model's ``tokenizer.json``; or None with ``provider``.
        provider: Take the tokenizer file from this provider (``provider.tokenizer_file()``),
            resolved on first use (the constructor does no I/O).
        k1: BM25 term-frequency saturation (> 0).
        b: BM25 length normalisation (0..1).
        avgdl: The document length (in terms) ``b`` normalises against (> 0).
        max_query_terms: Distinct terms a query keeps, the first ones in its text (a longer
            query is cut, with a warning): the budget of one query's keyword side.

    Example:
        >>> enc = TermEncoder(provider=LocalProvider("./jina-embeddings-v3"))  # doctest: +SKIP
        >>> enc.encode_documents(["Error ERR-4471 in the disk driver"])[0]  # doctest: +SKIP
        TermVector(indices=[...], values=[...])
    """

    def __init__(
        self,
        tokenizer_file: str | Path | None = None,
        *,
        provider: EmbeddingProvider | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        avgdl: float = 256.0,
        max_query_terms: int = DEFAULT_MAX_QUERY_TERMS,
    ) -> None:
        if (tokenizer_file is None) == (provider is None):
            raise ConfigurationError("give TermEncoder either tokenizer_file or provider")
        for name, value, low in (("k1", k1, 0.0), ("avgdl", avgdl, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= low:
                raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b <= 1.0:
            raise ConfigurationError(f"b must be a number in 0..1, got {b!r}")
        self.max_query_terms = check_int("max_query_terms", max_query_terms)
        self._file = Path(tokenizer_file) if tokenizer_file is not None else None
        self._provider = provider
        self.k1, self.b, self.avgdl = float(k1), float(b), float(avgdl)
        self._tok: Tokenizer | None = None
        self._unk: int | None = None
        self._vocab = 0
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        """The BM25 parameters (what an index must be queried with)."""
        return {"k1": self.k1, "b": self.b, "avgdl": self.avgdl}

    def load(self) -> None:
        """Load the tokenizer now (stores call this before their first write or query).

        Raises:
            ConfigurationError: the provider has no local tokenizer file (the message says how
                to give one), or the file is not a tokenizer.
            MissingDependencyError: the ``tokenizers`` package is not installed.
        """
        if self._tok is not None:
            return
        with self._lock:
            if self._tok is not None:
                return
            try:
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise missing_extra("local", "tokenizers") from exc
            path = self._file
            if path is None:
                assert self._provider is not None
                path = self._provider.tokenizer_file()
            try:
                tok = Tokenizer.from_file(str(path))
            except Exception as exc:  # tokenizers raises a bare Exception on bad files
                raise ConfigurationError(
                    f"cannot load the tokenizer {path} for keyword term vectors: {exc}"
                ) from None
            tok.no_padding()
            tok.no_truncation()
            self._unk = tok.token_to_id("<unk>")
            self._vocab = int(tok.get_vocab_size(with_added_tokens=True))
            self._tok = tok

    def terms(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's term ids, in text order (with repeats)."""
        self.load()
        assert self._tok is not None
        lowered = [t.lower() for t in texts]
        out = []
        for text, enc in zip(
            lowered, self._tok.encode_batch(lowered, add_special_tokens=False), strict=True
        ):
            ids: list[int] = []
            for token_id, piece, (start, end) in zip(enc.ids, enc.tokens, enc.offsets, strict=True):
                if piece == _BOUNDARY:
                    continue
                if token_id == self._unk:
                    surface = text[start:end].strip(_BOUNDARY + " ")
                    if not surface:
                        continue
                    span = _ID_SPACE - self._vocab
                    token_id = self._vocab + zlib.crc32(surface.encode("utf-8")) % span
                ids.append(int(token_id))
            out.append(ids)
        return out

    def encode_documents(self, texts: Sequence[str]) -> list[TermVector]:
        """Term vectors of passages: BM25-saturated term frequencies."""
        out = []
        for ids in self.terms(texts):
            counts = Counter(ids)
            norm = self.k1 * (1.0 - self.b + self.b * len(ids) / self.avgdl)
            indices = sorted(counts)
            values = [counts[i] * (self.k1 + 1.0) / (counts[i] + norm) for i in indices]
            out.append(TermVector(indices, values))
        return out

    def encode_queries(self, texts: Sequence[str]) -> list[TermVector]:
        """Term vectors of queries: weight 1 per distinct term, at most ``max_query_terms``."""
        out = []
        for i, ids in enumerate(self.terms(texts)):
            distinct = list(dict.fromkeys(ids))  # first occurrences, in text order
            if len(distinct) > self.max_query_terms:
                logger.warning(
                    "query %d has %d distinct keyword terms; searching with the first %d "
                    "(max_query_terms)",
                    i,
                    len(distinct),
                    self.max_query_terms,
                )
                distinct = distinct[: self.max_query_terms]
            indices = sorted(distinct)
            out.append(TermVector(indices, [1.0] * len(indices)))
        return out
