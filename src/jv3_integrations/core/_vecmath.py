"""Vector math shared by every provider and the server: Matryoshka, quantization, base64.

Conventions (spec/API.md): ``ubinary`` packs one sign bit per component, most significant bit
first, bit set where the component is > 0 (``numpy.packbits``); ``binary`` is the same bytes as
int8, i.e. ``ubinary - 128``; ``base64`` is little-endian float32 bytes.
"""

from __future__ import annotations

import base64

import numpy as np
import numpy.typing as npt

__all__ = [
    "b64_decode_f32",
    "b64_encode_f32",
    "binary_to_ubinary",
    "l2_normalize",
    "matryoshka",
    "quantize_binary",
    "quantize_ubinary",
    "truncate",
    "unpack_bits",
]

_EPS = 1e-12


def l2_normalize(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Scale each row to unit L2 norm (rows of zeros stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.all(norms > _EPS):  # the usual case: float32 all the way
        out: npt.NDArray[np.float32] = (v / norms).astype(np.float32, copy=False)
        return out
    # Zero rows, or rows so small (down to float32 subnormals) that their float32 norm is
    # below _EPS or underflows to 0: in float64, where their norm is exact, so they come back
    # at unit norm too; zero rows stay zero.
    v64 = v.astype(np.float64)
    n64 = np.linalg.norm(v64, axis=-1, keepdims=True)
    tiny: npt.NDArray[np.float32] = np.divide(
        v64, n64, out=np.zeros_like(v64), where=n64 > 0
    ).astype(np.float32)
    return tiny


def matryoshka(
    vectors: npt.ArrayLike, dimensions: int, *, normalize: bool = True
) -> npt.NDArray[np.float32]:
    """The Matryoshka cut to ``dimensions``: keep the first components, then renormalize.

    ("dimensions" is the Matryoshka size everywhere in this package; "truncate" means clipping
    text that is too long, as in Jina's API.)
    """
    v = np.asarray(vectors, dtype=np.float32)
    if dimensions < 1 or dimensions > v.shape[-1]:
        raise ValueError(f"dimensions must be in 1..{v.shape[-1]}, got {dimensions}")
    out = v[..., :dimensions]
    return l2_normalize(out) if normalize else np.ascontiguousarray(out)


#: Deprecated name of :func:`matryoshka` (kept so older imports work; "truncate" now means
#: clipping text only).
truncate = matryoshka


def quantize_ubinary(vectors: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Pack sign bits (component > 0), MSB first, into uint8 of shape (n, ceil(d/8))."""
    v = np.asarray(vectors, dtype=np.float32)
    return np.packbits(v > 0, axis=-1)


def quantize_binary(vectors: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """The ``ubinary`` bytes as int8 (``ubinary - 128``)."""
    return (quantize_ubinary(vectors).astype(np.int16) - 128).astype(np.int8)


def binary_to_ubinary(values: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Undo :func:`quantize_binary`: int8 values back to the packed uint8 bytes."""
    return (np.asarray(values, dtype=np.int16) + 128).astype(np.uint8)


def unpack_bits(packed: npt.ArrayLike, dimensions: int | None = None) -> npt.NDArray[np.float32]:
    """Packed ``ubinary`` bytes back to ±1 floats (bit set → +1, clear → -1)."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1)
    if dimensions is not None:
        bits = bits[..., :dimensions]
    return (bits.astype(np.float32) * 2.0 - 1.0).astype(np.float32)


def b64_encode_f32(vector: npt.ArrayLike) -> str:
    """Base64 of the little-endian float32 bytes of one vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def b64_decode_f32(data: str) -> npt.NDArray[np.float32]:
    """Decode :func:`b64_encode_f32` output back to a float32 vector."""
    raw = base64.b64decode(data, validate=True)
    if len(raw) % 4:
        raise ValueError(f"base64 payload has {len(raw)} bytes, not a multiple of 4")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)
