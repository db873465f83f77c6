"""Late chunking through embed_chunks on the real tiny model and on our own server."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations import (
    BaseProvider,
    BoundaryChunker,
    EmbeddedChunk,
    Embeddings,
    EmbedRequest,
    InputError,
    JinaAPIProvider,
    LocalProvider,
    SentenceChunker,
    Task,
    aembed_chunks,
    aembed_chunks_many,
    embed_chunks,
    embed_chunks_many,
)
from jv3_integrations.core import TokenCount
from tests.conftest import CONFORMANCE_DIR, SERVER_API_KEY

CASES = [
    c
    for c in json.loads((CONFORMANCE_DIR / "expected.json").read_text())["cases"]
    if c["kind"] == "late_chunking"
]

# Sentences in the tiny model's vocabulary; each is distinct so a chunk can be found by text.
SENTENCES = [
    "berlin is the capital of germany .",
    "its population is about four million .",
    "the river spree flows through berlin .",
    "embedding models represent documents as vectors .",
    "aloe vera and chamomile are used in skincare .",
    "the new season brings bold colors .",
    "retrieval of evidence needs a query and a passage .",
    "long documents lose context when they are cut .",
    "late chunking keeps the context of the whole document .",
    "search techniques for organic skincare are new .",
    "the capital has an innovative vector model .",
    "sensitive skin needs a new organic passage .",
]
DOC = " ".join(SENTENCES)


def vectors(chunks: list[EmbeddedChunk]) -> np.ndarray:
    return np.stack([c.vector for c in chunks])


class Recorder(BaseProvider):
    """Delegates to a real provider and records every call (texts, late_chunking flag)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[list[str], bool]] = []
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return str(self.inner.model_name)

    @property
    def max_dimensions(self) -> int:
        return int(self.inner.max_dimensions)

    def count_tokens(self, texts: Any, **kwargs: Any) -> TokenCount:
        return self.inner.count_tokens(texts, **kwargs)  # type: ignore[no-any-return]

    def _embed(self, request: EmbedRequest) -> Embeddings:
        with self._lock:
            self.calls.append((list(request.texts), request.late_chunking))
        return self.inner.embed(
            request.texts,
            task=request.task,
            dimensions=request.dimensions,
            normalized=request.normalized,
            late_chunking=request.late_chunking,
        )


# -- conformance -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{c['task']}-{len(c['texts'])}chunks-window{c['window']}" for c in CASES],
)
def test_conformance_late_chunking_through_embed_chunks(
    local_provider: LocalProvider, conformance_dir: Path, case: dict[str, Any]
) -> None:
    provider = local_provider
    if case["window"] is not None:
        provider = LocalProvider(
            str(conformance_dir), max_length=case["window"], late_chunking_overlap=case["overlap"]
        )
    out = embed_chunks(provider, case["texts"], task=case["task"])
    assert [c.text for c in out] == case["texts"]
    pos = 0
    for c, text in zip(out, case["texts"], strict=True):
        assert c.span == (pos, pos + len(text))
        pos += len(text)
    np.testing.assert_allclose(vectors(out), np.array(case["embeddings"]), atol=1e-5)


# -- what late chunking means for the user -----------------------------------------------


@pytest.mark.parametrize("text", [SENTENCES[0], "東京は日本の首都です。", "a"])
def test_a_single_chunk_equals_normal_encoding(local_provider: LocalProvider, text: str) -> None:
    normal = local_provider.embed([text], task=Task.RETRIEVAL_PASSAGE).vectors[0]
    listed = embed_chunks(local_provider, [text])
    chunked = embed_chunks(local_provider, text)  # one sentence: one chunk
    assert len(listed) == len(chunked) == 1
    np.testing.assert_allclose(listed[0].vector, normal, atol=1e-5)
    np.testing.assert_allclose(chunked[0].vector, normal, atol=1e-5)


def test_edge_whitespace_is_not_sent_to_the_model(local_provider: LocalProvider) -> None:
    padded = "  " + SENTENCES[0] + " \n "
    out = embed_chunks(local_provider, padded)
    assert [c.text for c in out] == [padded] and out[0].span == (0, len(padded))
    normal = local_provider.embed([SENTENCES[0]], task="retrieval.passage").vectors[0]
    np.testing.assert_allclose(out[0].vector, normal, atol=1e-5)


