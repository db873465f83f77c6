"""LocalProvider's GPU paths, checked on CPU: packed attention, prefetching, OOM halving, fp32 pooling.

The CUDA kernels themselves (``varlen_attn``, the flash/efficient jagged SDPA) cannot run here;
what runs is the same packed layout through the jagged-tensor math kernel, and the varlen call
through a CPU reference with the same signature, so the layout (cu_seqlens, positions, rotary
per token, order of texts) is what these tests prove. ``bench/gpu.py`` proves the kernels.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jv3_integrations import ConfigurationError, DeviceMemoryError, LocalProvider
from jv3_integrations.core import _packed
from jv3_integrations.core._local_device import configure_device
from jv3_integrations.core._packed import first_working, resolve_attention
from jv3_integrations.core._pipeline import (
    Prefetcher,
    budget_from_free_memory,
    host_batch,
    pack_in_order,
    pool_mean,
)

WORDS = [
    "the",
    "capital",
    "of",
    "Germany",
    "is",
    "Berlin",
    "and",
    "skin",
    "care",
    "brings",
    "a",
    "new",
    "season",
    "of",
    "bold",
    "colours",
]
TASKS = [
    None,
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
]


def _texts(n: int, seed: int = 0, words: int = 40) -> list[str]:
    """``n`` texts of 1 to ``words`` words, shuffled (long and short interleaved)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(1, words, size=n)]


@pytest.fixture(scope="module")
def padded(conformance_dir: Path) -> LocalProvider:
    provider = LocalProvider(str(conformance_dir), attention="padded")
    yield provider
    provider.close()


def test_auto_attention_on_cpu_is_the_padded_sdpa(conformance_dir: Path) -> None:
    assert LocalProvider(str(conformance_dir), device="cpu").attention == "padded"


@pytest.mark.parametrize(
    ("kind", "device", "dtype", "expected"),
    [
        ("auto", "cuda", torch.bfloat16, "varlen"),
        ("auto", "cuda", torch.float16, "varlen"),
        ("auto", "cuda", torch.float32, "nested"),
        ("auto", "cpu", torch.bfloat16, "padded"),
        ("nested", "cpu", torch.float32, "nested"),
        ("padded", "cuda", torch.bfloat16, "padded"),
    ],
)
def test_attention_choice(kind: str, device: str, dtype: torch.dtype, expected: str) -> None:
    assert resolve_attention(kind, torch.device(device), dtype) == expected


def test_varlen_where_it_cannot_run_is_a_configuration_error(conformance_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="attention='varlen' needs a CUDA device"):
        LocalProvider(str(conformance_dir), device="cpu", attention="varlen").load()
    with pytest.raises(ConfigurationError, match="attention must be one of"):
        LocalProvider(str(conformance_dir), attention="flash")  # type: ignore[arg-type]


@pytest.mark.parametrize("task", TASKS)
def test_packed_attention_equals_padded(
    conformance_dir: Path, padded: LocalProvider, task: str | None
) -> None:
    # a small budget: many batches, and with packed attention many tokenizer segments
    texts = _texts(12, seed=len(str(task)))
    nested = LocalProvider(str(conformance_dir), attention="nested", batch_tokens=48)
    want = padded.embed(texts, task=task, normalized=False)
    got = nested.embed(texts, task=task, normalized=False)
    assert got.usage.total_tokens == want.usage.total_tokens
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-5, rtol=0)


def _reference_varlen(calls: list[tuple[list[int], int]]):  # type: ignore[no-untyped-def]
    """A CPU stand-in for varlen_attn with its positional signature (records its layout)."""

    def varlen(q, k, v, cu_q, cu_k, max_q, max_k):  # type: ignore[no-untyped-def]
        assert cu_q is cu_k and max_q == max_k and cu_q.dtype == torch.int32
        starts = cu_q.tolist()
        calls.append((starts, max_q))
        out = torch.empty_like(q)
        for a, b in itertools.pairwise(starts):
            qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))
            out[a:b] = F.scaled_dot_product_attention(qs, ks, vs).transpose(0, 1)
        return out

    return varlen


def test_varlen_layout_equals_padded(
    conformance_dir: Path, padded: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[int], int]] = []
    monkeypatch.setattr(_packed, "_varlen_fn", lambda: _reference_varlen(calls))
    provider = LocalProvider(str(conformance_dir), attention="padded", batch_tokens=100)
    provider.load()
    provider._attention = "varlen"  # the CUDA choice, forced: its kernel is stood in for
    texts = _texts(12, seed=3)
    got = provider.embed(texts, task="retrieval.passage", normalized=False)
    want = padded.embed(texts, task="retrieval.passage", normalized=False)
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-5, rtol=0)
    lengths = [len(x) for x in provider.encode_ids(texts, task="retrieval.passage")]
    layers = provider.config.num_layers
    assert len(calls) == layers * len({tuple(c[0]) for c in calls})  # one call per layer
    first = calls[0][0]
    assert first[0] == 0 and np.diff(first).tolist() == lengths[: len(first) - 1]
    assert calls[0][1] == max(lengths[: len(first) - 1])


