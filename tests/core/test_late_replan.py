"""The API path re-plans a late-chunking window the server rejects as too long."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from jv3_integrations import (
    BadRequestError,
    JinaAPIProvider,
    LocalProvider,
    SentenceChunker,
    aembed_chunks,
    embed_chunks,
)
from tests.conftest import CONFORMANCE_DIR, SERVER_API_KEY
from tests.support.server import running_server

WORDS = ["berlin", "capital", "river", "spree", "flows", "through", "population", "million"]
LIMIT = 256


def _char_level_checkpoint(path: Path) -> Path:
    """The conformance checkpoint with a tokenizer that spells every word letter by letter:
    "berlin" is 7 tokens where the client's estimate says 2 (it assumes ~3 letters a token)."""
    shutil.copytree(CONFORMANCE_DIR, path)
    tok = json.loads((path / "tokenizer.json").read_text())
    for entry in tok["model"]["vocab"][4:]:
        piece = entry[0]
        if len(piece) > 1 and piece != "<mask>":
            entry[1] = -1000.0  # never chosen: single characters win
    (path / "tokenizer.json").write_text(json.dumps(tok))
    return path


@pytest.fixture(scope="module")
def char_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ckpt = _char_level_checkpoint(tmp_path_factory.mktemp("charlevel") / "m")
    provider = LocalProvider(str(ckpt), max_length=LIMIT)
    with running_server(provider, api_key=SERVER_API_KEY) as url:
        yield url


def _document(sentences: int) -> str:
    rng = np.random.default_rng(0)
    return " ".join(
        " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 6)) + "." for _ in range(sentences)
    )


def _client(url: str, statuses: list[int]) -> JinaAPIProvider:
    def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    http = httpx.Client(event_hooks={"response": [record]}, timeout=60)
    return JinaAPIProvider(api_key=SERVER_API_KEY, base_url=url, http_client=http, max_retries=0)


def test_a_window_the_server_finds_too_long_is_split_and_retried(char_server: str) -> None:
    doc = _document(40)
    statuses: list[int] = []
    provider = _client(char_server, statuses)
    out = embed_chunks(provider, doc, window_tokens=LIMIT, context_tokens=16)
    chunks = SentenceChunker().chunk(doc)
    assert [c.span for c in out] == [c.span for c in chunks]  # every chunk, once, in order
    assert 400 in statuses, "the estimate should have been too low for this tokenizer"
    assert statuses[-1] == 200 and statuses.count(200) > 1
    vectors = np.stack([c.vector for c in out])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Each chunk was embedded in context: not the vector of the chunk alone.
    alone = provider.embed([chunks[5].text], task="retrieval.passage").vectors[0]
    assert not np.allclose(out[5].vector, alone, atol=1e-3)


async def test_async_path_re_plans_too(char_server: str) -> None:
    doc = _document(25)
    sync = embed_chunks(
        _client(char_server, []), doc, window_tokens=LIMIT, context_tokens=16, max_concurrency=1
    )
    provider = JinaAPIProvider(api_key=SERVER_API_KEY, base_url=char_server, max_retries=0)
    got = await aembed_chunks(provider, doc, window_tokens=LIMIT, context_tokens=16)
    assert [c.span for c in got] == [c.span for c in sync]
    np.testing.assert_allclose(
        np.stack([c.vector for c in got]), np.stack([c.vector for c in sync]), atol=1e-5
    )


def test_a_single_chunk_over_the_limit_still_fails_clearly(char_server: str) -> None:
    long_sentence = " ".join(WORDS * 8) + "."  # one chunk of ~520 real tokens, ~190 estimated
    provider = _client(char_server, [])
    with pytest.raises(BadRequestError) as info:
        embed_chunks(provider, long_sentence, window_tokens=LIMIT)
    assert info.value.status == 400