def test_a_document_is_cut_into_sentences_and_pooled_in_one_pass(
    local_provider: LocalProvider,
) -> None:
    doc = "berlin is big. its population is 3.8 million.  the spree flows through it."
    out = embed_chunks(local_provider, doc)
    assert [c.text for c in out] == [
        "berlin is big. ",
        "its population is 3.8 million.  ",
        "the spree flows through it.",
    ]
    assert [c.span for c in out] == [(0, 15), (15, 47), (47, len(doc))]
    together = local_provider.embed(
        ["berlin is big.", "its population is 3.8 million.", "the spree flows through it."],
        task="retrieval.passage",
        late_chunking=True,
    )
    np.testing.assert_allclose(vectors(out), together.vectors, atol=1e-6)
    alone = local_provider.embed(["its population is 3.8 million."], task="retrieval.passage")
    assert not np.allclose(out[1].vector, alone.vectors[0], atol=1e-3), "no context was used"


def test_task_dimensions_and_normalization_are_passed_through(
    local_provider: LocalProvider,
) -> None:
    chunks = SENTENCES[:3]
    for task in (Task.RETRIEVAL_QUERY, "text-matching", None):
        out = embed_chunks(local_provider, chunks, task=task, dimensions=16, normalized=False)
        expected = local_provider.embed(
            chunks, task=task, dimensions=16, normalized=False, late_chunking=True
        )
        assert out[0].vector.shape == (16,) and out[0].vector.dtype == np.float32
        np.testing.assert_allclose(vectors(out), expected.vectors, atol=1e-6)
    unit = embed_chunks(local_provider, chunks, dimensions=16)
    np.testing.assert_allclose(np.linalg.norm(vectors(unit), axis=1), 1.0, atol=1e-5)


