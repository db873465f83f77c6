"""Chunkers and the window planner: pure logic, no model (the tiny tokenizer only)."""
# ruff: noqa: RUF001  (full-width CJK punctuation is the point of these tests)

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jv3_integrations import (
    BoundaryChunker,
    Chunk,
    Chunker,
    InputError,
    InputTypeError,
    SentenceChunker,
    TokenChunker,
)
from jv3_integrations.core._late_windows import _plan_windows
from tests.conftest import CONFORMANCE_DIR

TOKENIZER_FILE = CONFORMANCE_DIR / "tokenizer.json"


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER_FILE))


def texts(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks]


def assert_tiles(document: str, chunks: list[Chunk]) -> None:
    """The chunks cover the document in order, without gaps or overlap, and none is blank."""
    if not document:
        assert chunks == []
        return
    assert chunks, "a non-empty document must give at least one chunk"
    assert chunks[0].start == 0
    assert chunks[-1].end == len(document)
    for a, b in itertools.pairwise(chunks):
        assert a.end == b.start, f"gap or overlap between {a.span} and {b.span}"
    for c in chunks:
        assert c.end > c.start
        assert document[c.start : c.end] == c.text
        assert c.span == (c.start, c.end)
    if len(chunks) > 1:
        blank = [c for c in chunks if not c.text.strip(" \t\n\r\x0b\x0c\u3000\u200b")]
        assert not blank, f"blank chunks were not merged: {blank}"


# -- property: every chunker tiles every text --------------------------------------------

ALPHABET = st.sampled_from(
    [
        *list("abcXYZ 19"),
        ".",
        "!",
        "?",
        "...",
        "…",
        "。",
        "！",
        "？",
        "।",
        "؟",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        '"',
        "」",
        ")",
        "\u200b",
        "\u3000",
        "Berlin",
        "東京",
        "e.g.",
        "3.8",
        "berlin is big",
    ]
)
DOCUMENTS = st.lists(ALPHABET, max_size=60).map("".join)


@settings(max_examples=150, deadline=None)
@given(document=DOCUMENTS)
def test_sentence_chunks_tile_the_text(document: str) -> None:
    assert_tiles(document, SentenceChunker().chunk(document))


@settings(max_examples=150, deadline=None)
@given(document=DOCUMENTS, max_chars=st.integers(1, 40))
def test_grouped_sentence_chunks_tile_the_text(document: str, max_chars: int) -> None:
    chunks = SentenceChunker(max_chars=max_chars).chunk(document)
    assert_tiles(document, chunks)
    sentences = SentenceChunker().chunk(document)
    starts = {s.start for s in sentences}
    for c in chunks:
        assert c.start in starts, "groups must start at sentence starts"
        inner = [s for s in sentences if c.start <= s.start < c.end]
        if len(inner) > 1:
            assert len(c.text) <= max_chars, "a group of several sentences exceeds max_chars"


@settings(max_examples=150, deadline=None)
@given(document=DOCUMENTS, tokens=st.integers(1, 12))
def test_token_chunks_tile_the_text(tokenizer, document: str, tokens: int) -> None:  # type: ignore[no-untyped-def]
    assert_tiles(document, TokenChunker(tokenizer, tokens=tokens).chunk(document))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), document=DOCUMENTS)
def test_boundary_chunks_tile_the_text(data: st.DataObject, document: str) -> None:
    cuts = data.draw(st.sets(st.integers(0, len(document))).map(sorted))
    chunks = BoundaryChunker(cuts).chunk(document)
    assert_tiles(document, chunks)
    for c in chunks[1:]:
        assert c.start in cuts, "chunks may only start at a given boundary"


def test_chunkers_satisfy_the_protocol(tokenizer) -> None:  # type: ignore[no-untyped-def]
    for chunker in (SentenceChunker(), TokenChunker(tokenizer), BoundaryChunker([1])):
        assert isinstance(chunker, Chunker)


# -- sentences ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "Berlin is the capital. Its population is 3.8 million.",
            ["Berlin is the capital. ", "Its population is 3.8 million."],
        ),
        ("Really?! Yes.  And then…  No", ["Really?! ", "Yes.  ", "And then…  ", "No"]),
        ('He said "Hi." Then he left.', ['He said "Hi." ', "Then he left."]),
        (
            "東京は日本の首都です。人口は多い！本当？はい",
            ["東京は日本の首都です。", "人口は多い！", "本当？", "はい"],
        ),
        ("「行こう。」と彼は言った。", ["「行こう。」", "と彼は言った。"]),
        ("नमस्ते। आप कैसे हैं?", ["नमस्ते। ", "आप कैसे हैं?"]),
        ("هل أنت بخير؟ نعم.", ["هل أنت بخير؟ ", "نعم."]),
        ("Title\n\nFirst line\nsame paragraph", ["Title\n\n", "First line\nsame paragraph"]),
        ("Use e.g. this one. Wait... then go.", ["Use e.g. this one. ", "Wait... ", "then go."]),
        ("See jina.ai for v3.1 details.", ["See jina.ai for v3.1 details."]),
        ("The U.S. law. J. Smith wrote it.", ["The U.S. law. ", "J. Smith wrote it."]),
        ("See Fig. 3 for details. Then go.", ["See Fig. 3 for details. ", "Then go."]),
        ("all lower case. still two sentences .", ["all lower case. ", "still two sentences ."]),
        ("  Leading space. Trailing space.   ", ["  Leading space. ", "Trailing space.   "]),
        ("One.\u200b Two.", ["One.\u200b Two."]),
        ("   ", ["   "]),
        ("", []),
    ],
)
def test_sentence_boundaries(document: str, expected: list[str]) -> None:
    assert texts(SentenceChunker().chunk(document)) == expected


