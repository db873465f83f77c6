"""Throughput of LocalProvider vs transformers and ONNX Runtime, same weights, same texts.

Builds a random checkpoint in the official layout (default: full jina-embeddings-v3 size, 24
layers, hidden 1024, 16 heads, intermediate 4096, stored bf16 like the real model, a small
vocabulary), one or more corpora (``--corpus``: ``long_tailed`` token lengths between 16 and
2048, ``uniform`` texts of one length, ``document``: one long document), and measures, corpus
by corpus, in interleaved rounds:

- ours: ``LocalProvider.embed`` (tokenization included) with default settings, plus the
  opt-in variants (``adapter_mode="lowrank"``, ``compile=True``, ``quantize="int8"``);
- the peer: transformers >= 5 ``JinaEmbeddingsV3Model`` with the task's LoRA merged into its
  weights (in fp32), fed batches of 32 texts sorted by length (tokenization included);
- ONNX Runtime, what FastEmbed runs: the same checkpoint with the task's LoRA merged,
  exported to ONNX (``torch.onnx``, the padded encoder with an additive key mask, as the
  original model's export), run by an ``InferenceSession`` on the CPU at the same batching as
  the transformers peer (batches of 32 sorted by length), mean-pooled in numpy; and its
  dynamic int8 (``onnxruntime.quantization.quantize_dynamic``, per-channel int8 weights);
- the machine's fp32 matmul peak in every round, and our useful FLOP/s as a fraction of it.

Prints one JSON object (one section per corpus when several are given). transformers, onnx
and onnxruntime are bench-only dependencies (the ``bench`` extra); without them a peer is
reported as unavailable.

Usage::

    python bench/local_throughput.py                      # the full configuration (slow on CPU)
    python bench/local_throughput.py --texts 32 --layers 2 --no-progress   # a quick check
    python bench/local_throughput.py --layers 4 --corpus long_tailed,uniform,document \
        --peers batch32,onnx,onnx_int8 --variants int8 --no-compile   # the docs' table
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.checkpoints import build_checkpoint  # noqa: E402

from jv3_integrations import LocalProvider  # noqa: E402
from jv3_integrations.core._local import DEFAULT_BATCH_TOKENS  # noqa: E402
from jv3_integrations.core._progress import progress  # noqa: E402

P = "parametrizations.weight"


def long_tailed(rng: np.random.Generator, n: int, args: argparse.Namespace) -> np.ndarray:
    """Log-normal token lengths (median 96), clipped to [min_len, max_len]: mostly short."""
    lengths = np.round(rng.lognormal(math.log(96), 1.1, size=n))
    return np.clip(lengths, args.min_len, args.max_len).astype(int)


def uniform(rng: np.random.Generator, n: int, args: argparse.Namespace) -> np.ndarray:
    """Every text ``--uniform-len`` tokens long: no padding to save, packing gains nothing."""
    return np.full(n, args.uniform_len, dtype=int)


def document(rng: np.random.Generator, n: int, args: argparse.Namespace) -> np.ndarray:
    """One document of ``--doc-len`` tokens (``n`` is ignored): attention-heavy, one text."""
    return np.full(1, args.doc_len, dtype=int)


# Corpus cases: name -> token lengths (with <s>/</s>) of the ``n`` texts. Add a case here.
CORPORA: dict[str, Callable[[np.random.Generator, int, argparse.Namespace], np.ndarray]] = {
    "long_tailed": long_tailed,
    "uniform": uniform,
    "document": document,
}


def corpus(provider: LocalProvider, targets: np.ndarray, seed: int) -> list[str]:
    """Texts of random vocabulary words whose token counts (with ``<s>``/``</s>``) are ``targets``."""
    rng = np.random.default_rng(seed + 1)
    tok = provider.tokenizer
    vocab = [w for w, i in tok.get_vocab().items() if w.startswith("\u2581") and len(w) > 1]
    words = [w[1:] for w in vocab]
    texts = []
    for target in targets:
        text = " ".join(rng.choice(words, size=int(target) + 8))
        enc = tok.encode(text, add_special_tokens=False)
        cut = enc.offsets[int(target) - 3][1]  # target - 2 content tokens + <s> + </s>
        texts.append(text[:cut])
    return texts


def useful_flops(lengths: list[int], layers: int, hidden: int, inter: int) -> float:
    """Matmul FLOPs of the encoder over real tokens (projections, MLP, attention)."""
    total = 0.0
    for n in lengths:
        total += layers * (2 * n * (4 * hidden * hidden + 2 * hidden * inter) + 4 * n * n * hidden)
    return total


def matmul_peak(seconds: float = 3.0) -> float:
    """Best measured fp32 matmul FLOP/s over a few square sizes."""
    best = 0.0
    for size in (1024, 2048):
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            a @ b
            reps += 1
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - start))
    return best


def peer_model(model_dir: Path, task_index: int | None) -> Any:
    """transformers' JinaEmbeddingsV3Model with the same weights, LoRA merged in fp32."""
    from safetensors import safe_open
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    cfg = json.loads((model_dir / "config.json").read_text())
    config = JinaEmbeddingsV3Config(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        layer_norm_eps=cfg["layer_norm_eps"],
        type_vocab_size=cfg["type_vocab_size"],
        pad_token_id=cfg["pad_token_id"],
        rope_parameters={"rope_type": "default", "rope_theta": cfg["rotary_emb_base"]},
    )
    scale = cfg["lora_alpha"] / cfg["lora_rank"]
    h = cfg["hidden_size"]
    sd: dict[str, torch.Tensor] = {}
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:

        def merged(prefix: str, embedding: bool = False) -> torch.Tensor:
            w = f.get_tensor(f"{prefix}.{P}.original").float()
            if task_index is None:
                return w
            a = f.get_tensor(f"{prefix}.{P}.0.lora_A")[task_index].float()
            b = f.get_tensor(f"{prefix}.{P}.0.lora_B")[task_index].float()
            return w + scale * (a @ b if embedding else b @ a)

        e = "roberta.embeddings"
        sd["embeddings.word_embeddings.weight"] = merged(f"{e}.word_embeddings", True)
        sd["embeddings.token_type_embeddings.weight"] = merged(f"{e}.token_type_embeddings", True)
        sd["embeddings.LayerNorm.weight"] = f.get_tensor("roberta.emb_ln.weight").float()
        sd["embeddings.LayerNorm.bias"] = f.get_tensor("roberta.emb_ln.bias").float()
        for i in range(cfg["num_hidden_layers"]):
            src, dst = f"roberta.encoder.layers.{i}", f"layers.{i}"
            qkv = merged(f"{src}.mixer.Wqkv")
            qkv_b = f.get_tensor(f"{src}.mixer.Wqkv.bias").float()
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                sd[f"{dst}.self_attn.{name}.weight"] = qkv[j * h : (j + 1) * h].clone()
                sd[f"{dst}.self_attn.{name}.bias"] = qkv_b[j * h : (j + 1) * h].clone()
            pairs = {
                "self_attn.o_proj": "mixer.out_proj",
                "mlp.fc1": "mlp.fc1",
                "mlp.fc2": "mlp.fc2",
            }
            for ours_name, theirs in ((d, s) for d, s in pairs.items()):
                sd[f"{dst}.{ours_name}.weight"] = merged(f"{src}.{theirs}")
                sd[f"{dst}.{ours_name}.bias"] = f.get_tensor(f"{src}.{theirs}.bias").float()
            for ours_name, theirs in (
                ("post_attention_layernorm", "norm1"),
                ("post_mlp_layernorm", "norm2"),
            ):
                sd[f"{dst}.{ours_name}.weight"] = f.get_tensor(f"{src}.{theirs}.weight").float()
                sd[f"{dst}.{ours_name}.bias"] = f.get_tensor(f"{src}.{theirs}.bias").float()
    model = JinaEmbeddingsV3Model(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"peer weights do not fit: missing={missing} unexpected={unexpected}")
    return model.eval()


