"""Attention over packed real tokens: no padding anywhere in the forward pass.

A packed batch is the concatenation of its texts' token ids (``[N]``, N = real tokens) with
``cu_seqlens`` (``[B + 1]``, the start of each text) and each token's position in its text.
Three ways to run attention on it:

- ``"varlen"``: ``torch.nn.attention.varlen.varlen_attn`` (Flash Attention over ``cu_seqlens``;
  CUDA, fp16/bf16, torch >= 2.9);
- ``"nested"``: ``scaled_dot_product_attention`` on jagged nested tensors (CUDA uses the
  flash / memory-efficient kernels on the offsets, any float dtype; CPU runs the math kernel
  per text, which is how CI checks the packed layout);
- ``"padded"`` (the name kept from when it padded): SDPA on each run of equal-length texts,
  viewed in place in the packed tensors, no mask and no padding (:class:`RunAttention`); any
  device, the CPU default.

``"auto"`` picks varlen on CUDA in half precision, else nested on CUDA, else padded.
Imported only with the model (torch needed).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._model import Workspace

__all__ = [
    "ATTENTION_KINDS",
    "Attention",
    "AttentionKind",
    "PackedAttention",
    "RunAttention",
    "first_working",
    "resolve_attention",
]

logger = logging.getLogger(__name__)

AttentionKind = Literal["auto", "varlen", "nested", "padded"]
ATTENTION_KINDS = ("auto", "varlen", "nested", "padded")
_HALF = (torch.float16, torch.bfloat16)


def _varlen_fn() -> Any:
    """``varlen_attn`` when this torch has it (2.9+), else ``None``."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def _nested_ok() -> bool:
    return hasattr(torch.nested, "nested_tensor_from_jagged")