def test_local_provider_windows_long_documents_itself(conformance_dir: Path) -> None:
    small = LocalProvider(str(conformance_dir), max_length=48, late_chunking_overlap=8)
    assert sum(small.count_tokens(SENTENCES, late_chunking=True).counts) > 48
    out = embed_chunks(small, DOC)
    assert [c.text.strip() for c in out] == SENTENCES
    expected = small.embed(SENTENCES, task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(vectors(out), expected.vectors, atol=1e-6)


# -- documents are never mixed -----------------------------------------------------------

DOCS: list[str | list[str]] = [
    " ".join(SENTENCES[0:4]),
    " ".join(SENTENCES[4:7]),
    SENTENCES[7:10],  # a document given as its chunks
    SENTENCES[10],
]


def doc_chunks(doc: str | list[str]) -> list[str]:
    return [c.text.strip() for c in SentenceChunker().chunk(doc)] if isinstance(doc, str) else doc


def test_usage_is_returned_per_document_without_counting_again(
    local_provider: LocalProvider,
) -> None:
    docs: list[str | list[str]] = [DOC, SENTENCES[:3]]
    out = embed_chunks_many(local_provider, docs)
    for got in out:
        chunks = [c.text.strip() for c in got]  # what the model sees
        expected = local_provider.count_tokens(chunks, task="retrieval.passage", late_chunking=True)
        assert got.usage.total_tokens == expected.total > 0
    assert out[0].usage.total_tokens > out[1].usage.total_tokens  # per document, not summed
    one = embed_chunks(local_provider, DOC)
    assert isinstance(one, list) and one.usage == out[0].usage  # still a list of chunks


def test_many_documents_are_never_encoded_together(local_provider: LocalProvider) -> None:
    recorder = Recorder(local_provider)
    many = embed_chunks_many(recorder, DOCS, max_concurrency=3)
    assert len(many) == len(DOCS)
    for doc, got in zip(DOCS, many, strict=True):
        alone = embed_chunks(local_provider, doc)
        assert [c.span for c in got] == [c.span for c in alone]
        np.testing.assert_allclose(vectors(got), vectors(alone), atol=1e-6)
    assert len(recorder.calls) == len(DOCS)  # each document fits one pass: one call each
    for texts, late in recorder.calls:
        assert late
        owners = [i for i, d in enumerate(DOCS) if texts == doc_chunks(d)]
        assert len(owners) == 1, f"a call holds chunks of several documents: {texts}"


def test_windows_of_many_documents_never_mix_either(local_provider: LocalProvider) -> None:
    recorder = Recorder(local_provider)
    docs = [DOC, " ".join(SENTENCES[::-1])]
    embed_chunks_many(recorder, docs, window_tokens=90, context_tokens=12, max_concurrency=4)
    assert len(recorder.calls) > 2
    for texts, _ in recorder.calls:
        in_first = any(texts == SENTENCES[i : i + len(texts)] for i in range(len(SENTENCES)))
        rev = SENTENCES[::-1]
        in_second = any(texts == rev[i : i + len(texts)] for i in range(len(rev)))
        assert in_first != in_second, f"call is not a run of exactly one document: {texts}"


def assert_windows_give_context_and_right_vectors(
    local_provider: LocalProvider,
    out: list[EmbeddedChunk],
    calls: list[list[str]],
    fits: Any,
    task: Task | str | None = "retrieval.passage",
) -> None:
    """Every call is one run of the document within the window; every interior chunk's vector
    is its late-chunking vector in a call that also holds both its neighbours."""
    assert [c.text.strip() for c in out] == SENTENCES
    assert len(calls) > 1, "the document should not fit one window"
    per_call = {}
    for texts in calls:
        starts = [i for i in range(len(SENTENCES)) if SENTENCES[i : i + len(texts)] == texts]
        assert len(starts) == 1, f"a call is not a run of the document's chunks: {texts}"
        assert fits(texts), f"a call exceeds the window: {texts}"
        per_call[starts[0]] = local_provider.embed(texts, task=task, late_chunking=True).vectors
    firsts = sorted(per_call)
    assert firsts[0] == 0
    for i, chunk in enumerate(out):
        candidates = [
            per_call[s][i - s]
            for s in firsts
            if s <= i < s + len(per_call[s])
            and (i == 0 or s < i)
            and (i == len(out) - 1 or i + 1 < s + len(per_call[s]))
        ]
        assert candidates, f"chunk {i} never sees context on both sides"
        assert any(np.allclose(chunk.vector, v, atol=1e-5) for v in candidates), (
            f"chunk {i} got a vector that is not its own"
        )


def test_local_window_path_keeps_context_and_order(local_provider: LocalProvider) -> None:
    recorder = Recorder(local_provider)
    out = embed_chunks(recorder, DOC, window_tokens=96, context_tokens=16, max_concurrency=3)
    calls = [texts for texts, _ in recorder.calls]

    def fits(texts: list[str]) -> bool:  # real tokens, <s> </s> and instruction included
        return (
            sum(
                local_provider.count_tokens(
                    texts, task="retrieval.passage", late_chunking=True
                ).counts
            )
            <= 96
        )

    assert_windows_give_context_and_right_vectors(local_provider, out, calls, fits)


def test_a_provider_with_estimated_counts_is_budgeted_conservatively(
    local_provider: LocalProvider,
) -> None:
    class Estimates(Recorder):  # BaseProvider's count_tokens: an estimate, exact=False
        count_tokens = BaseProvider.count_tokens  # type: ignore[assignment]

    recorder = Estimates(local_provider)
    assert not recorder.count_tokens(["x"]).exact
    out = embed_chunks(recorder, DOC, window_tokens=150, context_tokens=30)
    calls = [texts for texts, _ in recorder.calls]

    def fits(texts: list[str]) -> bool:  # by the estimate the planner budgets with
        counted = recorder.count_tokens(texts, task="retrieval.passage", late_chunking=True)
        return counted.total <= 150

    assert_windows_give_context_and_right_vectors(local_provider, out, calls, fits)
    one = Estimates(local_provider)
    embed_chunks(one, DOC)  # fits the default 8192-token window even by the estimate
    assert len(one.calls) == 1


# -- errors before any call --------------------------------------------------------------


def test_a_chunk_too_large_for_the_window_is_refused_before_any_call(
    local_provider: LocalProvider,
) -> None:
    recorder = Recorder(local_provider)
    with pytest.raises(InputError, match="smaller chunker"):
        embed_chunks(recorder, [SENTENCES[0], " ".join(SENTENCES)], window_tokens=64)
    assert recorder.calls == []


def test_blank_given_chunks_are_refused_before_any_call(local_provider: LocalProvider) -> None:
    recorder = Recorder(local_provider)
    for bad in ([SENTENCES[0], "   "], [SENTENCES[0], ""]):
        with pytest.raises(InputError, match=r"documents\[0\]\[1\]"):
            embed_chunks(recorder, bad)
    with pytest.raises(InputError, match="beyond the end"):
        embed_chunks(recorder, "short.", chunker=BoundaryChunker([100]))
    with pytest.raises(InputError, match="dimensions"):
        embed_chunks(recorder, DOC, dimensions=10_000)
    with pytest.raises(InputError, match="unknown task"):
        embed_chunks(recorder, DOC, task="summarize")
    assert recorder.calls == []


def test_empty_document_gives_no_chunks(local_provider: LocalProvider) -> None:
    assert embed_chunks(local_provider, "") == []
    assert embed_chunks(local_provider, []) == []
    assert embed_chunks_many(local_provider, ["", DOC])[0] == []


def test_bad_argument_types_are_clear(local_provider: LocalProvider) -> None:
    from jv3_integrations import InputTypeError

    with pytest.raises(InputTypeError):
        embed_chunks_many(local_provider, DOC)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        embed_chunks(local_provider, 42)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        embed_chunks(local_provider, [SENTENCES[0], 3])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="chunk"):
        embed_chunks(local_provider, DOC, chunker="sentences")  # type: ignore[arg-type]


