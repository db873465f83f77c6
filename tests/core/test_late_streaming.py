"""Long late chunking streams: same vectors as pooling all windows at once, flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from jv3_integrations import LocalProvider, SentenceChunker, Task
from jv3_integrations.core._tokenize import window_starts
from tests.conftest import CONFORMANCE_DIR

# Sentences in the tiny model's vocabulary (about 9 tokens each).
SENTENCES = [
    "berlin is the capital of germany .",
    "its population is about four million .",
    "the river spree flows through berlin .",
    "embedding models represent documents as vectors .",
    "late chunking keeps the context of the whole document .",
    "long documents lose context when they are cut .",
    "retrieval of evidence needs a query and a passage .",
]


def document(sentences: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(SENTENCES[i] for i in rng.integers(0, len(SENTENCES), sentences))


def reference(provider: LocalProvider, chunks: Sequence[str], task: str | None) -> np.ndarray:
    """The previous (non-streamed) algorithm, kept verbatim: encode every window, concatenate
    the kept states of the whole document, then mean-pool each chunk's span."""
    enc = provider._text_encoder()
    ids, spans = enc.late_chunk(list(chunks), task)
    window, overlap = provider.max_length, provider.late_chunking_overlap
    starts = window_starts(len(ids), window, overlap)
    pieces = [ids[s : s + window] for s in starts]
    parts: list[torch.Tensor | None] = [None] * len(pieces)

    def keep(i: int, states: torch.Tensor) -> None:
        parts[i] = states if i == 0 else states[overlap:]

    provider._forward(pieces, provider._task_index(None if task is None else Task(task)), keep)
    tokens = torch.cat([p for p in parts if p is not None], dim=0)
    assert tokens.shape[0] == len(ids)
    out = np.stack([tokens[a:b].mean(dim=0).cpu().numpy() for a, b in spans])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def streamed(provider: LocalProvider, chunks: Sequence[str], task: str | None) -> np.ndarray:
    emb = provider.embed(list(chunks), task=task, late_chunking=True)
    return np.asarray(emb.vectors)


@pytest.mark.parametrize(
    ("window", "overlap", "batch_tokens", "size"),
    [
        (64, 8, 64, 2),  # one window per batch
        (64, 8, 150, 2),  # two per batch, the short last one alone or not
        (24, 23, 1000, 0.3),  # step of one token: every window keeps one state
        (200, 0, 16384, 2),  # no overlap; the first batch waits for enough tokens
        (8192, 512, 16384, 2),  # the default: one window
    ],
)
@pytest.mark.parametrize("task", ["retrieval.passage", None])
def test_streamed_equals_previous_algorithm(
    window: int, overlap: int, batch_tokens: int, size: float, task: str | None
) -> None:
    provider = LocalProvider(
        str(CONFORMANCE_DIR),
        max_length=window,
        late_chunking_overlap=overlap,
        batch_tokens=batch_tokens,
    )
    # sentences, grouped sentences, and one chunk longer than two windows
    chunks = [c.text for c in SentenceChunker().chunk(document(int(10 * size)))]
    chunks.append(document(int(8 * size), seed=1) + " ")
    chunks += [
        c.text for c in SentenceChunker(max_chars=90).chunk(document(int(10 * size), seed=2))
    ]
    ref = reference(provider, chunks, task)
    new = streamed(provider, chunks, task)
    assert new.shape == ref.shape
    np.testing.assert_allclose(new, ref, rtol=0, atol=1e-6)


def test_every_window_boundary_position() -> None:
    """Documents whose end falls just before, on and just after a window boundary."""
    chunks = [c.text for c in SentenceChunker().chunk(document(12))]
    n = len(LocalProvider(str(CONFORMANCE_DIR)).late_chunking_ids(chunks)[0])
    for window in [n - 1, n, n + 1, *range(n // 3 - 2, n // 3 + 3), *range(n // 2 - 2, n // 2 + 3)]:
        provider = LocalProvider(str(CONFORMANCE_DIR), max_length=window, late_chunking_overlap=5)
        emb = provider.embed(chunks, task=None, late_chunking=True)
        assert emb.usage.total_tokens == n
        np.testing.assert_allclose(
            np.asarray(emb.vectors), reference(provider, chunks, None), atol=1e-6
        )


@pytest.mark.slow
@pytest.mark.soak
def test_streamed_equals_previous_algorithm_on_100k_tokens() -> None:
    provider = LocalProvider(str(CONFORMANCE_DIR), max_length=512, late_chunking_overlap=64)
    text = document(11_500)
    chunks = [c.text for c in SentenceChunker(max_chars=300).chunk(text)]
    ids, _ = provider.late_chunking_ids(chunks, task="retrieval.passage")
    assert len(ids) > 100_000
    ref = reference(provider, chunks, "retrieval.passage")
    emb = provider.embed(chunks, task="retrieval.passage", late_chunking=True)
    assert emb.usage.total_tokens == len(ids)
    np.testing.assert_allclose(np.asarray(emb.vectors), ref, rtol=0, atol=1e-6)


_CHILD = textwrap.dedent(
    """
    import json, sys
    from jv3_integrations import LocalProvider, SentenceChunker, embed_chunks
    model, tokens = sys.argv[1], int(sys.argv[2])
    provider = LocalProvider(model, max_length=512, late_chunking_overlap=32)
    sentence = "late chunking keeps the context of the whole document . "
    per = (len(provider.late_chunking_ids([sentence * 100])[0]) - 2) / 100
    doc = sentence * int(tokens / per)
    chunks = embed_chunks(provider, doc, chunker=SentenceChunker(max_chars=2000))
    status = open("/proc/self/status").read().split("\\n")
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    ids = sum(1 for _ in chunks)
    print(json.dumps({"peak_kb": hwm, "chunks": ids, "chars": len(doc)}))
    """
)


def _peak(tokens: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(CONFORMANCE_DIR), str(tokens)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=600,
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_peak_memory_of_a_million_token_document_does_not_grow_with_length() -> None:
    small = _peak(50_000)  # more than one batch of windows already
    large = _peak(1_000_000)
    assert large["chars"] > 19 * small["chars"]
    grew_mb = (large["peak_kb"] - small["peak_kb"]) / 1024
    # The streamed pass holds a window and one vector per chunk; the previous algorithm held
    # every token's state (1M x 128 floats = 512 MB here, 4 GB with the real model).
    assert grew_mb < 100, f"peak grew by {grew_mb:.0f} MB from 50k to 1M tokens"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shorter", [1, 2, 5])
def test_overlap_not_below_the_window_is_refused_for_a_longer_document(shorter: int) -> None:
    from jv3_integrations import ConfigurationError

    chunks = ["berlin is the capital of germany .", "the river spree flows ."]
    n = len(LocalProvider(str(CONFORMANCE_DIR)).late_chunking_ids(chunks)[0])
    window = n - shorter  # the document is longer than one window (by its </s> alone: 1)
    provider = LocalProvider(str(CONFORMANCE_DIR), max_length=window, late_chunking_overlap=window)
    with pytest.raises(ConfigurationError, match="late_chunking_overlap"):
        provider.embed(chunks, task=None, late_chunking=True)