def test_sentence_grouping_packs_up_to_max_chars() -> None:
    doc = "Ab cd. Ef gh. Ij kl mn op qr st uv. Wx."
    assert texts(SentenceChunker(max_chars=14).chunk(doc)) == [
        "Ab cd. Ef gh. ",
        "Ij kl mn op qr st uv. ",  # longer than max_chars: one sentence stays whole
        "Wx.",
    ]
    assert texts(SentenceChunker(max_chars=1000).chunk(doc)) == [doc]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_sentence_max_chars_is_validated(bad: object) -> None:
    with pytest.raises(InputError, match="max_chars"):
        SentenceChunker(max_chars=bad)  # type: ignore[arg-type]


def test_sentence_chunker_rejects_non_str() -> None:
    with pytest.raises(InputTypeError):
        SentenceChunker().chunk(["a list"])  # type: ignore[arg-type]


def test_sentence_chunking_is_linear_in_the_document_length() -> None:
    import time

    doc = "berlin is the capital. its population is 3.8 million! 東京は首都です。 " * 6000
    started = time.perf_counter()
    chunks = SentenceChunker().chunk(doc)
    assert len(chunks) == 18000
    # linear: well under a second here; the quadratic scan this guards against took minutes
    assert time.perf_counter() - started < 10


# -- tokens ------------------------------------------------------------------------------


def token_starts(tokenizer, document: str) -> list[int]:  # type: ignore[no-untyped-def]
    """Where each visible token starts (tokenizer offsets; a lone "▁" token is whitespace)."""
    enc = tokenizer.encode(document, add_special_tokens=False)
    out = []
    for s, e in enc.offsets:
        while s < e and document[s].isspace():
            s += 1
        if s < e:
            out.append(s)
    return out


DOC = (
    "berlin is the capital of germany . the river spree flows through berlin . "
    "chamomile and aloe vera are used in skincare . embedding models represent documents ."
)


