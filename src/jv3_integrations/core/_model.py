"""The jina-embeddings-v3 network in plain PyTorch (imported only when the model loads).

The math follows ``spec/MODEL.md``: XLM-RoBERTa with rotary positions (NeoX rotate-half),
post-LayerNorm blocks, exact GELU, and one LoRA adapter per task on every Linear/Embedding.

Adapters are never recomputed per forward. Weights are held in the checkpoint's dtype when it
is narrower than the compute dtype (bf16 checkpoint, fp32 compute: lossless), else in the
compute dtype. In ``"merged"`` mode each Linear keeps its base weight plus ONE dense copy for
the active task (merged in fp32, then cast); a call of at least ``MERGE_MIN_TOKENS`` tokens
for another task rebuilds that copy, a smaller one runs the rank-r side paths on top of it
(``x M + x Δ_t - x Δ_m``), so alternating small query calls and big passage calls never
thrash. At most base + one linear-sized copy + the LoRA factors are resident whatever tasks
are used. Embedding adapters are applied to the gathered rows only
(``E[ids] + s * A[t][ids] @ B[t]`` in fp32), so the large vocabulary table is never copied.
In ``"lowrank"`` mode Linears never merge: base weight plus the rank-r side path.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checkpoint import ModelConfig
from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._packed import PackedAttention

__all__ = ["AdapterMode", "JinaEmbeddingsV3", "storage_dtype"]

AdapterMode = Literal["merged", "lowrank"]

# A merge costs about as much as a forward over a few hundred tokens (it reads every Linear
# weight and writes a merged copy); below this many tokens a task switch uses the side path.
MERGE_MIN_TOKENS = 1024
_P = "parametrizations.weight"


def storage_dtype(stored: torch.dtype, compute: torch.dtype) -> torch.dtype:
    """Dtype to hold a weight in: the stored one when narrower (lossless), else compute."""
    return stored if stored.itemsize < compute.itemsize else compute


class LoRALinear(nn.Module):
    """A Linear with per-task rank-r adapters; holds at most one materialized dense weight.

    The materialized weight ``M`` is the base weight merged with the adapter of task ``m``
    (``self.merged_task``; ``None`` = base only), in the compute dtype (or int8-packed). A call
    for another task ``t`` runs the rank-r side paths ``+ x Δ_t - x Δ_m`` on top of ``M``
    instead of rebuilding it, so small calls never pay for a merge.
    """

    weight: Tensor
    bias: Tensor
    lora_a: Tensor
    lora_b: Tensor
    merged: Tensor | None
    packed: Any

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor,
        lora_a: Tensor,
        lora_b: Tensor,
        scaling: float,
        compute_dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.compute_dtype = compute_dtype
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("lora_a", lora_a)  # [T, r, in]
        self.register_buffer("lora_b", lora_b)  # [T, out, r]
        self.register_buffer("merged", None, persistent=False)
        self.scaling = scaling
        self.task: int | None = None  # the task of the current forward
        self.merged_task: int | None = None  # the task folded into the materialized weight
        self.quantized = False
        self.packed = None
        self._materialize(None, quantize=False)

    def delta(self, task: int) -> Tensor:
        """``scaling * B[t] @ A[t]`` in fp32."""
        return self.scaling * (self.lora_b[task].float() @ self.lora_a[task].float())

    def _materialize(self, task: int | None, *, quantize: bool) -> None:
        self.merged = None  # free the old copy before building the new one
        self.packed = None
        self.merged_task, self.quantized = task, quantize
        if quantize:
            w = self.weight.float() if task is None else self.weight.float() + self.delta(task)
            self.packed = _int8_pack(w, self.bias.float())
        elif task is not None:
            self.merged = (self.weight.float() + self.delta(task)).to(self.compute_dtype)
        elif self.weight.dtype != self.compute_dtype:  # narrower storage: one cast copy
            self.merged = self.weight.to(self.compute_dtype)

    def configure(self, task: int | None, *, merge: bool, quantize: bool) -> None:
        """Run the next forwards for ``task``; ``merge``: fold it into the dense weight."""
        self.task = task
        if quantize != self.quantized or (merge and task != self.merged_task):
            self._materialize(task if merge else self.merged_task, quantize=quantize)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, in]`` (tokens flattened)."""
        if self.packed is not None:
            out = cast(Tensor, torch.ops.quantized.linear_dynamic(x, self.packed, True))
        else:
            out = F.linear(x, self.merged if self.merged is not None else self.weight, self.bias)
        if self.task != self.merged_task:  # rank-r side paths on top of the dense weight
            a_parts, b_parts = [], []
            if self.task is not None:
                a_parts.append(self.lora_a[self.task])
                b_parts.append(self.lora_b[self.task])
            if self.merged_task is not None:
                a_parts.append(self.lora_a[self.merged_task])
                b_parts.append(-self.lora_b[self.merged_task])
            a = torch.cat(a_parts, 0).to(x.dtype)  # [k*r, in]
            b = torch.cat(b_parts, 1).to(x.dtype)  # [out, k*r]
            out = torch.addmm(out, F.linear(x, a), b.t(), alpha=self.scaling)
        return out


