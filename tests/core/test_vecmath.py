"""Vector math against values computed by hand."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jv3_integrations import (
    b64_decode_f32,
    b64_encode_f32,
    binary_to_ubinary,
    l2_normalize,
    quantize_binary,
    quantize_ubinary,
    truncate,
    unpack_bits,
)


def test_truncate_then_renormalize_by_hand() -> None:
    v = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)  # |v[:2]| = 5
    assert np.allclose(truncate(v, 2), [[0.6, 0.8]])
    assert np.allclose(truncate(v, 2, normalize=False), [[3.0, 4.0]])
    assert np.allclose(truncate(v, 3), [[3 / 13, 4 / 13, 12 / 13]])


def test_truncate_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="1..3"):
        truncate(np.ones((1, 3)), 4)
    with pytest.raises(ValueError):
        truncate(np.ones((1, 3)), 0)


def test_zero_vector_stays_zero() -> None:
    assert np.array_equal(l2_normalize(np.zeros((1, 4))), np.zeros((1, 4), dtype=np.float32))


def test_ubinary_msb_first_and_strictly_positive() -> None:
    # components > 0 -> bits 1,0,1,1,0,0,0,1 -> 0b10110001 = 177; then 0.0 -> 0, 5 -> 1 ... pad
    v = np.array([[0.5, -1.0, 2.0, 1e-9, 0.0, -0.0, -3.0, 7.0, 0.0, 5.0]], dtype=np.float32)
    packed = quantize_ubinary(v)
    assert packed.dtype == np.uint8
    assert packed.tolist() == [[177, 0b01000000]]


def test_binary_is_ubinary_minus_128() -> None:
    v = np.array([[1.0] * 8 + [-1.0] * 8], dtype=np.float32)
    assert quantize_ubinary(v).tolist() == [[255, 0]]
    assert quantize_binary(v).tolist() == [[127, -128]]
    assert binary_to_ubinary(quantize_binary(v)).tolist() == [[255, 0]]


def test_unpack_bits_gives_plus_minus_one() -> None:
    assert unpack_bits(np.array([[177]], dtype=np.uint8)).tolist() == [
        [1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0]
    ]
    assert unpack_bits(np.array([[255, 0]], dtype=np.uint8), dimensions=10).shape == (1, 10)


def test_base64_is_little_endian_float32() -> None:
    expected = base64.b64encode(struct.pack("<2f", 1.0, -2.5)).decode()
    assert b64_encode_f32([1.0, -2.5]) == expected == "AACAPwAAIMA="
    assert b64_decode_f32(expected).tolist() == [1.0, -2.5]


def test_base64_rejects_truncated_payload() -> None:
    with pytest.raises(ValueError):
        b64_decode_f32(base64.b64encode(b"abc").decode())


finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@given(arrays(np.float32, st.integers(1, 64), elements=finite), st.data())
def test_truncation_keeps_unit_norm(v: np.ndarray, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, v.shape[0]))
    out = truncate(v[None, :], k)
    norm = float(np.linalg.norm(out))
    assert out.shape == (1, k)
    assert norm == pytest.approx(1.0, abs=1e-5) or norm == 0.0


@given(arrays(np.float32, st.integers(1, 64), elements=finite))
def test_base64_round_trip(v: np.ndarray) -> None:
    assert np.array_equal(b64_decode_f32(b64_encode_f32(v)), v)


@given(arrays(np.float32, st.integers(1, 64), elements=finite))
def test_quantization_round_trip_keeps_signs(v: np.ndarray) -> None:
    signs = unpack_bits(quantize_ubinary(v[None, :]), dimensions=v.shape[0])[0]
    assert np.array_equal(signs > 0, v > 0)
    assert np.array_equal(
        binary_to_ubinary(quantize_binary(v[None, :])), quantize_ubinary(v[None, :])
    )


def test_tiny_nonzero_vectors_are_normalized_too() -> None:
    """Found by hypothesis: a row with norm ~1e-10 came back unnormalized (and not zero)."""
    for scale in (1e-10, 1e-30, 1e-44):  # the last is subnormal in float32
        v = np.array([[3.0, 4.0, 0.0]], dtype=np.float32) * np.float32(scale)
        out = truncate(v, 2)
        np.testing.assert_allclose(out, [[0.6, 0.8]], atol=1e-6)
    assert np.array_equal(truncate(np.zeros((1, 3), np.float32), 2), np.zeros((1, 2), np.float32))