@pytest.mark.parametrize("n", [1, 3, 8, 32, 1000])
def test_token_spans_match_the_tokenizer(tokenizer, n: int) -> None:  # type: ignore[no-untyped-def]
    chunks = TokenChunker(tokenizer, tokens=n).chunk(DOC)
    assert_tiles(DOC, chunks)
    starts = token_starts(tokenizer, DOC)
    for c in chunks:
        inside = [s for s in starts if c.start <= s < c.end]
        assert 1 <= len(inside) <= n, f"{c.text!r} holds {len(inside)} tokens"
        if c.start:
            assert c.start in starts, "a chunk must start at a token"
    total = len(starts)
    if n >= total:
        assert texts(chunks) == [DOC]
    else:
        assert len(chunks) >= -(-total // n)


def test_token_chunks_cut_between_words(tokenizer) -> None:  # type: ignore[no-untyped-def]
    longest = max(len(tokenizer.encode(w, add_special_tokens=False).ids) for w in DOC.split())
    assert longest > 3  # the tiny vocabulary spells some words letter by letter
    # every word fits in a chunk, so no word may be split
    for c in TokenChunker(tokenizer, tokens=longest).chunk(DOC)[:-1]:
        assert c.text.endswith(" "), f"chunk {c.text!r} ends inside a word"


def test_token_chunks_split_a_word_longer_than_a_chunk(tokenizer) -> None:  # type: ignore[no-untyped-def]
    word = "xqzxqzxqzxqz"  # not in the tiny vocabulary: many single-character tokens
    n_tokens = len(tokenizer.encode(word, add_special_tokens=False).ids)
    assert n_tokens > 4
    chunks = TokenChunker(tokenizer, tokens=4).chunk(word)
    assert "".join(texts(chunks)) == word
    assert len(chunks) == -(-n_tokens // 4)


def test_token_chunker_takes_a_provider_like_object_lazily(tokenizer) -> None:  # type: ignore[no-untyped-def]
    class HasTokenizer:
        loads = 0

        @property
        def tokenizer(self):  # type: ignore[no-untyped-def]
            HasTokenizer.loads += 1
            return tokenizer

    chunker = TokenChunker(HasTokenizer(), tokens=5)
    assert HasTokenizer.loads == 0, "the constructor must not load the tokenizer"
    assert texts(chunker.chunk(DOC)) == texts(TokenChunker(tokenizer, tokens=5).chunk(DOC))


def test_token_chunker_ignores_truncation_and_leaves_the_tokenizer_alone(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    truncating = Tokenizer.from_str(tokenizer.to_str())
    truncating.enable_truncation(max_length=5)
    chunks = TokenChunker(truncating, tokens=10).chunk(DOC)
    assert "".join(texts(chunks)) == DOC
    assert texts(chunks) == texts(TokenChunker(tokenizer, tokens=10).chunk(DOC))
    assert truncating.truncation is not None and truncating.truncation["max_length"] == 5


def test_token_chunker_validates_arguments(tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputTypeError, match="LocalProvider"):
        TokenChunker(object())
    with pytest.raises(InputError, match="tokens"):
        TokenChunker(tokenizer, tokens=0)
    with pytest.raises(InputError, match="tokens"):
        TokenChunker(tokenizer, tokens=True)


# -- boundaries --------------------------------------------------------------------------


def test_boundaries_cut_where_told() -> None:
    doc = "Hello world. Bye."
    assert texts(BoundaryChunker([5, 12]).chunk(doc)) == ["Hello", " world.", " Bye."]
    assert texts(BoundaryChunker([0, 5, len(doc)]).chunk(doc)) == ["Hello", " world. Bye."]
    assert texts(BoundaryChunker([]).chunk(doc)) == [doc]


def test_boundaries_merge_blank_pieces_into_the_previous_chunk() -> None:
    assert texts(BoundaryChunker([3, 5]).chunk("abc  def")) == ["abc  ", "def"]
    assert texts(BoundaryChunker([2]).chunk("  def")) == ["  def"]  # leading blank joins next


@pytest.mark.parametrize(
    ("boundaries", "error", "match"),
    [
        ([5, 3], InputError, "strictly increasing"),
        ([3, 3], InputError, "strictly increasing"),
        ([-1], InputError, ">= 0"),
        ([1.5], InputTypeError, "not int"),
        ([True], InputTypeError, "not int"),
        ("12", InputTypeError, "list"),
    ],
)
def test_boundaries_are_validated(boundaries: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        BoundaryChunker(boundaries)  # type: ignore[arg-type]


def test_boundary_beyond_the_document_is_an_input_error() -> None:
    chunker = BoundaryChunker([3, 50])
    with pytest.raises(InputError, match="beyond the end"):
        chunker.chunk("short text")


# -- window planner ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=40),
    budget=st.integers(40, 120),
    context=st.integers(0, 30),
    max_items=st.one_of(st.none(), st.integers(3, 12)),
)
def test_windows_keep_every_chunk_once_in_order_within_budget(
    counts: list[int], budget: int, context: int, max_items: int | None
) -> None:
    windows = _plan_windows(counts, budget, context, max_items)
    assert windows[0].start == 0 and windows[-1].end == len(counts)
    for a, b in itertools.pairwise(windows):
        assert a.end == b.start
    for w in windows:
        assert w.lo <= w.start < w.end <= w.hi <= len(counts)
        assert sum(counts[w.lo : w.hi]) <= budget
        if max_items is not None:
            assert w.hi - w.lo <= max_items
    # every chunk whose two neighbours fit in one window with it is kept in a window with both
    for i in range(1, len(counts) - 1):
        if counts[i - 1] + counts[i] + counts[i + 1] <= budget:
            (w,) = [w for w in windows if w.start <= i < w.end]
            assert w.lo <= i - 1 and w.hi >= i + 2, f"chunk {i} lacks a neighbour in {w}"
    if sum(counts) <= budget and (max_items is None or len(counts) <= max_items):
        assert len(windows) == 1 and (windows[0].lo, windows[0].hi) == (0, len(counts))


def test_windows_respect_the_item_limit_even_when_tokens_fit() -> None:
    windows = _plan_windows([1] * 5000, 10_000, 512, 2048)
    assert len(windows) >= 3
    assert all(w.hi - w.lo <= 2048 for w in windows)


def test_windows_carry_about_context_tokens_each_side() -> None:
    windows = _plan_windows([10] * 20, 60, 20)
    assert len(windows) > 1
    for w in windows[1:]:
        assert w.start - w.lo == 2  # 20 tokens of context before
    for w in windows[:-1]:
        assert w.hi - w.end == 2  # 20 tokens of context after


def test_a_chunk_larger_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError):
        _plan_windows([5, 200, 5], 100, 10)


def test_no_chunks_no_windows() -> None:
    assert _plan_windows([], 100, 10) == []