class OnnxEncoder(torch.nn.Module):
    """The encoder as a plain padded module for ``torch.onnx.export`` (merged weights, fp32).

    What an ONNX export of the original model computes: embeddings + LayerNorm, then per
    layer fused QKV, rotary (NeoX), attention with an additive key mask, post-LayerNorm MLP
    with exact GELU. Output: ``last_hidden_state [B, L, H]``.
    """

    def __init__(self, model_dir: Path, task_index: int | None) -> None:
        super().__init__()
        from safetensors import safe_open

        cfg = json.loads((model_dir / "config.json").read_text())
        self.heads = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        hidden = cfg["hidden_size"]
        d = hidden // self.heads
        scale = cfg["lora_alpha"] / cfg["lora_rank"]
        inv = 1.0 / (cfg["rotary_emb_base"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        self.register_buffer("inv_freq", inv)
        params: dict[str, torch.Tensor] = {}
        with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:

            def merged(prefix: str, embedding: bool = False) -> torch.Tensor:
                w = f.get_tensor(f"{prefix}.{P}.original").float()
                if task_index is None:
                    return w
                a = f.get_tensor(f"{prefix}.{P}.0.lora_A")[task_index].float()
                b = f.get_tensor(f"{prefix}.{P}.0.lora_B")[task_index].float()
                return w + scale * (a @ b if embedding else b @ a)

            e = "roberta.embeddings"
            params["word_emb"] = merged(f"{e}.word_embeddings", True)
            params["type_emb"] = merged(f"{e}.token_type_embeddings", True)[0]
            params["ln_w"] = f.get_tensor("roberta.emb_ln.weight").float()
            params["ln_b"] = f.get_tensor("roberta.emb_ln.bias").float()
            self.layers = cfg["num_hidden_layers"]
            for i in range(self.layers):
                src = f"roberta.encoder.layers.{i}"
                for name, key in (
                    ("qkv", "mixer.Wqkv"),
                    ("out", "mixer.out_proj"),
                    ("fc1", "mlp.fc1"),
                    ("fc2", "mlp.fc2"),
                ):
                    params[f"{i}_{name}_w"] = merged(f"{src}.{key}")
                    params[f"{i}_{name}_b"] = f.get_tensor(f"{src}.{key}.bias").float()
                for norm in ("norm1", "norm2"):
                    params[f"{i}_{norm}_w"] = f.get_tensor(f"{src}.{norm}.weight").float()
                    params[f"{i}_{norm}_b"] = f.get_tensor(f"{src}.{norm}.bias").float()
        self.p = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v, requires_grad=False) for k, v in params.items()}
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional
        p = self.p
        batch, n = input_ids.shape
        hidden = p["ln_w"].shape[0]
        d = hidden // self.heads
        x = f.embedding(input_ids, p["word_emb"]) + p["type_emb"]
        x = f.layer_norm(x, (hidden,), p["ln_w"], p["ln_b"], self.eps)
        pos = torch.arange(n, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]
        cos, sin = freqs.cos(), freqs.sin()  # [L, d/2]
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
        for i in range(self.layers):
            qkv = f.linear(x, p[f"{i}_qkv_w"], p[f"{i}_qkv_b"])
            q, k, v = qkv.view(batch, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)

            def rot(t: torch.Tensor) -> torch.Tensor:
                t1, t2 = t[..., : d // 2], t[..., d // 2 :]
                return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1)

            scores = torch.matmul(rot(q), rot(k).transpose(-1, -2)) * d**-0.5 + bias
            ctx = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(batch, n, hidden)
            h1 = f.layer_norm(
                x + f.linear(ctx, p[f"{i}_out_w"], p[f"{i}_out_b"]),
                (hidden,),
                p[f"{i}_norm1_w"],
                p[f"{i}_norm1_b"],
                self.eps,
            )
            m = f.linear(f.gelu(f.linear(h1, p[f"{i}_fc1_w"], p[f"{i}_fc1_b"])), p[f"{i}_fc2_w"])
            x = f.layer_norm(
                h1 + m + p[f"{i}_fc2_b"], (hidden,), p[f"{i}_norm2_w"], p[f"{i}_norm2_b"], self.eps
            )
        return x


