"""``quantize="int8"`` (issue 29): per-channel int8 weights, attention in float, close to fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from jv3_integrations import LocalProvider
from jv3_integrations.core import _model
from jv3_integrations.core._model import JinaEmbeddingsV3
from tests.conftest import CONFORMANCE_DIR

CASES: list[dict[str, Any]] = json.loads((CONFORMANCE_DIR / "expected.json").read_text())["cases"]
TEXTS = sorted({t for case in CASES for t in case["texts"]})


@pytest.fixture(scope="module")
def pair(conformance_dir: Path) -> tuple[LocalProvider, LocalProvider]:
    return (
        LocalProvider(str(conformance_dir), device="cpu"),
        LocalProvider(str(conformance_dir), device="cpu", quantize="int8"),
    )


@pytest.mark.parametrize("task", ["retrieval.query", "retrieval.passage", "text-matching", None])
def test_int8_min_cosine_to_fp32_on_the_conformance_data(
    pair: tuple[LocalProvider, LocalProvider], task: str | None
) -> None:
    fp32, int8 = pair
    want = fp32.embed(TEXTS, task=task).vectors
    got = int8.embed(TEXTS, task=task).vectors
    cosines = (want * got).sum(axis=1)
    assert cosines.min() >= 0.998, f"min cosine {cosines.min():.5f} (worst text {cosines.argmin()})"
    assert not np.array_equal(want, got)  # really quantized


def test_int8_weights_are_per_output_channel(pair: tuple[LocalProvider, LocalProvider]) -> None:
    net = cast(JinaEmbeddingsV3, pair[1].module)
    for lin in net.linears():
        weight, _ = torch.ops.quantized.linear_unpack(lin.packed)
        assert weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        assert not weight.q_per_channel_zero_points().any()  # symmetric
        scales = weight.q_per_channel_scales()
        assert scales.shape[0] == weight.shape[0]  # one scale per output row
        assert scales.unique().numel() > 1


def test_attention_stays_in_float(
    pair: tuple[LocalProvider, LocalProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.dtype] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.extend((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    pair[1].embed(["hello world", "Berlin"], task="retrieval.query")
    assert seen and set(seen) == {torch.float32}


def test_activations_use_the_full_int8_range_only_where_they_cannot_saturate() -> None:
    """7-bit activations (``reduce_range``) exactly where the CPU lacks VNNI."""
    assert _model._REDUCE_RANGE is (not _model._has_vnni())


def test_large_batches_quantize_activations_per_slice(
    pair: tuple[LocalProvider, LocalProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch over the slice size is cut into slices, each with its own activation scale,
    and gives the vectors of the texts embedded in small batches (within int8 rounding)."""
    fp32, int8 = pair
    texts = TEXTS * 3
    small = LocalProvider(str(CONFORMANCE_DIR), device="cpu", quantize="int8", batch_tokens=64)
    want = small.embed(texts, task="retrieval.passage").vectors
    monkeypatch.setattr(_model, "_INT8_OUT_ELEMENTS", 256 * 64)  # slices of 64 rows at most
    got = int8.embed(texts, task="retrieval.passage").vectors
    assert ((want * got).sum(axis=1)).min() >= 0.999
    ref = fp32.embed(texts, task="retrieval.passage").vectors
    assert ((ref * got).sum(axis=1)).min() >= 0.998
