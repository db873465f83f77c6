"""BaseProvider's shared behaviour, exercised through the contract mixin on a small test double.

The double is a deterministic toy model (token hashing) so this file needs no torch and no
network; the real providers run the same mixin in their own test files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from jv3_integrations import BaseProvider, Embeddings, EmbedRequest, Task, Usage

from ..contracts import ProviderContract


class HashProvider(BaseProvider):
    """Deterministic toy provider: each task adds its own offset to bag-of-words hashes."""

    def __init__(self, dim: int = 32, dimensions: int | None = None) -> None:
        self._dim = dim
        self._dimensions = dimensions
        self.calls = 0

    @property
    def model_name(self) -> str:
        return "hash-toy"

    @property
    def max_dimensions(self) -> int:
        return self._dim

    def _vec(self, text: str, task: Task | None) -> np.ndarray:
        v = np.zeros(self._dim, dtype=np.float64)
        for word in (str(task) + " " + text).split() or [""]:
            h = hashlib.sha256(word.encode()).digest()
            v += np.frombuffer(h, dtype=np.uint8)[: self._dim].astype(np.float64) - 127.5
        return v + 3.0

    def _embed(self, request: EmbedRequest) -> Embeddings:
        self.calls += 1
        full = np.stack([self._vec(t, request.task) for t in request.texts])
        out = full[:, : request.dimensions]
        if request.normalized:
            out = out / np.linalg.norm(out, axis=1, keepdims=True)
        tokens = sum(len(t.split()) + 2 for t in request.texts)
        return Embeddings(out, self.model_name, request.task, request.dimensions, Usage(tokens))


class TestBaseProviderContract(ProviderContract):
    @pytest.fixture
    def provider(self) -> HashProvider:
        return HashProvider()


def test_empty_input_makes_no_call() -> None:
    p = HashProvider()
    assert p.embed([]).vectors.shape == (0, 32)
    assert p.calls == 0


def test_validation_happens_before_any_call() -> None:
    p = HashProvider()
    with pytest.raises(TypeError):
        p.embed(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        p.embed(["a"], dimensions=33)
    assert p.calls == 0


def test_configured_dimensions_are_the_default_and_calls_override() -> None:
    p = HashProvider(dimensions=8)
    assert p.dimensions == 8
    assert p.embed(["a b"]).vectors.shape == (1, 8)
    assert p.embed(["a b"], dimensions=16).vectors.shape == (1, 16)


def test_dimensions_must_be_int() -> None:
    with pytest.raises(TypeError, match="int"):
        HashProvider().embed(["a"], dimensions=8.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        HashProvider().embed(["a"], dimensions=True)


def test_tuple_and_other_sequences_are_accepted() -> None:
    p = HashProvider()
    assert np.allclose(p.embed(("a", "b")).vectors, p.embed(["a", "b"]).vectors)


def test_non_sequence_is_rejected_with_advice() -> None:
    with pytest.raises(TypeError, match="list"):
        HashProvider().embed({"a", "b"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list"):
        HashProvider().embed(b"bytes")  # type: ignore[arg-type]


def test_context_managers_close() -> None:
    closed: list[str] = []

    class Closing(HashProvider):
        def close(self) -> None:
            closed.append("sync")

    with Closing() as p:
        p.embed(["x"])

    async def run() -> None:
        async with Closing() as p:
            await p.aembed(["x"])

    import asyncio

    asyncio.run(run())
    assert closed == ["sync", "sync"]


# -- abilities on the contract (no probing) -----------------------------------------------


def test_base_provider_declares_default_abilities() -> None:
    p = HashProvider()
    assert (p.max_concurrency, p.max_tokens, p.supports_long_late_chunking) == (4, 8192, False)
    p.load()  # a no-op, no error
    counted = p.count_tokens(["Berlin is big.", "ok"], task="retrieval.query")
    assert counted.exact is False and len(counted.counts) == 2
    # the query instruction is counted: more tokens than without a task
    assert counted.counts[1] > p.count_tokens(["ok"]).counts[0]


def test_estimated_late_chunking_counts_sum_to_the_document() -> None:
    p = HashProvider()
    chunks = ["Berlin is big. ", "It has 3.8 million people."]
    late = p.count_tokens(chunks, task="retrieval.passage", late_chunking=True)
    whole = p.count_tokens(["".join(chunks)], task="retrieval.passage").counts[0]
    # one sequence: <s>, </s> and the instruction once, not once per chunk
    assert late.total <= whole + 1 and late.total < sum(
        p.count_tokens(chunks, task="retrieval.passage").counts
    )
    assert p.count_tokens([], late_chunking=True).counts == []


def test_local_and_api_providers_declare_their_abilities(conformance_dir: Path) -> None:
    from jv3_integrations import JinaAPIProvider, LocalProvider

    local = LocalProvider(str(conformance_dir), max_length=128)
    assert (local.max_concurrency, local.max_tokens, local.supports_long_late_chunking) == (
        1,
        128,
        True,
    )
    counted = local.count_tokens(["hello world"])
    assert counted.exact is True and counted.counts[0] == len(local.encode_ids(["hello world"])[0])
    api = JinaAPIProvider(api_key="k", max_concurrency=7)
    assert (api.max_concurrency, api.max_tokens, api.supports_long_late_chunking) == (
        7,
        8192,
        False,
    )
    estimate = api.count_tokens(["hello world"], task="retrieval.query")
    assert estimate.exact is False
    assert estimate.counts == [api.estimate_tokens("hello world", task="retrieval.query")]