def _int8_pack(weight: Tensor, bias: Tensor) -> Any:
    """Per-output-channel symmetric int8 weights, prepacked for dynamic quantized matmul."""
    scale = weight.abs().amax(dim=1).clamp_min(1e-8) / 127.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated upstream
        q = torch.quantize_per_channel(
            weight, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8
        )
        return torch.ops.quantized.linear_prepack(q, bias)


class LoRAEmbedding(nn.Module):
    """An embedding table with per-task adapters, applied to the gathered rows in fp32."""

    weight: Tensor
    lora_a: Tensor
    lora_b: Tensor

    def __init__(self, weight: Tensor, lora_a: Tensor, lora_b: Tensor, scaling: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("lora_a", lora_a)  # [T, n, r]
        self.register_buffer("lora_b", lora_b)  # [T, r, dim]
        self.scaling = scaling

    def forward(self, ids: Tensor, task: int | None) -> Tensor:
        rows = F.embedding(ids, self.weight).float()
        if task is not None:
            a = F.embedding(ids, self.lora_a[task]).float()
            rows = rows + self.scaling * (a @ self.lora_b[task].float())
        return rows


class Block(nn.Module):
    """One post-LayerNorm transformer block with rotary self-attention."""

    norm1_w: Tensor
    norm1_b: Tensor
    norm2_w: Tensor
    norm2_b: Tensor

    def __init__(
        self, cfg: ModelConfig, t: dict[str, Tensor], prefix: str, dtype: torch.dtype
    ) -> None:
        super().__init__()
        s = cfg.lora_scaling

        def linear(name: str) -> LoRALinear:
            p = f"{prefix}.{name}"
            return LoRALinear(
                t.pop(f"{p}.{_P}.original"),
                t.pop(f"{p}.bias"),
                t.pop(f"{p}.{_P}.0.lora_A"),
                t.pop(f"{p}.{_P}.0.lora_B"),
                s,
                dtype,
            )

        self.wqkv = linear("mixer.Wqkv")
        self.out_proj = linear("mixer.out_proj")
        self.fc1 = linear("mlp.fc1")
        self.fc2 = linear("mlp.fc2")
        for norm in ("norm1", "norm2"):
            self.register_buffer(f"{norm}_w", t.pop(f"{prefix}.{norm}.weight"))
            self.register_buffer(f"{norm}_b", t.pop(f"{prefix}.{norm}.bias"))
        self.heads = cfg.num_heads
        self.eps = cfg.layer_norm_eps

    def linears(self) -> list[LoRALinear]:
        return [self.wqkv, self.out_proj, self.fc1, self.fc2]

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        index: Tensor | None,
        batch: int,
        packed: PackedAttention | None = None,
    ) -> Tensor:
        """``x``: ``[N, H]`` real tokens only; attention runs on the padded ``[B, L]`` layout.

        Args:
            x: Hidden states of the real tokens (row-major over the batch).
            cos / sin: Rotary tables ``[L, 1, d/2]``.
            mask: ``[B, 1, 1, L]`` key mask, or ``None`` when nothing is padded.
            index: Positions of the real tokens in the flattened ``[B * L]`` layout (``None``
                when nothing is padded).
            batch: B.
            packed: Varlen attention over the packed tokens instead (then cos/sin/mask/index
                are unused: the rotary tables are per token, in ``packed``).
        """
        qkv = self.wqkv(x)
        if packed is not None:
            return self._mlp(x, packed.attend(qkv, self.heads))
        hidden = x.shape[-1]
        n = cos.shape[0]
        d = hidden // self.heads
        if index is not None:  # scatter into the padded layout for attention only
            qkv = qkv.new_zeros(batch * n, 3 * hidden).index_copy_(0, index, qkv)
        q, k, v = qkv.view(batch, n, 3, self.heads, d).unbind(2)  # each [B, L, h, d]
        q = _rotate(q, cos, sin).transpose(1, 2)
        k = _rotate(k, cos, sin).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(
            q, k, v.transpose(1, 2), attn_mask=mask, scale=1.0 / math.sqrt(d)
        )
        ctx = ctx.transpose(1, 2).reshape(batch * n, hidden)
        if index is not None:
            ctx = ctx.index_select(0, index)
        return self._mlp(x, ctx)

    def _mlp(self, x: Tensor, ctx: Tensor) -> Tensor:
        """Output projection, residual + norm1, MLP, residual + norm2 (on ``[N, H]``)."""
        hidden = x.shape[-1]
        h1 = F.layer_norm(x + self.out_proj(ctx), (hidden,), self.norm1_w, self.norm1_b, self.eps)
        m = self.fc2(F.gelu(self.fc1(h1)))
        return F.layer_norm(h1 + m, (hidden,), self.norm2_w, self.norm2_b, self.eps)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """NeoX rotate-half rotary on [B, L, h, d] with cos/sin of shape [L, 1, d/2].

    Written in place into a ``[B, h, L, d]`` buffer (returned as its ``[B, L, h, d]`` view),
    so the caller's ``.transpose(1, 2)`` hands attention contiguous heads, with no temporaries
    and no ``cat`` copy (rotary took about a quarter of a long-window pass before).
    """
    batch, n, heads, d = x.shape
    half = d // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty((batch, heads, n, d), dtype=x.dtype, device=x.device).transpose(1, 2)
    o1, o2 = out[..., :half], out[..., half:]
    torch.mul(x1, cos, out=o1)
    o1.addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=o2)
    o2.addcmul_(x1, sin)
    return out


