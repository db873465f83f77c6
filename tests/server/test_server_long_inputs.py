"""The server decides an over-long input from its first sections, never tokenizing it all."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations import LocalProvider
from jv3_integrations.core._types import TaskLike, TokenCount
from jv3_integrations.server import _count
from jv3_integrations.server._count import count_capped, sections
from tests.conftest import CONFORMANCE_DIR
from tests.support.server import running_server

MODEL = "jina-embeddings-v3"
WORDS = ["berlin", "is", "the", "capital", "of", "germany", ".", "river", "spree", "1992"]


class Watched(LocalProvider):
    """The real local provider, recording how many characters its tokenizer was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def count_tokens(
        self, texts: Sequence[str], *, task: TaskLike = None, late_chunking: bool = False
    ) -> TokenCount:
        texts = list(texts)
        self.calls.append(sum(map(len, texts)))
        return super().count_tokens(texts, task=task, late_chunking=late_chunking)


def _text(words: int, seed: int = 0, spaces: Sequence[str] = (" ",)) -> str:
    rng = np.random.default_rng(seed)
    seps = [spaces[i] for i in rng.integers(0, len(spaces), words)]
    return "".join(
        WORDS[w] + s for w, s in zip(rng.integers(0, len(WORDS), words), seps, strict=True)
    )


@pytest.fixture(scope="module")
def watched() -> Iterator[tuple[Watched, str]]:
    provider = Watched(str(CONFORMANCE_DIR))
    with running_server(provider) as url:
        yield provider, url


def _counter(provider: LocalProvider) -> _count.Count:
    return lambda texts, task, late: (
        provider.count_tokens(texts, task=task, late_chunking=late).counts
    )


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("task", [None, "retrieval.passage"])
def test_section_counts_add_up_to_the_whole_count(
    late: bool, task: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The premise: cut before whitespace, the tokenizer's counts add up exactly."""
    monkeypatch.setattr(_count, "SECTION_CHARS", 64)
    provider = LocalProvider(str(CONFORMANCE_DIR))
    texts = [
        _text(200, 1, (" ", "  ", "\n", "\t", " \n ")),
        "short one.",
        _text(90, 2),
        "x" * 300,  # no whitespace at all: cut anywhere
    ][: 3 if late else 4]
    got = count_capped(_counter(provider), texts, task, late, limit=10**6)
    assert not got.over and got.texts == texts
    exact = provider.count_tokens(texts, task=task, late_chunking=late).counts
    if late:
        assert got.counts == exact
    else:
        assert got.counts[:3] == exact[:3] and abs(got.counts[3] - exact[3]) <= 3
    assert all("".join(sections(t, 64)) == t for t in texts)


def test_an_over_long_input_is_refused_from_its_first_sections(
    watched: tuple[Watched, str],
) -> None:
    provider, url = watched
    huge = _text(2_000_000)  # ~12 MB, ~2.6M tokens: tokenizing it all would take gigabytes
    provider.calls.clear()
    r = httpx.post(
        f"{url}/v1/embeddings", json={"model": MODEL, "input": ["ok", huge]}, timeout=120
    )
    assert r.status_code == 400 and "input[1] has " in r.json()["detail"]
    assert "tokens in its first" in r.json()["detail"]
    assert max(provider.calls) <= _count.SECTION_CHARS and sum(provider.calls) < 100_000
    provider.calls.clear()
    late = {"model": MODEL, "input": ["ok", huge, "more"], "late_chunking": True}
    r = httpx.post(f"{url}/v1/embeddings", json=late, timeout=120)
    assert r.status_code == 400 and "late_chunking input has at least" in r.json()["detail"]
    assert sum(provider.calls) < 100_000


def test_truncate_embeds_the_same_head_without_tokenizing_the_tail(
    watched: tuple[Watched, str],
) -> None:
    provider, url = watched
    long_text = _text(150_000, 3, (" ", "  ", "\n"))  # ~200k tokens
    provider.calls.clear()
    body = {"model": MODEL, "input": ["ok", long_text], "truncate": True}
    r = httpx.post(f"{url}/v1/embeddings", json=body, timeout=120)
    assert r.status_code == 200
    assert sum(provider.calls) < 100_000
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    local = LocalProvider(str(CONFORMANCE_DIR))
    np.testing.assert_allclose(got, local.embed(["ok", long_text]).vectors, atol=1e-5)
    assert r.json()["usage"]["total_tokens"] == local.count_tokens(["ok"]).counts[0] + 8192