def onnx_sessions(model_dir: Path, task_index: int | None, out: Path, int8: bool) -> dict[str, Any]:
    """ONNX Runtime sessions of the merged checkpoint: ``{"onnx": ..., "onnx_int8": ...}``."""
    import warnings

    import onnxruntime as ort

    module = OnnxEncoder(model_dir, task_index).eval()
    ids = torch.randint(3, 10, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    fp32 = out / "model.onnx"
    axes = {0: "batch", 1: "length"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, mask),
            str(fp32),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = {"onnx": ort.InferenceSession(str(fp32), options, ["CPUExecutionProvider"])}
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q8 = out / "model-int8.onnx"
        quantize_dynamic(str(fp32), str(q8), weight_type=QuantType.QInt8, per_channel=True)
        sessions["onnx_int8"] = ort.InferenceSession(str(q8), options, ["CPUExecutionProvider"])
    return sessions


def run_onnx(
    session: Any,
    provider: LocalProvider,
    texts: list[str],
    task: str,
    plan: Callable[[list[int], list[int]], list[list[int]]],
) -> np.ndarray:
    """Embed with an ONNX Runtime session as FastEmbed does: padded batches, numpy pooling."""
    ids = provider.encode_ids(texts, task=task)
    lengths = [len(x) for x in ids]
    order = sorted(range(len(ids)), key=lambda i: -lengths[i])
    pad = provider.tokenizer.token_to_id("<pad>")
    out: np.ndarray | None = None
    for batch in plan(order, lengths):
        longest = lengths[batch[0]]
        x = np.full((len(batch), longest), pad, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for r, i in enumerate(batch):
            x[r, : lengths[i]] = ids[i]
            mask[r, : lengths[i]] = 1
        hidden = session.run(None, {"input_ids": x, "attention_mask": mask})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(1) / m.sum(1)
        if out is None:
            out = np.zeros((len(ids), hidden.shape[-1]), dtype=np.float32)
        out[batch] = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    assert out is not None
    return out


def batches_of(size: int) -> Callable[[list[int], list[int]], list[list[int]]]:
    """sentence-transformers style: sort by length, cut every ``size`` texts."""

    def plan(order: list[int], lengths: list[int]) -> list[list[int]]:
        return [order[s : s + size] for s in range(0, len(order), size)]

    return plan


def token_budget(budget: int) -> Callable[[list[int], list[int]], list[list[int]]]:
    """TEI style: sort by length, fill each batch up to ``budget`` padded tokens."""

    def plan(order: list[int], lengths: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        for i in order:
            if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    return plan


def run_peer(
    model: Any,
    provider: LocalProvider,
    texts: list[str],
    task: str,
    plan: Callable[[list[int], list[int]], list[list[int]]],
) -> np.ndarray:
    """Embed with the peer, batches planned by ``plan`` over the length-sorted texts."""
    ids = provider.encode_ids(texts, task=task)  # same tokenizer, same instruction handling
    lengths = [len(x) for x in ids]
    order = sorted(range(len(ids)), key=lambda i: -lengths[i])
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    pad = provider.tokenizer.token_to_id("<pad>")
    with torch.inference_mode():
        for batch in plan(order, lengths):
            longest = lengths[batch[0]]
            x = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for r, i in enumerate(batch):
                x[r, : lengths[i]] = torch.tensor(ids[i])
                mask[r, : lengths[i]] = 1
            hidden = model(input_ids=x, attention_mask=mask).last_hidden_state.float()
            m = mask[..., None].float()
            pooled = (hidden * m).sum(1) / m.sum(1)
            out[batch] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def measure(
    contenders: dict[str, tuple[Callable[[list[str]], np.ndarray], bool]],
    texts: list[str],
    lengths: list[int],
    args: argparse.Namespace,
    show: bool,
) -> dict[str, Any]:
    """Warm every contender up on ``texts``, then time them in interleaved rounds."""
    section: dict[str, Any] = {}
    tokens = sum(lengths)
    flops = useful_flops(lengths, args.layers, args.hidden, args.intermediate)
    section["corpus"] = {
        "texts": len(texts),
        "tokens": tokens,
        "min_len": min(lengths),
        "median_len": int(np.median(lengths)),
        "max_len": max(lengths),
        "useful_gflop": round(flops / 1e9, 1),
    }
    # -- equal warm-up: one untimed pass over the whole corpus each ---------------------------
    live = dict(contenders)
    for name in list(live):
        start = time.perf_counter()
        try:
            live[name][0](texts)  # loading, merging, compiling, every shape once
        except Exception as exc:  # report, do not hide, a failing opt-in path
            section[name] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            del live[name]
            continue
        section.setdefault("warmup_seconds", {})[name] = round(time.perf_counter() - start, 1)

    # -- interleaved timing -------------------------------------------------------------------
    rounds = max(1, args.rounds)
    # contiguous slices of the length-sorted corpus: every contender batches a slice as it
    # would batch the whole corpus (the peer's batches of 32 stay the same when a slice holds
    # a multiple of 32 texts); a corpus of fewer texts than rounds is embedded whole each round
    by_length = sorted(range(len(texts)), key=lambda i: -lengths[i])
    if len(texts) < rounds:
        slices = [by_length] * rounds
    else:
        size = -(-len(texts) // rounds)
        slices = [by_length[r * size : (r + 1) * size] for r in range(rounds)]
        slices = [s for s in slices if s]
    done_tokens = sum(lengths[i] for s in slices for i in s)
    names = list(live)
    wall = {k: [0.0] * len(slices) for k in names}
    cpu = dict.fromkeys(names, 0.0)
    vectors = {k: np.zeros((len(texts), args.hidden), np.float32) for k in names}
    peaks: list[float] = []
    with progress(len(slices) * len(names), "bench", enabled=show) as bar:
        for r, idx in enumerate(slices):
            peaks.append(matmul_peak(1.0))
            sub = [texts[i] for i in idx]
            for name in names[r % len(names) :] + names[: r % len(names)]:
                c0, w0 = time.process_time(), time.perf_counter()
                vectors[name][idx] = live[name][0](sub)
                wall[name][r] = time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
                bar.update()
    peak = max(peaks)
    section["fp32_matmul_peak_gflops"] = {
        "best": round(peak / 1e9, 1),
        "per_round": [round(p / 1e9, 1) for p in peaks],
    }
    ref = vectors["ours_default"]
    done_flops = flops * done_tokens / tokens

    def ratio(a: str, b: str) -> dict[str, Any]:
        """Wall-time speedup of ``a`` over ``b``: whole corpus, and per round (its spread)."""
        per_round = [wb / wa for wa, wb in zip(wall[a], wall[b], strict=True)]
        return {
            "speedup": round(sum(wall[b]) / sum(wall[a]), 3),
            "per_round_min": round(min(per_round), 3),
            "per_round_max": round(max(per_round), 3),
            "by_cpu_time": round(cpu[b] / cpu[a], 3),
        }

    for name in names:
        seconds = sum(wall[name])
        row: dict[str, Any] = {
            "seconds": round(seconds, 2),
            "tokens_per_s": round(done_tokens / seconds, 1),
            "cpu_seconds": round(cpu[name], 1),
        }
        if live[name][1]:  # an fp32 matmul peak bounds fp32 work only
            row["useful_gflops"] = round(done_flops / seconds / 1e9, 1)
            row["fraction_of_best_fp32_peak"] = round(done_flops / seconds / peak, 4)
        if name != "ours_default":
            row["min_cosine_to_ours_default"] = round(
                float((vectors[name] * ref).sum(axis=1).min()), 7
            )
        if name.startswith("ours"):
            for peer in names:
                if peer.startswith("peer_"):
                    row[f"vs_{peer}"] = ratio(name, peer)
        section[name] = row
    return section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument(
        "--corpus",
        default="long_tailed",
        help=f"one or more (comma-separated) of {', '.join(CORPORA)}",
    )
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--min-len", type=int, default=16, help="long_tailed: shortest text")
    ap.add_argument("--max-len", type=int, default=2048, help="long_tailed: longest text")
    ap.add_argument("--uniform-len", type=int, default=208, help="uniform: every text's tokens")
    ap.add_argument("--doc-len", type=int, default=4000, help="document: its tokens")
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--task", default="retrieval.passage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (corpus slices)")
    ap.add_argument("--no-peer", action="store_true", help="skip every peer")
    ap.add_argument(
        "--peers",
        default="batch32,token_budget,int8,onnx,onnx_int8",
        help="comma-separated peers: batch32 (transformers, sentence-transformers style), "
        "token_budget (transformers, TEI style, ours' token budget), int8 (transformers batch32 "
        "under torch quantize_dynamic), onnx (ONNX Runtime, FastEmbed style, batches of 32 "
        "sorted), onnx_int8 (the same, ONNX Runtime dynamic int8, per-channel weights)",
    )
    ap.add_argument("--no-opt", action="store_true", help="skip the opt-in variants")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument(
        "--variants",
        default="lowrank,int8,compile,compile_int8",
        help="comma-separated opt-in variants to measure",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    corpora = [c.strip() for c in args.corpus.split(",") if c.strip()]
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown or not corpora:
        ap.error(f"--corpus: unknown {unknown}; choose from {', '.join(CORPORA)}")
    show = not args.no_progress
    threads = torch.get_num_threads()
    budget = args.batch_tokens or DEFAULT_BATCH_TOKENS
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": threads,
            "torch": torch.__version__,
        },
        "config": vars(args).copy(),
        "method": (
            "every contender embeds the same slice of the length-sorted corpus in turn (the "
            "order rotating each round), slice after slice, with an fp32 matmul-peak probe in "
            "each round, so load from other processes hits all alike; every contender is warmed "
            "up the same way (one untimed pass over the whole corpus) before the timing; "
            "fraction_of_peak is against the best probe of the run, for fp32 contenders only"
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_checkpoint(
            Path(tmp) / "model",
            dtype="bfloat16",
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            intermediate=args.intermediate,
            vocab_size=args.vocab,
        )
        kwargs: dict[str, Any] = {"device": "cpu"}
        if args.batch_tokens:
            kwargs["batch_tokens"] = args.batch_tokens
        ours = LocalProvider(str(model_dir), **kwargs)
        rng = np.random.default_rng(args.seed)
        texts_of = {c: corpus(ours, CORPORA[c](rng, args.texts, args), args.seed) for c in corpora}
        first = texts_of[corpora[0]]

        # -- memory and task switching (ours) ------------------------------------------------
        ours.embed(first[:2], task=args.task)  # loads the weights, merges the adapter
        net = ours.module
        base_fp32 = sum(
            b.numel() * 4
            for name, b in net.named_buffers()
            if "lora_" not in name and name != "inv_freq" and name.split(".")[-1] != "merged"
        )
        result["memory"] = {
            "resident_bytes": ours.resident_bytes(),
            "base_weights_fp32_bytes": base_fp32,
            "ratio": round(ours.resident_bytes() / base_fp32, 3),
            "note": "bf16 checkpoint kept bf16 + one fp32 merged copy of the Linears",
        }
        tasks = list(ours.config.tasks)
        start = time.perf_counter()
        for t in tasks:
            net.set_task(tasks.index(t))  # tokens=None: always merge
        result["task_switch_seconds_merge"] = round((time.perf_counter() - start) / len(tasks), 3)
        ours.embed(first[:2], task=args.task)

        # contender -> (embed function, fp32?)
        contenders: dict[str, tuple[Callable[[list[str]], np.ndarray], bool]] = {
            "ours_default": (lambda ts: ours.embed(ts, task=args.task).vectors, True)
        }
        wanted_peers = [] if args.no_peer else [p.strip() for p in args.peers.split(",")]
        torch_peers = [p for p in wanted_peers if p in ("batch32", "token_budget", "int8")]
        if torch_peers:
            try:
                import transformers

                model = peer_model(model_dir, tasks.index(args.task))
                peers: dict[str, tuple[Any, Any, bool]] = {
                    "batch32": (model, batches_of(32), True),
                    "token_budget": (model, token_budget(budget), True),
                }
                if "int8" in torch_peers:
                    quantized = torch.ao.quantization.quantize_dynamic(
                        copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
                    )
                    peers["int8"] = (quantized, batches_of(32), False)
                for name in torch_peers:
                    net_, plan, fp32 = peers[name]
                    contenders[f"peer_transformers_{name}"] = (
                        lambda ts, n=net_, p=plan: run_peer(n, ours, ts, args.task, p),
                        fp32,
                    )
                result["peer_version"] = f"transformers {transformers.__version__}"
            except ImportError as exc:
                result["peer_transformers"] = {
                    "unavailable": f"{exc} (pip install 'jv3-integrations[bench]')"
                }
        onnx_peers = [p for p in wanted_peers if p in ("onnx", "onnx_int8")]
        if onnx_peers:
            try:
                import onnxruntime

                start = time.perf_counter()
                sessions = onnx_sessions(
                    model_dir, tasks.index(args.task), Path(tmp), "onnx_int8" in onnx_peers
                )
                result["onnx_export_seconds"] = round(time.perf_counter() - start, 1)
                for name in onnx_peers:
                    contenders[f"peer_{name}"] = (
                        lambda ts, s=sessions[name]: run_onnx(
                            s, ours, ts, args.task, batches_of(32)
                        ),
                        name == "onnx",
                    )
                result["onnxruntime_version"] = onnxruntime.__version__
            except ImportError as exc:
                result["peer_onnx"] = {
                    "unavailable": f"{exc} (pip install 'jv3-integrations[bench]')"
                }
        if not args.no_opt:
            known: dict[str, dict[str, Any]] = {
                "lowrank": {"adapter_mode": "lowrank"},
                "int8": {"quantize": "int8"},
                "compile": {"compile": True},
                "compile_int8": {"compile": True, "quantize": "int8"},
            }
            wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
            if args.no_compile:
                wanted = [v for v in wanted if "compile" not in v]
            for name in wanted:
                provider = LocalProvider(str(model_dir), **kwargs, **known[name])
                contenders[f"ours_{name}"] = (
                    lambda ts, p=provider: p.embed(ts, task=args.task).vectors,
                    "int8" not in name,
                )

        sections = {}
        for case in corpora:
            texts = texts_of[case]
            lengths = [len(x) for x in ours.encode_ids(texts, task=args.task)]
            sections[case] = measure(contenders, texts, lengths, args, show)
            sections[case]["corpus"]["case"] = case
        if len(corpora) == 1:
            result.update(sections[corpora[0]])
        else:
            result["corpora"] = sections
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
