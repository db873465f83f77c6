"""LocalProvider reproduces the original jina-embeddings-v3 code on the conformance checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jv3_integrations import EmbeddingProvider, LocalProvider
from tests.conftest import CONFORMANCE_DIR
from tests.contracts import ProviderContract

CASES: list[dict[str, Any]] = json.loads((CONFORMANCE_DIR / "expected.json").read_text())["cases"]


def _case_id(case: dict[str, Any]) -> str:
    if case["kind"] == "encode":
        return (
            f"encode-{case['task']}-dim{case['dimensions']}-norm{case['normalized']}"
            f"-max{case['max_length']}"
        )
    return f"late-{case['task']}-{len(case['texts'])}chunks-window{case['window']}"


@pytest.fixture(scope="module")
def providers(conformance_dir: Path) -> dict[tuple[int, int], LocalProvider]:
    return {}


def _provider(
    cache: dict[tuple[int, int], LocalProvider], directory: Path, max_length: int, overlap: int
) -> LocalProvider:
    key = (max_length, overlap)
    if key not in cache:
        cache[key] = LocalProvider(
            str(directory), max_length=max_length, late_chunking_overlap=overlap
        )
    return cache[key]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_conformance_case(
    case: dict[str, Any],
    conformance_dir: Path,
    providers: dict[tuple[int, int], LocalProvider],
) -> None:
    expected = np.asarray(case["embeddings"], dtype=np.float32)
    if case["kind"] == "encode":
        provider = _provider(providers, conformance_dir, case["max_length"] or 8192, 512)
        assert provider.encode_ids(case["texts"], task=case["task"]) == case["input_ids"]
        emb = provider.embed(
            case["texts"],
            task=case["task"],
            dimensions=case["dimensions"],
            normalized=case["normalized"],
        )
        assert emb.usage.total_tokens == sum(len(ids) for ids in case["input_ids"])
    else:
        provider = _provider(providers, conformance_dir, case["window"] or 8192, case["overlap"])
        ids, spans = provider.late_chunking_ids(case["texts"], task=case["task"])
        assert ids == case["input_ids"]
        assert [list(s) for s in spans] == case["spans"]
        counts = provider.count_tokens(case["texts"], task=case["task"], late_chunking=True).counts
        assert counts == [end - start for start, end in case["spans"]]
        emb = provider.embed(case["texts"], task=case["task"], late_chunking=True)
        assert emb.usage.total_tokens == len(case["input_ids"])
    assert emb.vectors.shape == expected.shape
    np.testing.assert_allclose(emb.vectors, expected, atol=1e-5, rtol=0)


def test_count_tokens_is_untruncated(conformance_dir: Path) -> None:
    case = next(c for c in CASES if c["kind"] == "encode" and c["max_length"])
    full = next(
        c
        for c in CASES
        if c["kind"] == "encode" and c["task"] == case["task"] and not c["max_length"]
    )
    provider = LocalProvider(str(conformance_dir), max_length=case["max_length"])
    assert provider.count_tokens(case["texts"], task=case["task"]).counts == [
        len(ids) for ids in full["input_ids"]
    ]


class TestLocalProviderContract(ProviderContract):
    @pytest.fixture
    def provider(self, local_provider: LocalProvider) -> EmbeddingProvider:
        return local_provider