def test_pooling_from_bf16_states_is_fp32(
    conformance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = LocalProvider(str(conformance_dir), device="cpu", dtype="bfloat16")
    net = provider.module
    seen: list[torch.Tensor] = []
    calls: list[tuple[torch.Tensor, ...]] = []
    real = net.forward_packed

    def recording(*args):  # type: ignore[no-untyped-def]
        out = real(*args)
        calls.append(args)
        seen.append(out)
        return out

    monkeypatch.setattr(net, "forward_packed", recording)
    texts = _texts(6, seed=5)
    got = provider.embed(texts, task="retrieval.query", normalized=False).vectors
    assert seen and all(s.dtype == torch.bfloat16 for s in seen)
    # each text's bf16 states, found by its ids in the recorded batches (batches are sorted)
    by_ids: dict[tuple[int, ...], np.ndarray] = {}
    for (ids, _positions, cu, *_), states in zip(calls, seen, strict=True):
        bounds = cu.tolist()
        for a, b in itertools.pairwise(bounds):
            by_ids[tuple(ids[a:b].tolist())] = states[a:b].float().numpy().astype(np.float64)
    seqs = provider.encode_ids(texts, task="retrieval.query")
    want = np.stack([by_ids[tuple(x)].mean(axis=0) for x in seqs])
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    unit = provider.embed(texts, task="retrieval.query").vectors
    np.testing.assert_allclose(
        unit, want / np.linalg.norm(want, axis=1, keepdims=True), atol=2e-6, rtol=0
    )


def test_pool_mean_is_the_per_text_mean() -> None:
    states = torch.arange(12, dtype=torch.float32).view(6, 2).to(torch.bfloat16)
    cu = torch.tensor([0, 1, 4, 6], dtype=torch.int32)
    pooled = pool_mean(states, cu)
    assert pooled.dtype == torch.float32
    assert pooled.tolist() == [[0.0, 1.0], [4.0, 5.0], [9.0, 10.0]]


class _OOMAbove:
    """Wraps forward_packed: a CUDA out-of-memory error for batches over ``limit`` tokens."""

    def __init__(self, real, limit: int) -> None:  # type: ignore[no-untyped-def]
        self.real, self.limit, self.sizes = real, limit, []

    def __call__(self, ids, *args):  # type: ignore[no-untyped-def]
        self.sizes.append(int(ids.shape[0]))
        if ids.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.real(ids, *args)


@pytest.mark.parametrize("attention", ["padded", "nested"])
def test_oom_halves_the_batch_and_the_budget(
    conformance_dir: Path,
    padded: LocalProvider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    attention: str,
) -> None:
    texts = _texts(12, seed=7, words=12)  # each under 60 tokens
    provider = LocalProvider(str(conformance_dir), attention=attention, batch_tokens=4096)
    fault = _OOMAbove(provider.module.forward_packed, limit=100)
    monkeypatch.setattr(provider.module, "forward_packed", fault)
    with caplog.at_level(logging.WARNING, logger="jv3_integrations.core._local_texts"):
        got = provider.embed(texts, task="classification", normalized=False)
    want = padded.embed(texts, task="classification", normalized=False)
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-5, rtol=0)
    assert got.usage.total_tokens == want.usage.total_tokens
    assert max(fault.sizes) > 100 and provider.batch_tokens <= 100
    assert "retrying it in halves" in caplog.text
    # the halved budget holds for the next call: no more failing attempts
    fault.sizes.clear()
    provider.embed(texts, task="classification")
    assert fault.sizes and max(fault.sizes) <= 100