def resolve_attention(kind: str, device: torch.device, dtype: torch.dtype) -> str:
    """The attention path to run: ``kind``, or the best one available for ``"auto"``.

    Raises:
        ConfigurationError: an unknown kind, or one this device/dtype/torch cannot run.
    """
    if kind not in ATTENTION_KINDS:
        raise ConfigurationError(
            f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {kind!r}"
        )
    if kind == "auto":
        if device.type == "cuda":
            if dtype in _HALF and _varlen_fn() is not None:
                return "varlen"
            if _nested_ok():
                return "nested"
        return "padded"
    if kind == "varlen" and (device.type != "cuda" or dtype not in _HALF or _varlen_fn() is None):
        raise ConfigurationError(
            "attention='varlen' needs a CUDA device, dtype bfloat16 or float16 and torch >= 2.9 "
            f"(here: {device.type}, {dtype}, torch {torch.__version__}); use attention='auto'"
        )
    if kind == "nested" and not _nested_ok():
        raise ConfigurationError(
            "attention='nested' needs jagged nested tensors (torch >= 2.4), "
            f"here {torch.__version__}"
        )
    return kind


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """NeoX rotate-half rotary on ``[N, h, d]`` with cos/sin of shape ``[N, 1, d/2]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(Protocol):
    """The attention layout of one packed batch, shared by every layer of a forward."""

    def attend(self, qkv: Tensor, heads: int) -> Tensor:
        """Rotary + bidirectional attention within each text: ``qkv [N, 3H]`` -> ``[N, H]``."""
        ...


# SDPA is called on at most this many elements of output at once: its output is a new tensor,
# and on CPU tensors over 32 MiB are fresh mappings paid in page faults
_SDPA_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RunAttention:
    """Attention over packed tokens, one SDPA call per run of equal-length texts.

    Texts of one length that follow each other are viewed in place as a ``[c, L, h, d]``
    batch (the projections are never scattered into a padded grid, nothing is masked or
    zero-filled). Rotary is applied to q and k together in one pass per layer, into a
    workspace buffer, with cos/sin gathered once per forward. Each run's context goes
    straight into the packed ``[N, H]`` context buffer.

    Attributes:
        runs: ``(first token, texts, length)`` per run of equal-length texts.
        cos / sin: ``[N, 1, 1, d/2]`` rotary tables at each token's position.
        ws: The forward's activation buffers.
    """

    runs: tuple[tuple[int, int, int], ...]
    cos: Tensor
    sin: Tensor
    ws: Workspace

    @classmethod
    def of(cls, cu_seqlens: Tensor, cos: Tensor, sin: Tensor, ws: Workspace) -> RunAttention:
        """The layout of a batch with text starts ``cu_seqlens`` (read on the host)."""
        cu = cu_seqlens.tolist()
        runs: list[tuple[int, int, int]] = []
        for b in range(len(cu) - 1):
            length = cu[b + 1] - cu[b]
            if runs and runs[-1][2] == length:
                first, count, _ = runs[-1]
                runs[-1] = (first, count + 1, length)
            else:
                runs.append((cu[b], 1, length))
        return cls(tuple(runs), cos[:, None, None, :], sin[:, None, None, :], ws)

    def attend(self, qkv: Tensor, heads: int) -> Tensor:
        """Rotary on q/k, then attention within each text: ``qkv [N, 3H]`` -> ``[N, H]``."""
        n, width = qkv.shape
        hidden = width // 3
        d = hidden // heads
        half = d // 2
        qkv4 = qkv.view(n, 3, heads, d)
        src = qkv4[:, :2]  # q and k: [N, 2, h, d]
        # the "f" buffer (MLP activations) is free until fc1 runs: q/k live there meanwhile
        qk = self.ws.get("f", n, 2 * hidden, qkv).view(n, 2, heads, d)
        x1, x2 = src[..., :half], src[..., half:]
        o1, o2 = qk[..., :half], qk[..., half:]
        torch.mul(x1, self.cos, out=o1)
        o1.addcmul_(x2, self.sin, value=-1)
        torch.mul(x2, self.cos, out=o2)
        o2.addcmul_(x1, self.sin)
        scale = d**-0.5
        if len(self.runs) == 1 and self.runs[0][1] * self.runs[0][2] * hidden <= _SDPA_ELEMENTS:
            _, count, length = self.runs[0]  # one call: its output is the context, no copy
            q = qk[:, 0].view(count, length, heads, d).transpose(1, 2)
            k = qk[:, 1].view(count, length, heads, d).transpose(1, 2)
            v = qkv4[:, 2].view(count, length, heads, d).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
            return out.transpose(1, 2).reshape(n, hidden)
        # the "h1" buffer is free until norm1 writes it, after the output projection
        ctx = self.ws.get("h1", n, hidden, qkv)
        for first, count, length in self.runs:
            step = max(1, _SDPA_ELEMENTS // (length * hidden))  # texts per SDPA call
            for s in range(0, count, step):
                c = min(step, count - s)
                a, b = first + s * length, first + (s + c) * length
                q = qk[a:b, 0].view(c, length, heads, d).transpose(1, 2)
                k = qk[a:b, 1].view(c, length, heads, d).transpose(1, 2)
                v = qkv4[a:b, 2].view(c, length, heads, d).transpose(1, 2)
                out = F.scaled_dot_product_attention(q, k, v, scale=scale)
                ctx[a:b].view(c, length, heads, d).copy_(out.transpose(1, 2))
        return ctx


@dataclass(frozen=True)
class PackedAttention:
    """The attention layout of one packed batch, shared by every layer of a forward.

    Attributes:
        kind: ``"varlen"`` or ``"nested"``.
        cu_seqlens: ``[B + 1]`` int32 on the device: text b is tokens ``cu[b]:cu[b+1]``.
        offsets: The same as int64 (what nested tensors take).
        max_len: The longest text (host int: no device sync).
        cos / sin: Rotary tables gathered at each token's position, ``[N, 1, d/2]``.
    """

    kind: str
    cu_seqlens: Tensor
    offsets: Tensor
    max_len: int
    cos: Tensor
    sin: Tensor

    def attend(self, qkv: Tensor, heads: int) -> Tensor:
        """Bidirectional attention within each text: ``qkv [N, 3H]`` -> context ``[N, H]``."""
        n, width = qkv.shape
        hidden = width // 3
        d = hidden // heads
        q, k, v = qkv.view(n, 3, heads, d).unbind(1)  # each [N, h, d]
        q = _rotate(q, self.cos, self.sin)
        k = _rotate(k, self.cos, self.sin)
        scale = d**-0.5
        if self.kind == "varlen":
            fn = _varlen_fn()
            # positional arguments only: the keyword set changed between torch 2.9 and 2.13;
            # the default scale is 1/sqrt(d) and the default is non-causal
            ctx = cast(
                Tensor,
                fn(
                    q,
                    k,
                    v.contiguous(),
                    self.cu_seqlens,
                    self.cu_seqlens,
                    self.max_len,
                    self.max_len,
                ),
            )
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "nested tensors are a prototype"
                nq, nk, nv = (
                    torch.nested.nested_tensor_from_jagged(
                        t, self.offsets, min_seqlen=1, max_seqlen=self.max_len
                    ).transpose(1, 2)
                    for t in (q, k, v.contiguous())
                )
                out = F.scaled_dot_product_attention(nq, nk, nv, scale=scale)
                ctx = out.transpose(1, 2).values()
        return ctx.reshape(n, hidden)


def first_working(kind: str, device: torch.device, dtype: torch.dtype) -> str:
    """``kind`` if it runs on a two-text batch here, else the next one down (to padded).

    ``"auto"`` picks by device, dtype and torch version; a kernel can still refuse at run
    time (an unsupported GPU, a driver), so the choice is tried once on load.
    """
    order = ["varlen", "nested", "padded"]
    for candidate in order[order.index(kind) :]:
        if candidate == "padded":
            return candidate
        if candidate == "varlen" and (dtype not in _HALF or _varlen_fn() is None):
            continue
        try:
            with torch.no_grad():
                n, heads, d = 3, 1, 8
                qkv = torch.randn(n, 3 * heads * d, device=device, dtype=dtype)
                cu = torch.tensor([0, 1, 3], dtype=torch.int32, device=device)
                ones = torch.ones(n, 1, d // 2, device=device, dtype=dtype)
                PackedAttention(candidate, cu, cu.long(), 2, ones, ones * 0).attend(qkv, heads)
            return candidate
        except Exception as exc:  # fall back, and say why
            logger.warning(
                "attention=%r does not run on %s (%s: %s); falling back",
                candidate,
                device,
                type(exc).__name__,
                str(exc)[:200],
            )
    return "padded"  # pragma: no cover - the loop returns