async def test_async_forms_match_sync(local_provider: LocalProvider) -> None:
    sync = embed_chunks(local_provider, DOC)
    got = await aembed_chunks(local_provider, DOC)
    np.testing.assert_allclose(vectors(got), vectors(sync), atol=1e-6)
    many = await aembed_chunks_many(local_provider, DOCS)
    for doc, g in zip(DOCS, many, strict=True):
        np.testing.assert_allclose(
            vectors(g), vectors(embed_chunks(local_provider, doc)), atol=1e-6
        )


# -- the API path against our own server -------------------------------------------------


class RequestLog:
    """httpx event hooks: every request body and the server's token usage for it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.usage: list[int] = []
        self._lock = threading.Lock()

    def on_request(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/embeddings"):
            with self._lock:
                self.bodies.append(json.loads(request.content))

    def on_response(self, response: httpx.Response) -> None:
        if response.request.url.path.endswith("/embeddings"):
            response.read()
            with self._lock:
                self.usage.append(int(response.json()["usage"]["total_tokens"]))


class CountingAPI(JinaAPIProvider):
    """The real API provider, counting its embed calls (one per late-chunking window)."""

    embed_calls = 0

    def _embed(self, request: EmbedRequest) -> Embeddings:
        self.embed_calls += 1
        return super()._embed(request)


@pytest.fixture
def logged_api(jina_server_url: str):  # type: ignore[no-untyped-def]
    log = RequestLog()
    client = httpx.Client(
        timeout=60.0, event_hooks={"request": [log.on_request], "response": [log.on_response]}
    )
    provider = CountingAPI(
        api_key=SERVER_API_KEY, base_url=jina_server_url, http_client=client, max_dimensions=128
    )
    yield provider, log
    provider.close()
    client.close()


def test_local_and_api_agree_when_the_document_fits_one_window(
    local_provider: LocalProvider, api_provider: JinaAPIProvider
) -> None:
    for doc in (DOC, CASES[1]["texts"]):
        for task in ("retrieval.passage", None):
            local = embed_chunks(local_provider, doc, task=task)
            remote = embed_chunks(api_provider, doc, task=task)
            assert [c.span for c in remote] == [c.span for c in local]
            np.testing.assert_allclose(vectors(remote), vectors(local), atol=1e-5)


def test_api_sends_one_request_for_a_document_that_fits(logged_api: Any) -> None:
    provider, log = logged_api
    out = embed_chunks(provider, DOC)
    assert len(log.bodies) == 1 == provider.embed_calls
    assert out.usage.total_tokens == log.usage[0] > 0
    body = log.bodies[0]
    assert body["late_chunking"] is True
    assert body["input"] == SENTENCES == [c.text.strip() for c in out]


def test_api_window_path_one_request_per_window_in_order(
    local_provider: LocalProvider, logged_api: Any
) -> None:
    provider, log = logged_api
    window = 160
    out = embed_chunks(provider, DOC, window_tokens=window, context_tokens=24)
    assert all(b["late_chunking"] is True for b in log.bodies)
    calls = [b["input"] for b in log.bodies]
    assert len(calls) == len({tuple(c) for c in calls}), "a window was sent twice"

    # Without a tokenizer the API path budgets with the provider's estimate, which is
    # conservative for the real XLM-R vocabulary (not for the tiny test vocabulary, which
    # spells many words letter by letter, so the server's real counts are not compared).
    def fits(texts: list[str]) -> bool:
        est = provider.estimate_tokens
        return sum(est(t) - 2 for t in texts) + est("", task="retrieval.passage") <= window

    assert_windows_give_context_and_right_vectors(local_provider, out, calls, fits)
    assert len(log.usage) == len(calls) == provider.embed_calls, "one request per window"
    # the usage returned is what the server billed for every window (context counted twice)
    assert out.usage.total_tokens == sum(log.usage) > 0


async def test_api_async_windows_match_sync(api_provider: JinaAPIProvider) -> None:
    sync = embed_chunks(api_provider, DOC, window_tokens=160, context_tokens=24)
    got = await aembed_chunks(api_provider, DOC, window_tokens=160, context_tokens=24)
    np.testing.assert_allclose(vectors(got), vectors(sync), atol=1e-5)
    many = await aembed_chunks_many(api_provider, DOCS, window_tokens=160, max_concurrency=2)
    for doc, g in zip(DOCS, many, strict=True):
        expected = embed_chunks(api_provider, doc, window_tokens=160)
        np.testing.assert_allclose(vectors(g), vectors(expected), atol=1e-5)


def test_api_chunk_too_large_is_refused_before_any_request(logged_api: Any) -> None:
    provider, log = logged_api
    huge = " ".join(["berlin"] * 9000)
    with pytest.raises(InputError, match="smaller chunker"):
        embed_chunks(provider, [SENTENCES[0], huge])
    assert log.bodies == []


# -- chunks the tokenizer turns into nothing ---------------------------------------------


@pytest.fixture(scope="module")
def dropping_provider(tmp_path_factory: pytest.TempPathFactory, conformance_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny checkpoint with a tokenizer whose normalizer deletes soft hyphens (U+00AD), as
    real normalizers delete some characters: a chunk of only those has zero tokens."""
    root = tmp_path_factory.mktemp("dropping")
    for f in conformance_dir.iterdir():
        if f.name != "tokenizer.json":
            (root / f.name).symlink_to(f)
    spec = json.loads((conformance_dir / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            spec["normalizer"],
            {"type": "Replace", "pattern": {"String": "\u00ad"}, "content": ""},
        ],
    }
    (root / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    provider = LocalProvider(str(root))
    assert provider.count_tokens(["\u00ad\u00ad"]).counts == provider.count_tokens([""]).counts
    yield provider
    provider.close()


def test_zero_token_chunks_are_merged_into_their_neighbour(dropping_provider: Any) -> None:
    # "." still has a token; a chunk of only soft hyphens has none:
    doc = "berlin is big. \u00ad\u00ad"
    out = embed_chunks(dropping_provider, doc)
    assert [c.text for c in out] == [doc] and out[0].span == (0, len(doc))
    normal = dropping_provider.embed(["berlin is big. \u00ad\u00ad"], task="retrieval.passage")
    np.testing.assert_allclose(out[0].vector, normal.vectors[0], atol=1e-5)
    assert np.isfinite(out[0].vector).all()
    leading = "\u00ad\u00adberlin is big. the spree flows."
    for windowed in (None, 64):  # the native pass and the request-window path
        out = embed_chunks(
            dropping_provider, leading, chunker=BoundaryChunker([2, 17]), window_tokens=windowed
        )
        assert [c.text for c in out] == ["\u00ad\u00adberlin is big. ", "the spree flows."]
        assert np.isfinite(vectors(out)).all()


def test_given_zero_token_chunks_are_refused(dropping_provider: Any) -> None:
    with pytest.raises(InputError, match=r"documents\[0\]\[1\] has no tokens"):
        embed_chunks(dropping_provider, [SENTENCES[0], "\u00ad"])