def test_a_text_that_cannot_fit_alone_is_a_device_memory_error(
    conformance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = LocalProvider(str(conformance_dir))
    monkeypatch.setattr(
        provider.module, "forward_packed", _OOMAbove(provider.module.forward_packed, limit=20)
    )
    provider.embed(["short"])  # fits
    with pytest.raises(DeviceMemoryError, match=r"one text of \d+ tokens does not fit.*max_length"):
        provider.embed(["short", " ".join(WORDS * 4)])


def test_other_errors_are_not_retried(
    conformance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = LocalProvider(str(conformance_dir))
    calls: list[int] = []

    def broken(ids, *args):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED")

    monkeypatch.setattr(provider.module, "forward_packed", broken)
    with pytest.raises(RuntimeError, match="CUBLAS"):
        provider.embed(_texts(8))
    assert calls == [1]


def test_next_segment_is_tokenized_while_the_device_works(
    conformance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batch_tokens=64 -> segments of at most 256 characters of text; the first forward waits (up to 10 s) for
    # the tokenizer to start on a later segment: it only can if that runs concurrently
    provider = LocalProvider(str(conformance_dir), attention="nested", batch_tokens=64)
    provider.load()
    enc = provider._text_encoder()
    encoded = threading.Event()
    calls: list[str] = []
    real_encode, real_forward = enc.encode, provider.module.forward_packed

    def encode(texts, task):  # type: ignore[no-untyped-def]
        calls.append(threading.current_thread().name)
        if len(calls) >= 2:
            encoded.set()
        return real_encode(texts, task)

    overlapped: list[bool] = []

    def forward(*args):  # type: ignore[no-untyped-def]
        if not overlapped:
            overlapped.append(encoded.wait(10.0))
        return real_forward(*args)

    monkeypatch.setattr(enc, "encode", encode)
    monkeypatch.setattr(provider.module, "forward_packed", forward)
    texts = [" ".join((WORDS * 3)[i : i + 28]) for i in range(8)]  # 150-200 characters
    provider.embed(texts)  # a segment per text
    assert overlapped == [True]
    assert len(calls) > 2 and set(calls) == {"jv3-prefetch"}


def test_prefetcher_is_bounded_and_passes_errors_on() -> None:
    produced: list[int] = []

    def produce(put):  # type: ignore[no-untyped-def]
        for i in range(100):
            if not put(i):
                return
            produced.append(i)
        raise ValueError("tokenizer failed")

    with Prefetcher(produce, depth=2) as items:
        assert next(items) == 0
        time.sleep(0.3)
        assert len(produced) <= 4  # the one taken, two queued, one blocked in put
        rest = []
        with pytest.raises(ValueError, match="tokenizer failed"):
            rest.extend(items)
    assert rest == list(range(1, 100))

    stopped = threading.Event()

    def endless(put):  # type: ignore[no-untyped-def]
        i = 0
        while put(i):
            i += 1
        stopped.set()

    with Prefetcher(endless, depth=1) as items:
        next(items)
    assert stopped.is_set()  # the consumer left early: the producer ended, no thread leaks


def test_pack_in_order_and_host_batch_layout() -> None:
    assert pack_in_order([3, 4, 2, 9, 1], 7) == [[0, 1], [2], [3], [4]]
    batch = host_batch([5, 8], [[0, 7, 2], [0, 2]], pin=False)
    assert batch.ids.tolist() == [0, 7, 2, 0, 2]
    assert batch.positions.tolist() == [0, 1, 2, 0, 1]
    assert batch.cu_seqlens.tolist() == [0, 3, 5] and batch.max_len == 3
    first, second = batch.halves(pin=False)
    assert (first.indices, second.indices) == ([5], [8])


def test_budget_from_free_memory() -> None:
    # full-size model in bf16: (6*1024 + 2*4096) * 2 B + 2*1024*4 B = 36 KiB live, x2 slack
    full = {"hidden": 1024, "intermediate": 4096, "itemsize": 2}
    assert budget_from_free_memory(1 << 30, **full) == int((1 << 30) * 0.6) // (72 * 1024)
    assert budget_from_free_memory(80 << 30, **full) == 1 << 17  # capped
    assert budget_from_free_memory(0, **full) == 1


def test_a_kernel_that_refuses_at_run_time_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    # varlen_attn exists in this torch but has no CPU kernel: the load-time try says so
    with caplog.at_level(logging.WARNING, logger="jv3_integrations.core._packed"):
        got = first_working("varlen", torch.device("cpu"), torch.bfloat16)
    assert got == "nested"
    assert "attention='varlen' does not run on cpu" in caplog.text
    assert first_working("nested", torch.device("cpu"), torch.float32) == "nested"


def test_cuda_budget_comes_from_free_memory(
    conformance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what load does on CUDA, with the device's memory figures stood in for
    provider = LocalProvider(str(conformance_dir))
    net = provider.module
    assert provider.batch_tokens == 16384  # CPU: the fixed default
    monkeypatch.setattr(_packed, "first_working", lambda kind, device, dtype: kind)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (256 << 20, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 96 << 20)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 32 << 20)
    provider._device = torch.device("cuda")
    configure_device(provider, net)
    # hidden 128, intermediate 256, fp32: (6*128 + 2*256)*4 + 2*128*4 = 6 KiB live, x2 slack;
    # free 256 MiB + 64 MiB cached but unused = 320 MiB, 60 % of it / 12 KiB
    assert provider._budget == 16384
    assert provider._attention == "nested"  # fp32 on CUDA: jagged SDPA
    fixed = LocalProvider(str(conformance_dir), batch_tokens=1000)
    fixed.load()
    fixed._device = torch.device("cuda")
    configure_device(fixed, fixed.module)
    assert fixed._budget == 1000  # an explicit batch_tokens is kept