class JinaEmbeddingsV3(nn.Module):
    """jina-embeddings-v3 encoder: token ids -> last hidden states.

    Args:
        cfg: The checkpoint's configuration.
        tensors: Checkpoint tensors by official key (consumed: popped as they are used).
        dtype: Compute dtype.
        adapter_mode: ``"merged"`` (one dense merged copy for the active task) or ``"lowrank"``.
    """

    emb_ln_w: Tensor
    emb_ln_b: Tensor
    inv_freq: Tensor

    def __init__(
        self,
        cfg: ModelConfig,
        tensors: dict[str, Tensor],
        *,
        dtype: torch.dtype,
        adapter_mode: AdapterMode = "merged",
    ) -> None:
        super().__init__()
        if adapter_mode not in ("merged", "lowrank"):
            raise ConfigurationError(
                f"adapter_mode must be 'merged' or 'lowrank', got {adapter_mode!r}"
            )
        self.cfg = cfg
        self.dtype = dtype
        self.adapter_mode: AdapterMode = adapter_mode
        self.quantized = False
        s = cfg.lora_scaling
        e = "roberta.embeddings"
        self.word = LoRAEmbedding(
            tensors.pop(f"{e}.word_embeddings.{_P}.original"),
            tensors.pop(f"{e}.word_embeddings.{_P}.0.lora_A"),
            tensors.pop(f"{e}.word_embeddings.{_P}.0.lora_B"),
            s,
        )
        self.token_type = LoRAEmbedding(
            tensors.pop(f"{e}.token_type_embeddings.{_P}.original"),
            tensors.pop(f"{e}.token_type_embeddings.{_P}.0.lora_A"),
            tensors.pop(f"{e}.token_type_embeddings.{_P}.0.lora_B"),
            s,
        )
        self.register_buffer("emb_ln_w", tensors.pop("roberta.emb_ln.weight"))
        self.register_buffer("emb_ln_b", tensors.pop("roberta.emb_ln.bias"))
        self.blocks = nn.ModuleList(
            Block(cfg, tensors, f"roberta.encoder.layers.{i}", dtype) for i in range(cfg.num_layers)
        )
        self.task: int | None = None
        d = cfg.head_dim
        inv = 1.0 / (cfg.rotary_base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        self.register_buffer("inv_freq", inv.to(self.emb_ln_w.device), persistent=False)
        self._rope: tuple[Tensor, Tensor] | None = None
        self._layers: Any = self._run_layers

    # -- adapters ---------------------------------------------------------------------------

    def linears(self) -> list[LoRALinear]:
        return [lin for blk in self.blocks for lin in cast(Block, blk).linears()]

    def set_task(self, task: int | None, tokens: int | None = None) -> None:
        """Activate a task adapter (index into ``cfg.tasks``) or none for the next forwards.

        Args:
            task: The task index, or ``None`` for the base model.
            tokens: Tokens the coming call will process. In ``"merged"`` mode the adapter is
                folded into the dense weights when the call is big enough to repay the merge
                (``MERGE_MIN_TOKENS``; ``None`` = always); smaller calls use the side path.
        """
        merge = self.adapter_mode == "merged" and (tokens is None or tokens >= MERGE_MIN_TOKENS)
        for lin in self.linears():
            lin.configure(task, merge=merge, quantize=self.quantized)
        self.task = task

    def enable_int8(self) -> None:
        """Dynamic int8 quantization of every Linear (CPU only, compute dtype fp32)."""
        if self.emb_ln_w.device.type != "cpu" or self.dtype != torch.float32:
            raise ConfigurationError("quantize='int8' needs device='cpu' and dtype float32")
        self.quantized = True
        self.set_task(self.task)

    def enable_compile(self) -> None:
        """Compile the layer stack with ``torch.compile`` (dynamic shapes)."""
        self._layers = torch.compile(self._run_layers, dynamic=True)

    # -- forward ----------------------------------------------------------------------------

    def _rotary(self, n: int) -> tuple[Tensor, Tensor]:
        if self._rope is None or self._rope[0].shape[0] < n:
            size = max(n, 64)
            t = torch.arange(size, dtype=torch.float32, device=self.inv_freq.device)
            freqs = torch.outer(t, self.inv_freq)
            self._rope = (freqs.cos(), freqs.sin())
        cos, sin = self._rope
        return (
            cos[:n, None, :].to(self.dtype),
            sin[:n, None, :].to(self.dtype),
        )

    def _run_layers(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        index: Tensor | None,
        batch: int,
        packed: PackedAttention | None = None,
    ) -> Tensor:
        for blk in self.blocks:
            x = blk(x, cos, sin, mask, index, batch, packed)
        return x

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Hidden states of the real tokens, ``[N, H]`` in the compute dtype.

        Linear layers, LayerNorms and the MLP run on the real tokens only (no padding waste);
        only attention uses the padded layout.

        Args:
            ids: ``[B, L]`` token ids (right-padded).
            mask: ``[B, L]`` bool, True for real tokens; ``None`` when nothing is padded.

        Returns:
            ``[N, H]``: row r's tokens are contiguous, rows in order (N = real tokens).
        """
        batch, n = ids.shape
        hidden = self.cfg.hidden_size
        flat = ids.reshape(-1)
        index = None
        if mask is not None:
            index = mask.reshape(-1).nonzero().squeeze(1)
            flat = flat.index_select(0, index)
        x = self.word(flat, self.task) + self.token_type(
            torch.zeros(1, dtype=torch.long, device=ids.device), self.task
        )
        x = F.layer_norm(
            x, (hidden,), self.emb_ln_w.float(), self.emb_ln_b.float(), self.cfg.layer_norm_eps
        ).to(self.dtype)
        cos, sin = self._rotary(n)
        attn = None if mask is None else mask[:, None, None, :]
        return cast(Tensor, self._layers(x, cos, sin, attn, index, batch))

    def forward_packed(
        self,
        ids: Tensor,
        positions: Tensor,
        cu_seqlens: Tensor,
        max_len: int,
        attention: str,
    ) -> Tensor:
        """Hidden states of a packed batch, ``[N, H]`` in the compute dtype (text order kept).

        Args:
            ids: ``[N]`` token ids of every text, concatenated.
            positions: ``[N]`` each token's position in its text (0 = ``<s>``).
            cu_seqlens: ``[B + 1]`` int32 text starts (``cu[0] = 0``, ``cu[B] = N``).
            max_len: The longest text.
            attention: ``"varlen"``/``"nested"`` (attention on the packed tokens) or
                ``"padded"`` (scatter into ``[B, max_len]`` and run :meth:`forward`).
        """
        batch = cu_seqlens.shape[0] - 1
        if attention == "padded":
            rows = torch.repeat_interleave(
                torch.arange(batch, device=ids.device),
                (cu_seqlens[1:] - cu_seqlens[:-1]).long(),
                output_size=ids.shape[0],
            )
            index = rows * max_len + positions
            if index.shape[0] == batch * max_len:  # every text is max_len long: no padding
                return cast(Tensor, self(ids.view(batch, max_len)))
            # padding ids are never embedded (forward drops them by the mask): any id will do
            grid = ids.new_zeros(batch * max_len).index_copy_(0, index, ids)
            mask = torch.zeros(batch * max_len, dtype=torch.bool, device=ids.device)
            mask.index_fill_(0, index, True)
            return cast(Tensor, self(grid.view(batch, max_len), mask.view(batch, max_len)))
        from ._packed import PackedAttention

        hidden = self.cfg.hidden_size
        x = self.word(ids, self.task) + self.token_type(
            torch.zeros(1, dtype=torch.long, device=ids.device), self.task
        )
        x = F.layer_norm(
            x, (hidden,), self.emb_ln_w.float(), self.emb_ln_b.float(), self.cfg.layer_norm_eps
        ).to(self.dtype)
        self._rotary(max_len)
        assert self._rope is not None
        cos = self._rope[0].index_select(0, positions)[:, None, :].to(self.dtype)
        sin = self._rope[1].index_select(0, positions)[:, None, :].to(self.dtype)
        packed = PackedAttention(attention, cu_seqlens, cu_seqlens.long(), max_len, cos, sin)
        return cast(Tensor, self._layers(x, cos, sin, None, None, batch, packed))

    # -- accounting -------------------------------------------------------------------------

    def resident_bytes(self) -> int:
        """Bytes of every weight tensor held (base, LoRA factors, merged/packed copies)."""
        seen: set[int] = set()
        total = 0
        for buf in self.buffers():
            ptr = buf.untyped_storage().data_ptr()
            if ptr in seen:
                continue
            seen.add(ptr)
            total += buf.numel() * buf.element_size()
        for lin in self.linears():
            if lin.packed is not None:
                w, _ = torch.ops.quantized.linear_unpack(lin.packed)
                total += w.numel()  # int8 payload
        return total
