"""The CPU fast path of the local model (issue 29): no padding round trips, one rotary pass.

What a user notices: the same vectors whatever the batching (a text embedded alone or among
texts of other lengths), and a forward that does no scatter / zero-fill / index work between
the packed tokens and attention, rotary once per layer, GELU in place.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from jv3_integrations import LocalProvider
from jv3_integrations.core._model import JinaEmbeddingsV3, Workspace
from jv3_integrations.core._packed import RunAttention
from jv3_integrations.core._pipeline import host_batch

TEXTS = [
    "a",
    "Berlin is the capital of Germany.",
    "Berlin is the capital of Germany.",  # equal length, next to it: one run of two texts
    "The quick brown fox jumps over the lazy dog, twice, and then once more for luck.",
    "short one",
]


class _Ops(TorchDispatchMode):  # type: ignore[no-untyped-call,misc]
    """Counts the aten ops a block of code runs."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def provider(conformance_dir: Path) -> LocalProvider:
    provider = LocalProvider(str(conformance_dir), device="cpu")
    provider.load()
    return provider


def test_a_text_gets_the_same_vector_alone_and_among_other_lengths(
    provider: LocalProvider,
) -> None:
    together = provider.embed(TEXTS, task="retrieval.passage", normalized=False).vectors
    for i, text in enumerate(TEXTS):
        alone = provider.embed([text], task="retrieval.passage", normalized=False).vectors
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)


def test_padded_forward_equals_the_packed_forward(provider: LocalProvider) -> None:
    """``forward(ids, mask)`` (late chunking, callers with a padded grid) drops the padding."""
    net = cast(JinaEmbeddingsV3, provider.module)
    seqs = provider.encode_ids(TEXTS, task="classification")
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), 1, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.bool)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = True
    with torch.inference_mode():
        net.set_task(3)
        padded = net(ids, mask)
        for r, s in enumerate(seqs):
            alone = net(torch.tensor([s]))
            start = sum(len(x) for x in seqs[:r])
            torch.testing.assert_close(padded[start : start + len(s)], alone, atol=1e-5, rtol=0)


def test_runs_group_consecutive_texts_of_equal_length() -> None:
    cu = torch.tensor([0, 3, 6, 10, 12, 14], dtype=torch.int32)
    cos = torch.ones(14, 4)
    runs = RunAttention.of(cu, cos, cos, Workspace()).runs
    assert runs == ((0, 2, 3), (6, 1, 4), (10, 2, 2))


def test_forward_has_no_scatter_fill_or_index_round_trips(provider: LocalProvider) -> None:
    net = cast(JinaEmbeddingsV3, provider.module)
    layers = net.cfg.num_layers
    seqs = provider.encode_ids(TEXTS, task="retrieval.passage")
    batch = host_batch(list(range(len(seqs))), seqs, pin=False)
    with torch.inference_mode():
        net.set_task(1)  # merged: no LoRA side path in the count
        with _Ops() as rec:
            net.forward_packed(*batch.to(net.emb_ln_w.device), batch.max_len, "padded")
    ops = rec.ops
    forbidden = {
        "index_copy",
        "index_copy_",
        "index_fill_",
        "index_put_",
        "nonzero",
        "masked_fill",
        "masked_fill_",
        "masked_select",
        "scatter",
        "scatter_",
        "new_zeros",
        "zero_",
        "fill_",
    }
    assert not forbidden & set(ops), {k: ops[k] for k in forbidden & set(ops)}
    # rotary: q and k rotated together, once per layer (two addcmul_ per layer), no cat
    assert ops["addcmul_"] == 2 * layers
    assert ops["cat"] == 0
    # bias + GELU: the bias comes with the matmul, GELU runs in place
    assert ops["gelu_"] == layers and ops["gelu"] == 0
    # attention on the packed tokens without a mask, one call per run of equal lengths
    lengths = [len(s) for s in seqs]
    assert lengths[1] == lengths[2] and len(set(lengths)) == 4
    assert ops["scaled_dot_product_attention"] == 4 * layers
    # the position tables are gathered once per forward, not per layer
    assert ops["index_select"] <= 2


def test_buffers_are_reused_from_layer_to_layer_and_freed_after_the_call(
    provider: LocalProvider,
) -> None:
    ws = Workspace()
    like = torch.empty(0)
    a = ws.get("f", 4, 8, like)
    b = ws.get("f", 2, 16, like)  # same size, other shape: the same memory
    assert a.data_ptr() == b.data_ptr()
    c = ws.get("f", 8, 8, like)  # grown
    assert c.numel() == 64
    net = cast(JinaEmbeddingsV3, provider.module)
    assert net._ws is None
    with net.reuse_buffers():
        held = net._ws
        assert held is not None
        with net.reuse_buffers():  # re-entrant: the outer block owns the buffers
            assert net._ws is held
        assert net._ws is held
    assert net._ws is None


def test_layer_norm_in_slices_equals_one_layer_norm() -> None:
    ws = Workspace()
    ws.FRESH_BYTES = 1 << 20  # type: ignore[misc]
    ws.SLICE = 1 << 18  # type: ignore[misc]
    x = torch.randn(3000, 512)
    w, b = torch.randn(512), torch.randn(512)
    want = torch.nn.functional.layer_norm(x, (512,), w, b, 1e-5)
    got = ws.layer_norm(x, w, b, 1e-5, "x")  # 6 MiB: sliced into the buffer
    torch.testing.assert_close(got, want)
    assert got.data_ptr() == ws.get("x", 3000, 512, x).data_ptr()
    small = ws.layer_norm(x[:100], w, b, 1e-5, "x")  # heap-sized: a plain layer norm
    torch.testing.assert_close(small, want[:100])


def test_the_provider_keeps_torchs_thread_count(conformance_dir: Path) -> None:
    """Default threads: all cores (torch's own default), measured best per token for one
    process (docs/local-model.md); the provider never changes the process-wide setting."""
    before = torch.get_num_threads()
    LocalProvider(str(conformance_dir), device="cpu").embed(["hello"], task="retrieval.query")
    assert torch.get_num_threads() == before
