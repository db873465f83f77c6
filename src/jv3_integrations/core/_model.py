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

import contextlib
import warnings
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checkpoint import ModelConfig
from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._packed import Attention

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

    def forward(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """``x``: ``[N, in]`` (tokens flattened); ``out``: a ``[N, out]`` buffer to write to.

        The bias is added by the matmul itself (``addmm``), and with ``out`` no new tensor is
        allocated (on CPU a fresh large tensor costs page faults: ~15 % of a big matmul).
        """
        if self.packed is not None:
            rows = max(1, _INT8_OUT_ELEMENTS // self.bias.shape[0])
            if out is None or x.shape[0] <= rows:
                out = _int8_linear(x, self.packed)
            else:
                for s in range(0, x.shape[0], rows):
                    out[s : s + rows] = _int8_linear(x[s : s + rows], self.packed)
        else:
            weight = self.merged if self.merged is not None else self.weight
            if out is None or weight.dtype != x.dtype:
                out = F.linear(x, weight, self.bias)
            else:
                out = torch.addmm(self.bias, x, weight.t(), out=out)
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
            out = out.addmm_(F.linear(x, a), b.t(), alpha=self.scaling)
        return out


def _has_vnni() -> bool:
    """Whether this x86 CPU multiplies u8 x s8 with 32-bit accumulation (AVX-512/AVX VNNI).

    Without VNNI, fbgemm sums pairs of u8 x s8 products in 16 bits, which can saturate with
    full-range activations; it then needs ``reduce_range`` (7-bit activations). Linux reports
    the flags in /proc/cpuinfo; elsewhere (or when unreadable) the safe choice is taken.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512_vnni" in line or "avx_vnni" in line
    except OSError:
        pass
    return False


# 7-bit activations only where 8-bit ones could saturate (measured on the full-width random
# model: min cosine 0.99976 with 8-bit, 0.99973 with 7-bit activations; 7-bit weights instead
# cost far more, 0.99916)
_REDUCE_RANGE = not _has_vnni()
# rows per int8 matmul call: each call quantizes its activations with its own scale (finer
# than one scale for the whole batch) and its output stays heap-sized (no page faults)
_INT8_OUT_ELEMENTS = 1 << 22


def _int8_linear(x: Tensor, packed: Any) -> Tensor:
    """Dynamic int8 matmul: activations quantized per call (per tensor), weights per channel."""
    return cast(Tensor, torch.ops.quantized.linear_dynamic(x, packed, _REDUCE_RANGE))


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

    def forward(self, x: Tensor, attention: Attention, ws: Workspace, last: bool = False) -> Tensor:
        """One block on the packed real tokens ``x [N, H]`` (no padding anywhere).

        Args:
            x: Hidden states of the real tokens (text after text).
            attention: The batch's attention layout (rotary tables included).
            ws: Activation buffers reused from layer to layer.
            last: The last block: its output is a fresh tensor, not a workspace buffer.
        """
        n, hidden = x.shape
        qkv = self.wqkv(x, ws.get("qkv", n, 3 * hidden, x))
        ctx = attention.attend(qkv, self.heads)
        # residual + norm1: the output projection is written to a buffer, the residual added
        # in place, then one layer norm (PyTorch has no fused add + layer norm on CPU)
        a = self.out_proj(ctx, ws.get("a", n, hidden, x)).add_(x)
        h1 = ws.layer_norm(a, self.norm1_w, self.norm1_b, self.eps, "h1")
        f = self.fc1(h1, ws.get("f", n, self.fc1.bias.shape[0], x))
        f = torch.ops.aten.gelu_(f)  # bias came with the matmul, exact GELU in place
        m = self.fc2(f, ws.get("a", n, hidden, x)).add_(h1)
        return ws.layer_norm(m, self.norm2_w, self.norm2_b, self.eps, None if last else "x")


class Workspace:
    """Activation buffers for one forward (or one call), reused from layer to layer.

    On CPU a freshly allocated large tensor is paid in page faults on first touch (glibc
    maps every allocation over 32 MiB anew): measured, a new ``[8192, 4096]`` fp32 GELU
    output costs ~4x the GELU itself. Writing the matmuls into these buffers (``addmm(out=)``)
    and running GELU in place avoids that; memory stays bounded by the batch size.
    """

    # a layer norm whose output would be a fresh mapping (over 32 MiB) runs in slices of this
    # many elements into a buffer (heap-sized outputs); a smaller one is served by the heap
    SLICE = 1 << 22
    FRESH_BYTES = 32 << 20

    def __init__(self) -> None:
        self._bufs: dict[str, Tensor] = {}

    def get(self, name: str, rows: int, cols: int, like: Tensor) -> Tensor:
        """A ``[rows, cols]`` buffer named ``name`` (grown when too small; contents undefined)."""
        buf = self._bufs.get(name)
        size = rows * cols
        if (
            buf is None
            or buf.numel() < size
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            self._bufs.pop(name, None)  # free the old one first
            buf = torch.empty(size, dtype=like.dtype, device=like.device)
            self._bufs[name] = buf
        return buf[:size].view(rows, cols)

    def layer_norm(self, x: Tensor, w: Tensor, b: Tensor, eps: float, name: str | None) -> Tensor:
        """``F.layer_norm`` over the last dim, into buffer ``name`` (``None``: a new tensor)."""
        hidden = x.shape[-1]
        fresh = x.numel() * x.element_size() > self.FRESH_BYTES
        if name is None or x.device.type != "cpu" or not fresh:
            return F.layer_norm(x, (hidden,), w, b, eps)
        out = self.get(name, x.shape[0], hidden, x)
        step = max(1, self.SLICE // hidden)
        for s in range(0, x.shape[0], step):
            out[s : s + step] = F.layer_norm(x[s : s + step], (hidden,), w, b, eps)
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
        self._ws: Workspace | None = None
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

    def _rotary(self, positions: Tensor, max_len: int) -> tuple[Tensor, Tensor]:
        """cos/sin at each token's position, ``[N, d/2]`` in the compute dtype.

        The tables are computed in fp32 once and cached (in the compute dtype) up to the
        longest length seen; a forward only gathers its tokens' rows, once for all layers.
        """
        if self._rope is None or self._rope[0].shape[0] < max_len:
            size = max(max_len, 64)
            t = torch.arange(size, dtype=torch.float32, device=self.inv_freq.device)
            freqs = torch.outer(t, self.inv_freq)
            self._rope = (freqs.cos().to(self.dtype), freqs.sin().to(self.dtype))
        cos, sin = self._rope
        return cos.index_select(0, positions), sin.index_select(0, positions)

    def _run_layers(self, x: Tensor, attention: Attention, ws: Workspace) -> Tensor:
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            x = blk(x, attention, ws, i == last)
        return x

    def reuse_buffers(self) -> contextlib.AbstractContextManager[None]:
        """Keep the activation buffers from one forward to the next until the block exits.

        A call of many batches then allocates its buffers once; they are freed on exit.
        """
        return _Reuse(self)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Hidden states of the real tokens, ``[N, H]`` in the compute dtype.

        The batch is packed (padding dropped) and run like :meth:`forward_packed`.

        Args:
            ids: ``[B, L]`` token ids (right-padded).
            mask: ``[B, L]`` bool, True for real tokens; ``None`` when nothing is padded.

        Returns:
            ``[N, H]``: row r's tokens are contiguous, rows in order (N = real tokens).
        """
        batch, n = ids.shape
        if mask is None:
            lengths = torch.full((batch,), n, dtype=torch.int64, device=ids.device)
            flat = ids.reshape(-1)
        else:
            lengths = mask.sum(1)
            flat = ids[mask]  # row-major: each row's real tokens, rows in order
        cu = torch.zeros(batch + 1, dtype=torch.int32, device=ids.device)
        torch.cumsum(lengths, 0, out=cu[1:])
        starts = torch.repeat_interleave(cu[:-1].long(), lengths, output_size=flat.shape[0])
        positions = torch.arange(flat.shape[0], device=ids.device) - starts
        return self.forward_packed(flat, positions, cu, n, "padded")

    def forward_packed(
        self,
        ids: Tensor,
        positions: Tensor,
        cu_seqlens: Tensor,
        max_len: int,
        attention: str,
    ) -> Tensor:
        """Hidden states of a packed batch, ``[N, H]`` in the compute dtype (text order kept).

        No padding anywhere: the Linears, norms and MLP run on the real tokens, and so does
        attention (``"varlen"``/``"nested"`` kernels over ``cu_seqlens``, or ``"padded"``:
        SDPA on each run of equal-length texts, viewed in place, no mask).

        Args:
            ids: ``[N]`` token ids of every text, concatenated.
            positions: ``[N]`` each token's position in its text (0 = ``<s>``).
            cu_seqlens: ``[B + 1]`` int32 text starts (``cu[0] = 0``, ``cu[B] = N``).
            max_len: The longest text.
            attention: ``"varlen"``, ``"nested"`` or ``"padded"`` (see :mod:`._packed`).
        """
        from ._packed import PackedAttention, RunAttention

        hidden = self.cfg.hidden_size
        x = self.word(ids, self.task) + self.token_type(
            torch.zeros(1, dtype=torch.long, device=ids.device), self.task
        )
        x = F.layer_norm(
            x, (hidden,), self.emb_ln_w.float(), self.emb_ln_b.float(), self.cfg.layer_norm_eps
        ).to(self.dtype)
        cos, sin = self._rotary(positions, max_len)
        ws = self._ws if self._ws is not None else Workspace()
        layout: Attention
        if attention == "padded":
            layout = RunAttention.of(cu_seqlens, cos, sin, ws)
        else:
            layout = PackedAttention(
                attention, cu_seqlens, cu_seqlens.long(), max_len, cos[:, None], sin[:, None]
            )
        return cast(Tensor, self._layers(x, layout, ws))

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


class _Reuse:
    """The context of :meth:`JinaEmbeddingsV3.reuse_buffers` (re-entrant: the outer one owns)."""

    def __init__(self, net: JinaEmbeddingsV3) -> None:
        self.net = net
        self.owner = False

    def __enter__(self) -> None:
        if self.net._ws is None:
            self.net._ws = Workspace()
            self.owner = True

    def __exit__(self, *exc: object) -> None:
        if self.owner:
            self.net._ws = None
