"""Throughput of LocalProvider vs transformers' native JinaEmbeddingsV3Model, same weights.

Builds a random checkpoint in the official layout (default: full jina-embeddings-v3 size, 24
layers, hidden 1024, 16 heads, intermediate 4096, stored bf16 like the real model, a small
vocabulary), a corpus of texts whose token lengths are long-tailed between 16 and 2048, and
measures in the same run:

- ours: ``LocalProvider.embed`` (tokenization included) with default settings, plus the
  opt-in variants (``adapter_mode="lowrank"``, ``compile=True``, ``quantize="int8"``);
- the peer: transformers >= 5 ``JinaEmbeddingsV3Model`` with the task's LoRA merged into its
  weights (in fp32), fed batches of 32 texts sorted by length (tokenization included);
- the machine's fp32 matmul peak, and our useful FLOP/s as a fraction of it.

Prints one JSON object. transformers is a bench-only dependency (not in any extra): install
it with ``pip install 'transformers>=5'``; without it the peer is reported as unavailable.

Usage::

    python bench/local_throughput.py                      # the full configuration (slow on CPU)
    python bench/local_throughput.py --texts 32 --layers 2 --no-progress   # a quick check
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


# Corpus cases: name -> token lengths (with <s>/</s>) of the ``n`` texts. Add a case here.
CORPORA: dict[str, Callable[[np.random.Generator, int, argparse.Namespace], np.ndarray]] = {
    "long_tailed": long_tailed,
    "uniform": uniform,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="long_tailed")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--min-len", type=int, default=16, help="long_tailed: shortest text")
    ap.add_argument("--max-len", type=int, default=2048, help="long_tailed: longest text")
    ap.add_argument("--uniform-len", type=int, default=208, help="uniform: every text's tokens")
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--task", default="retrieval.passage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (corpus slices)")
    ap.add_argument("--no-peer", action="store_true", help="skip transformers")
    ap.add_argument(
        "--peers",
        default="batch32,token_budget,int8",
        help="comma-separated peers: batch32 (sentence-transformers style), token_budget "
        "(TEI style, ours' token budget), int8 (batch32 under torch quantize_dynamic)",
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
        targets = CORPORA[args.corpus](np.random.default_rng(args.seed), args.texts, args)
        texts = corpus(ours, targets, args.seed)
        lengths = [len(x) for x in ours.encode_ids(texts, task=args.task)]
        tokens = sum(lengths)
        flops = useful_flops(lengths, args.layers, args.hidden, args.intermediate)
        result["corpus"] = {
            "case": args.corpus,
            "texts": len(texts),
            "tokens": tokens,
            "min_len": min(lengths),
            "median_len": int(np.median(lengths)),
            "max_len": max(lengths),
            "useful_gflop": round(flops / 1e9, 1),
        }

        # -- memory and task switching (ours) ------------------------------------------------
        ours.embed(texts[:2], task=args.task)  # loads the weights, merges the adapter
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
        ours.embed(texts[:2], task=args.task)

        # contender -> (embed function, fp32?)
        contenders: dict[str, tuple[Callable[[list[str]], np.ndarray], bool]] = {
            "ours_default": (lambda ts: ours.embed(ts, task=args.task).vectors, True)
        }
        if not args.no_peer:
            try:
                import transformers

                model = peer_model(model_dir, tasks.index(args.task))
                wanted_peers = [p.strip() for p in args.peers.split(",") if p.strip()]
                peers: dict[str, tuple[Any, Any, bool]] = {
                    "batch32": (model, batches_of(32), True),
                    "token_budget": (model, token_budget(budget), True),
                }
                if "int8" in wanted_peers:
                    quantized = torch.ao.quantization.quantize_dynamic(
                        copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
                    )
                    peers["int8"] = (quantized, batches_of(32), False)
                for name in wanted_peers:
                    net_, plan, fp32 = peers[name]
                    contenders[f"peer_transformers_{name}"] = (
                        lambda ts, n=net_, p=plan: run_peer(n, ours, ts, args.task, p),
                        fp32,
                    )
                result["peer_version"] = f"transformers {transformers.__version__}"
            except ImportError as exc:
                result["peer_transformers"] = {
                    "unavailable": f"{exc} (pip install -r bench/requirements.txt)"
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

        # -- equal warm-up: one untimed pass over the whole corpus each -----------------------
        for name in list(contenders):
            start = time.perf_counter()
            try:
                contenders[name][0](texts)  # loading, merging, compiling, every shape once
            except Exception as exc:  # report, do not hide, a failing opt-in path
                result[name] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                del contenders[name]
                continue
            result.setdefault("warmup_seconds", {})[name] = round(time.perf_counter() - start, 1)

        # -- interleaved timing ---------------------------------------------------------------
        rounds = max(1, args.rounds)
        # contiguous slices of the length-sorted corpus: every contender batches a slice as it
        # would batch the whole corpus (the peer's batches of 32 stay the same when a slice
        # holds a multiple of 32 texts)
        by_length = sorted(range(len(texts)), key=lambda i: -lengths[i])
        size = -(-len(texts) // rounds)
        slices = [by_length[r * size : (r + 1) * size] for r in range(rounds)]
        slices = [s for s in slices if s]
        names = list(contenders)
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
                    vectors[name][idx] = contenders[name][0](sub)
                    wall[name][r] = time.perf_counter() - w0
                    cpu[name] += time.process_time() - c0
                    bar.update()
        peak = max(peaks)
        result["fp32_matmul_peak_gflops"] = {
            "best": round(peak / 1e9, 1),
            "per_round": [round(p / 1e9, 1) for p in peaks],
        }
        ref = vectors["ours_default"]

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
                "tokens_per_s": round(tokens / seconds, 1),
                "cpu_seconds": round(cpu[name], 1),
            }
            if contenders[name][1]:  # an fp32 matmul peak bounds fp32 work only
                row["useful_gflops"] = round(flops / seconds / 1e9, 1)
                row["fraction_of_best_fp32_peak"] = round(flops / seconds / peak, 4)
            if name != "ours_default":
                row["min_cosine_to_ours_default"] = round(
                    float((vectors[name] * ref).sum(axis=1).min()), 7
                )
            if name.startswith("ours"):
                for peer in names:
                    if peer.startswith("peer_"):
                        row[f"vs_{peer}"] = ratio(name, peer)
            result[name] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
