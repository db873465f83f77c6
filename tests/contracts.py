"""The provider contract test mixin every provider's test class inherits.

A subclass provides a ``provider`` fixture returning an :class:`EmbeddingProvider` whose default
``dimensions`` is its model size. Every test here is behaviour a user of the provider relies on.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from jv3_integrations import EmbeddingProvider, Embeddings, InputError, Task

TEXTS = ["Berlin is the capital of Germany.", "Der Himmel ist blau.", "東京は日本の首都です。"]


def _close(a: np.ndarray, b: np.ndarray, atol: float = 1e-5) -> bool:
    return bool(np.allclose(a, b, atol=atol))


class ProviderContract:
    atol = 1e-5

    def test_is_an_embedding_provider(self, provider: EmbeddingProvider) -> None:
        assert isinstance(provider, EmbeddingProvider)
        assert isinstance(provider.model_name, str) and provider.model_name
        assert isinstance(provider.dimensions, int) and provider.dimensions > 0

    def test_shape_dtype_and_metadata(self, provider: EmbeddingProvider) -> None:
        emb = provider.embed(TEXTS, task=Task.RETRIEVAL_PASSAGE)
        assert isinstance(emb, Embeddings)
        assert emb.vectors.shape == (3, provider.dimensions)
        assert emb.vectors.dtype == np.float32
        assert emb.dimensions == provider.dimensions
        assert emb.task is Task.RETRIEVAL_PASSAGE
        assert emb.model == provider.model_name
        assert emb.usage.total_tokens > 0
        assert len(emb) == 3
        assert [list(r) for r in emb] == emb.tolist()
        assert np.array_equal(emb[1], emb.vectors[1])

    def test_order_matches_input(self, provider: EmbeddingProvider) -> None:
        batch = provider.embed(TEXTS, task="retrieval.passage").vectors
        for i, text in enumerate(TEXTS):
            single = provider.embed([text], task="retrieval.passage").vectors[0]
            assert _close(batch[i], single, self.atol), f"row {i} is not the vector of texts[{i}]"
        reversed_batch = provider.embed(TEXTS[::-1], task="retrieval.passage").vectors
        assert _close(reversed_batch[::-1], batch, self.atol)

    def test_duplicates_give_one_row_each(self, provider: EmbeddingProvider) -> None:
        emb = provider.embed([TEXTS[0], TEXTS[0], TEXTS[1]], task="text-matching")
        assert emb.vectors.shape[0] == 3
        assert _close(emb.vectors[0], emb.vectors[1], self.atol)

    def test_normalized_by_default(self, provider: EmbeddingProvider) -> None:
        emb = provider.embed(TEXTS, task="separation")
        assert np.allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)

    def test_unnormalized_has_same_direction(self, provider: EmbeddingProvider) -> None:
        norm = provider.embed(TEXTS, task="classification").vectors
        raw = provider.embed(TEXTS, task="classification", normalized=False).vectors
        norms = np.linalg.norm(raw, axis=1)
        assert not np.allclose(norms, 1.0, atol=1e-3)
        assert _close(raw / norms[:, None], norm, 1e-4)

    def test_dimensions_override_is_matryoshka(self, provider: EmbeddingProvider) -> None:
        full = provider.embed(TEXTS, task="retrieval.query").vectors
        k = max(1, provider.dimensions // 4)
        small = provider.embed(TEXTS, task="retrieval.query", dimensions=k)
        assert small.vectors.shape == (3, k) and small.dimensions == k
        expected = full[:, :k] / np.linalg.norm(full[:, :k], axis=1, keepdims=True)
        assert _close(small.vectors, expected, 1e-4)

    def test_empty_input(self, provider: EmbeddingProvider) -> None:
        emb = provider.embed([], task="retrieval.query")
        assert emb.vectors.shape == (0, provider.dimensions)
        assert provider.embed_documents([], dimensions=8).vectors.shape == (0, 8)

    def test_validation_errors(self, provider: EmbeddingProvider) -> None:
        with pytest.raises(TypeError, match=r"\[text\]"):
            provider.embed("a bare string")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"texts\[1\]"):
            provider.embed(["ok", None])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="retrieval.query"):
            provider.embed(["x"], task="retrieval")
        with pytest.raises(ValueError, match="1\\.\\."):
            provider.embed(["x"], dimensions=0)
        with pytest.raises(ValueError, match="1\\.\\."):
            provider.embed(["x"], dimensions=provider.dimensions + 1)
        with pytest.raises(InputError):
            provider.embed(["a", ""], late_chunking=True)

    def test_query_and_passage_routing(self, provider: EmbeddingProvider) -> None:
        q = provider.embed_queries(TEXTS[:1]).vectors
        p = provider.embed_documents(TEXTS[:1]).vectors
        assert _close(q, provider.embed(TEXTS[:1], task=Task.RETRIEVAL_QUERY).vectors, self.atol)
        assert _close(p, provider.embed(TEXTS[:1], task=Task.RETRIEVAL_PASSAGE).vectors, self.atol)
        assert not _close(q, p, 1e-3), "query and passage embeddings must differ"

    def test_sync_async_agree(self, provider: EmbeddingProvider) -> None:
        async def run() -> tuple[Embeddings, Embeddings, Embeddings]:
            return (
                await provider.aembed(TEXTS, task="text-matching", dimensions=8),
                await provider.aembed_queries(TEXTS),
                await provider.aembed_documents(TEXTS),
            )

        a, aq, ap = asyncio.run(run())
        assert _close(a.vectors, provider.embed(TEXTS, task="text-matching", dimensions=8).vectors)
        assert _close(aq.vectors, provider.embed_queries(TEXTS).vectors, self.atol)
        assert _close(ap.vectors, provider.embed_documents(TEXTS).vectors, self.atol)
