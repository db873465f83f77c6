"""The local model on a GPU: fidelity, throughput vs transformers, peak memory, the server.

One script, one JSON object (printed, and written to ``bench/results/gpu.json`` unless
``--out`` says otherwise). It builds a random checkpoint in the official layout, full size by
default (24 layers, hidden 1024, 16 heads, intermediate 4096, vocabulary 250002, stored bf16
like the real model; the conformance tokenizer), then measures in the same run:

- fidelity: ``device`` bf16 and fp32 vs CPU fp32, on the conformance cases and on the
  full-size checkpoint (every task, no task, late chunking, long late chunking): minimum
  cosine (target >= 0.999) and max abs diff of fp32 (target <= 1e-4);
- throughput in tokens/s, ours (``LocalProvider`` defaults: bf16, packed varlen attention,
  batch budget from free memory) vs transformers' native ``JinaEmbeddingsV3Model`` (LoRA
  merged in fp32, then bf16, SDPA, batches of 32 sorted by length as sentence-transformers
  feeds it), tokenization included for both, interleaved slice by slice, on (a) a
  long-tailed corpus of 16-8192-token texts, (b) uniform 512-token texts, (c) 8000-token
  documents with late chunking; the device's bf16 dense matmul peak measured in the same run
  and our useful FLOP/s as a fraction of it; peak device memory per case and contender;
- ``jv3 serve`` (the Starlette app under uvicorn, on loopback) with 64 concurrent clients:
  tokens/s vs the same provider in-process (needs starlette, uvicorn, httpx).

Top-level keys: ``device``, ``min_cosine``, ``ratio_long_tailed``, ``ratio_uniform_512``,
``peak_fraction_uniform_512``, then the detail. The targets: ratios >= 1.5 (a) and >= 1.2 (b),
peak fraction >= 0.40 on (b).

Run on the GPU machine from the project root (one line; ~3-6 minutes on an H100/H200)::

    bash bench/gpu_run.sh

A smoke run on CPU (seconds, tiny sizes; what ``tests/test_bench_gpu.py`` runs)::

    python bench/gpu.py --device cpu --small --out /tmp/gpu.json --no-progress

The conformance data is the repository's own ``tests/data/tiny-v3``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import platform
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from jv3_integrations import LocalProvider  # noqa: E402

P = "parametrizations.weight"
TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
}
FULL = {"layers": 24, "hidden": 1024, "heads": 16, "intermediate": 4096, "vocab": 250002}
SMALL = {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128, "vocab": 1000}
SHOW = True


def log(msg: str) -> None:
    if SHOW:
        print(f"[gpu.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def conformance_dir() -> Path:
    """The conformance checkpoint and the original code's outputs, kept in the repository."""
    path = ROOT / "tests" / "data" / "tiny-v3"
    if not (path / "tokenizer.json").is_file():
        raise SystemExit(f"conformance data not found at {path}: run from a full checkout")
    return path


# -- the checkpoint --------------------------------------------------------------------------


def build_checkpoint(path: Path, sizes: dict[str, int], tokenizer_dir: Path, device: str) -> Path:
    """A random checkpoint in the official layout (config.json, bf16 model.safetensors)."""
    import shutil

    from safetensors.torch import save_file

    h, inter, layers, vocab = (
        sizes["hidden"],
        sizes["intermediate"],
        sizes["layers"],
        sizes["vocab"],
    )
    r, t = 4, len(TASKS)
    path.mkdir(parents=True)
    config = {
        "architectures": ["XLMRobertaLoRA"],
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "emb_pooler": None,
        "hidden_act": "gelu",
        "hidden_size": h,
        "intermediate_size": inter,
        "layer_norm_eps": 1e-05,
        "lora_adaptations": TASKS,
        "lora_alpha": 1,
        "lora_rank": r,
        "matryoshka_dimensions": [d for d in (32, 64, 128, 256, 512, 768, 1024) if d <= h],
        "max_position_embeddings": 8194,
        "num_attention_heads": sizes["heads"],
        "num_hidden_layers": layers,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
        "task_instructions": {k: INSTRUCTIONS.get(k, "") for k in TASKS},
        "torch_dtype": "bfloat16",
        "truncate_dim": None,
        "type_vocab_size": 1,
        "vocab_size": vocab,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    gen = torch.Generator(device=device).manual_seed(0)
    out: dict[str, torch.Tensor] = {}

    def rand(*shape: int, std: float, mean: float = 0.0) -> torch.Tensor:
        x = torch.randn(*shape, generator=gen, device=device) * std + mean
        return x.to(torch.bfloat16).cpu().contiguous()

    def embedding(prefix: str, n: int) -> None:
        out[f"{prefix}.{P}.original"] = rand(n, h, std=0.5)
        out[f"{prefix}.{P}.0.lora_A"] = rand(t, n, r, std=0.5)
        out[f"{prefix}.{P}.0.lora_B"] = rand(t, r, h, std=0.5)

    def linear(prefix: str, o: int, i: int) -> None:
        out[f"{prefix}.bias"] = rand(o, std=0.02)
        out[f"{prefix}.{P}.original"] = rand(o, i, std=i**-0.5)
        out[f"{prefix}.{P}.0.lora_A"] = rand(t, r, i, std=i**-0.5)
        out[f"{prefix}.{P}.0.lora_B"] = rand(t, o, r, std=0.5)

    def norm(prefix: str) -> None:
        out[f"{prefix}.weight"] = rand(h, std=0.1, mean=1.0)
        out[f"{prefix}.bias"] = rand(h, std=0.1)

    embedding("roberta.embeddings.word_embeddings", vocab)
    embedding("roberta.embeddings.token_type_embeddings", 1)
    norm("roberta.emb_ln")
    for n in range(layers):
        lp = f"roberta.encoder.layers.{n}"
        linear(f"{lp}.mixer.Wqkv", 3 * h, h)
        linear(f"{lp}.mixer.out_proj", h, h)
        linear(f"{lp}.mlp.fc1", inter, h)
        linear(f"{lp}.mlp.fc2", h, inter)
        norm(f"{lp}.norm1")
        norm(f"{lp}.norm2")
    linear("roberta.pooler.dense", h, h)
    save_file(out, str(path / "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tokenizer_dir / name, path / name)
    return path


# -- texts -----------------------------------------------------------------------------------


def make_text(tok: Any, words: list[str], rng: np.random.Generator, tokens: int) -> str:
    """A text of exactly ``tokens`` tokens with ``<s>``/``</s>`` (no instruction)."""
    text = " ".join(rng.choice(words, size=tokens + 8))
    cut = tok.encode(text, add_special_tokens=False).offsets[tokens - 3][1]
    return text[:cut]


def vocabulary(provider: LocalProvider) -> list[str]:
    vocab = provider.tokenizer.get_vocab()
    return [w[1:] for w in vocab if w.startswith("\u2581") and len(w) > 1]


def long_tailed(provider: LocalProvider, n: int, lo: int, hi: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    targets = np.clip(np.round(rng.lognormal(math.log(96), 1.3, size=n)), lo, hi).astype(int)
    targets[: max(1, n // 256)] = hi  # the tail reaches the limit
    words = vocabulary(provider)
    return [make_text(provider.tokenizer, words, rng, int(k)) for k in targets]


def documents(
    provider: LocalProvider, n: int, tokens: int, chunk: int, seed: int
) -> list[list[str]]:
    """``n`` documents of about ``tokens`` tokens, each split into chunks of ~``chunk``."""
    rng = np.random.default_rng(seed)
    words = vocabulary(provider)
    docs = []
    for _ in range(n):
        pieces = max(1, tokens // chunk)
        docs.append([make_text(provider.tokenizer, words, rng, chunk) for _ in range(pieces)])
    return docs


# -- measuring -------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    """Best measured dense matmul FLOP/s over a few square sizes."""
    best = 0.0
    sizes = (4096, 8192) if device.type == "cuda" else (512, 1024)
    for size in sizes:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        a @ b
        sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            for _ in range(10):
                a @ b
            reps += 10
            sync(device)
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - start))
    return best


def useful_flops(lengths: list[int], sizes: dict[str, int]) -> float:
    """Matmul FLOPs of the encoder over real tokens (projections, MLP, attention)."""
    h, i, n_layers = sizes["hidden"], sizes["intermediate"], sizes["layers"]
    return sum(n_layers * (2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h) for n in lengths)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(axis=1).min())


# -- fidelity --------------------------------------------------------------------------------


class Trio:
    """The same checkpoint on CPU fp32 (reference), the device in bf16 and in fp32."""

    def __init__(self, model: Path, device: str, **kwargs: Any) -> None:
        self.ref = LocalProvider(str(model), device="cpu", dtype="float32", **kwargs)
        self.bf16 = LocalProvider(str(model), device=device, dtype="bfloat16", **kwargs)
        self.fp32 = LocalProvider(str(model), device=device, dtype="float32", **kwargs)

    def compare(self, texts: list[str], **kw: Any) -> dict[str, Any]:
        ref = self.ref.embed(texts, **kw).vectors
        half = self.bf16.embed(texts, **kw).vectors
        full = self.fp32.embed(texts, **kw).vectors
        return {
            "min_cosine_bf16": round(min_cosine(ref, half), 6),
            "max_abs_diff_fp32": float(np.abs(ref - full).max()),
        }

    def attention(self) -> dict[str, str]:
        return {"bf16": self.bf16.attention, "fp32": self.fp32.attention}

    def close(self) -> None:
        for p in (self.ref, self.bf16, self.fp32):
            p.close()


def fidelity_conformance(conf: Path, device: str, small: bool) -> dict[str, Any]:
    cases = json.loads((conf / "expected.json").read_text())["cases"]
    if small:  # the smoke run: one case of each kind
        cases = [next(c for c in cases if c["kind"] == k) for k in ("encode", "late_chunking")]
    trios: dict[tuple[int, int], Trio] = {}
    rows = []
    for case in cases:
        if case["kind"] == "encode":
            key = (case.get("max_length") or 8192, 512)
            kw = {"task": case["task"], "dimensions": case.get("dimensions"),
                  "normalized": case.get("normalized", True)}  # fmt: skip
        else:
            key = (case.get("window") or 8192, case.get("overlap") or 0)
            kw = {"task": case.get("task"), "late_chunking": True}
        if key not in trios:
            trios[key] = Trio(conf, device, max_length=key[0], late_chunking_overlap=key[1])
        row = trios[key].compare(list(case["texts"]), **kw)
        row["kind"] = case["kind"]
        row["task"] = case.get("task")
        rows.append(row)
    attention = next(iter(trios.values())).attention()
    for trio in trios.values():
        trio.close()
    return summarize(rows, attention)


def fidelity_full(model: Path, device: str, small: bool) -> dict[str, Any]:
    rows = []
    trio = Trio(model, device)
    texts = long_tailed(trio.ref, 8, 8, 96 if small else 400, seed=11)
    for task in [None, *TASKS]:
        row = trio.compare(texts, task=task)
        row.update(kind="encode", task=task)
        rows.append(row)
    doc = documents(trio.ref, 1, 200 if small else 1200, 40 if small else 150, seed=12)[0]
    row = trio.compare(doc, task="retrieval.passage", late_chunking=True)
    row.update(kind="late_chunking", task="retrieval.passage")
    rows.append(row)
    attention = trio.attention()
    trio.close()
    window = 64 if small else 512
    long = Trio(model, device, max_length=window, late_chunking_overlap=window // 8)
    row = long.compare(doc, task="retrieval.passage", late_chunking=True)
    row.update(kind="long_late_chunking", task="retrieval.passage", window=window)
    rows.append(row)
    long.close()
    return summarize(rows, attention)


def summarize(rows: list[dict[str, Any]], attention: dict[str, str]) -> dict[str, Any]:
    return {
        "min_cosine_bf16": min(r["min_cosine_bf16"] for r in rows),
        "max_abs_diff_fp32": max(r["max_abs_diff_fp32"] for r in rows),
        "attention": attention,
        "cases": rows,
    }


# -- the peer --------------------------------------------------------------------------------


def peer_model(model_dir: Path, task_index: int, device: torch.device, dtype: torch.dtype) -> Any:
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
    with contextlib.suppress(Exception):  # sdpa is the default where available anyway
        config._attn_implementation = "sdpa"
    scale = cfg["lora_alpha"] / cfg["lora_rank"]
    h = cfg["hidden_size"]
    sd: dict[str, torch.Tensor] = {}
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:

        def get(key: str) -> torch.Tensor:
            return f.get_tensor(key).to(device).float()

        def merged(prefix: str, embedding: bool = False) -> torch.Tensor:
            w = get(f"{prefix}.{P}.original")
            a = get(f"{prefix}.{P}.0.lora_A")[task_index]
            b = get(f"{prefix}.{P}.0.lora_B")[task_index]
            return (w + scale * (a @ b if embedding else b @ a)).to(dtype)

        e = "roberta.embeddings"
        sd["embeddings.word_embeddings.weight"] = merged(f"{e}.word_embeddings", True)
        sd["embeddings.token_type_embeddings.weight"] = merged(f"{e}.token_type_embeddings", True)
        sd["embeddings.LayerNorm.weight"] = get("roberta.emb_ln.weight").to(dtype)
        sd["embeddings.LayerNorm.bias"] = get("roberta.emb_ln.bias").to(dtype)
        for i in range(cfg["num_hidden_layers"]):
            src, dst = f"roberta.encoder.layers.{i}", f"layers.{i}"
            qkv = merged(f"{src}.mixer.Wqkv")
            qkv_b = get(f"{src}.mixer.Wqkv.bias").to(dtype)
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                sd[f"{dst}.self_attn.{name}.weight"] = qkv[j * h : (j + 1) * h].clone()
                sd[f"{dst}.self_attn.{name}.bias"] = qkv_b[j * h : (j + 1) * h].clone()
            for ours, theirs in (
                ("self_attn.o_proj", "mixer.out_proj"),
                ("mlp.fc1", "mlp.fc1"),
                ("mlp.fc2", "mlp.fc2"),
            ):
                sd[f"{dst}.{ours}.weight"] = merged(f"{src}.{theirs}")
                sd[f"{dst}.{ours}.bias"] = get(f"{src}.{theirs}.bias").to(dtype)
            for ours, theirs in (
                ("post_attention_layernorm", "norm1"),
                ("post_mlp_layernorm", "norm2"),
            ):
                sd[f"{dst}.{ours}.weight"] = get(f"{src}.{theirs}.weight").to(dtype)
                sd[f"{dst}.{ours}.bias"] = get(f"{src}.{theirs}.bias").to(dtype)
    with torch.device(device):  # random init on the device (fast), then our weights
        model = JinaEmbeddingsV3Model(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"peer weights do not fit: missing={missing} unexpected={unexpected}")
    del sd
    return model.to(device=device, dtype=dtype).eval()


class Peer:
    """The peer fed as sentence-transformers would: batches of 32 sorted by length."""

    def __init__(self, model: Any, provider: LocalProvider, device: torch.device) -> None:
        self.model, self.provider, self.device = model, provider, device
        self.pad = provider.tokenizer.token_to_id("<pad>")

    def _hidden(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(x) for x in ids)
        x = torch.full((len(ids), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for r, row in enumerate(ids):
            x[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        x, mask = x.to(self.device), mask.to(self.device)
        out = self.model(input_ids=x, attention_mask=mask).last_hidden_state.float()
        return out, mask

    def embed(self, texts: list[str], task: str) -> np.ndarray:
        ids = self.provider.encode_ids(texts, task=task)  # same tokenizer and instruction
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), 32):
                batch = order[s : s + 32]
                hidden, mask = self._hidden([ids[i] for i in batch])
                m = mask[..., None].float()
                pooled = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
                out[batch] = pooled.cpu().numpy()
        return out

    def embed_late(self, chunks: list[str], task: str) -> np.ndarray:
        ids, spans = self.provider.late_chunking_ids(chunks, task=task)
        with torch.inference_mode():
            hidden, _ = self._hidden([ids])
            pooled = torch.stack([hidden[0, a:b].mean(0) for a, b in spans])
            return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()


# -- throughput ------------------------------------------------------------------------------


def timed_case(
    name: str,
    items: list[Any],
    lengths: list[int],
    contenders: dict[str, Callable[[list[Any]], np.ndarray]],
    sizes: dict[str, int],
    device: torch.device,
    rounds: int,
    peak: float,
) -> dict[str, Any]:
    """Every contender embeds the same slice in turn, slice after slice (interleaved)."""
    by_length = sorted(range(len(items)), key=lambda i: -lengths[i])
    size = -(-len(items) // rounds)
    slices = [by_length[r * size : (r + 1) * size] for r in range(rounds)]
    slices = [s for s in slices if s]
    names = list(contenders)
    wall = dict.fromkeys(names, 0.0)
    mem = dict.fromkeys(names, 0)  # peak allocated, every resident model included
    extra = dict.fromkeys(names, 0)  # peak above what was allocated before the call
    vectors: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for r, idx in enumerate(slices):
        sub = [items[i] for i in idx]
        for who in names[r % len(names) :] + names[: r % len(names)]:
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            vectors[who].append(contenders[who](sub))
            sync(device)
            wall[who] += time.perf_counter() - start
            if device.type == "cuda":
                mem[who] = max(mem[who], torch.cuda.max_memory_allocated(device))
                extra[who] = max(extra[who], torch.cuda.max_memory_allocated(device) - resident)
            log(f"{name}: {who} slice {r + 1}/{len(slices)} {time.perf_counter() - start:.2f}s")
    tokens = sum(lengths)
    flops = useful_flops(lengths, sizes)
    out: dict[str, Any] = {"items": len(items), "tokens": tokens, "max_len": max(lengths)}
    for who in names:
        out[who] = {
            "seconds": round(wall[who], 3),
            "tokens_per_s": round(tokens / wall[who], 1),
            "useful_tflops": round(flops / wall[who] / 1e12, 3),
            "fraction_of_peak": round(flops / wall[who] / peak, 3),
            "peak_memory_mib": round(mem[who] / 2**20, 1) if device.type == "cuda" else None,
            "peak_above_weights_mib": (
                round(extra[who] / 2**20, 1) if device.type == "cuda" else None
            ),
        }
    if "peer" in contenders:
        out["ratio"] = round(wall["peer"] / wall["ours"], 3)
        ours, peer = np.concatenate(vectors["ours"]), np.concatenate(vectors["peer"])
        out["min_cosine_ours_vs_peer"] = round(min_cosine(ours, peer), 6)
    return out


def throughput(
    model: Path, device: torch.device, sizes: dict[str, int], small: bool, peak: float
) -> dict[str, Any]:
    task = "retrieval.passage"
    ours = LocalProvider(str(model), device=str(device))
    result: dict[str, Any] = {
        "ours_attention": ours.attention,
        "ours_batch_tokens": ours.batch_tokens,
    }
    contenders: dict[str, Callable[[list[Any]], np.ndarray]] = {}
    late: dict[str, Callable[[list[Any]], np.ndarray]] = {}
    contenders["ours"] = lambda ts: ours.embed(ts, task=task).vectors
    late["ours"] = lambda docs: np.concatenate(
        [ours.embed(d, task=task, late_chunking=True).vectors for d in docs]
    )
    try:
        import transformers

        peer = Peer(peer_model(model, TASKS.index(task), device, ours.dtype), ours, device)
        contenders["peer"] = lambda ts: peer.embed(ts, task)
        late["peer"] = lambda docs: np.concatenate([peer.embed_late(d, task) for d in docs])
        result["peer"] = (
            f"transformers {transformers.__version__} JinaEmbeddingsV3Model, sdpa, {ours.dtype}"
        )
    except Exception as exc:  # report, never hide, a missing or failing peer
        result["peer"] = {"unavailable": f"{type(exc).__name__}: {exc}"[:300]}
    rounds = 1 if small else 3
    n_long, n_uni, n_docs = (24, 16, 2) if small else (2048, 1024, 16)
    hi, uni, doc_tokens, chunk = (128, 64, 256, 32) if small else (8192, 512, 8000, 256)
    corpora = {
        "long_tailed": long_tailed(ours, n_long, 16, hi, seed=1),
        "uniform_512": long_tailed(ours, n_uni, uni, uni, seed=2),
    }
    for name, texts in corpora.items():
        for fn in contenders.values():  # warm-up: load, merge, kernels for every shape
            fn(texts[:64])
        lengths = [len(x) for x in ours.encode_ids(texts, task=task)]
        result[name] = timed_case(name, texts, lengths, contenders, sizes, device, rounds, peak)
    docs = documents(ours, n_docs, doc_tokens, chunk, seed=3)
    for fn in late.values():
        fn(docs[:1])
    lengths = [len(ours.late_chunking_ids(d, task=task)[0]) for d in docs]
    result["late_chunking_8000"] = timed_case(
        "late_chunking_8000", docs, lengths, late, sizes, device, rounds, peak
    )
    ours.close()
    return result


# -- the server ------------------------------------------------------------------------------


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port; yield its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def server_case(model: Path, device: torch.device, small: bool, clients: int) -> dict[str, Any]:
    try:
        from jv3_integrations import JinaAPIProvider
        from jv3_integrations.server import create_app
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"[:300]}
    local = LocalProvider(str(model), device=str(device))
    texts = long_tailed(local, 64 if small else 2048, 16, 128 if small else 2048, seed=5)
    tokens = local.count_tokens(texts, task="retrieval.passage").total
    local.embed(texts[:64], task="retrieval.passage")  # load, merge, warm up
    start = time.perf_counter()
    reference = local.embed(texts, task="retrieval.passage").vectors
    in_process = time.perf_counter() - start
    chunks = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    results: list[Any] = [None] * len(chunks)
    try:
        app = create_app(local, batch_tokens=local.batch_tokens)
        with serve_in_thread(app) as url:
            pool_clients = [
                JinaAPIProvider(base_url=url, max_batch_items=32, max_concurrency=1, timeout=600)
                for _ in range(clients)
            ]
            pool_clients[0].embed(["warm up"])
            lock = threading.Lock()
            todo = iter(range(len(chunks)))

            def worker(client: Any) -> None:
                while True:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    results[i] = client.embed_documents(chunks[i]).vectors

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, pool_clients))
            served = time.perf_counter() - start
            for c in pool_clients:
                c.close()
            passes = app.state.jv3.batcher.passes
    except Exception as exc:  # report, never hide, a failing server run
        return {"failed": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        local.close()
    got = np.concatenate(results)
    return {
        "clients": clients,
        "texts": len(texts),
        "tokens": tokens,
        "requests": len(chunks),
        "forward_passes": passes,
        "in_process_tokens_per_s": round(tokens / in_process, 1),
        "server_tokens_per_s": round(tokens / served, 1),
        "server_vs_in_process": round(in_process / served, 3),
        "min_cosine_server_vs_in_process": round(min_cosine(got, reference), 6),
    }


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    global SHOW
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a smoke run in seconds")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/gpu.json)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--skip", default="", help="comma-separated: fidelity,throughput,server")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    SHOW = not args.no_progress
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; for a smoke run use --device cpu --small")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = SMALL if args.small else FULL
    conf = conformance_dir()
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    result: dict[str, Any] = {
        "device": name,
        "min_cosine": None,
        "ratio_long_tailed": None,
        "ratio_uniform_512": None,
        "peak_fraction_uniform_512": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {**sizes, "small": args.small, "device": str(device)},
    }
    try:
        import transformers

        result["transformers"] = transformers.__version__
    except ImportError:
        result["transformers"] = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        log(f"building a random checkpoint {sizes}")
        model = build_checkpoint(
            Path(tmp) / "model", sizes, conf, "cuda" if device.type == "cuda" else "cpu"
        )
        if "fidelity" not in skip:
            log("fidelity on the conformance data")
            result["fidelity_conformance"] = fidelity_conformance(conf, str(device), args.small)
            log("fidelity on the full-size checkpoint")
            result["fidelity_full_size"] = fidelity_full(model, str(device), args.small)
            result["min_cosine"] = min(
                result[k]["min_cosine_bf16"] for k in ("fidelity_conformance", "fidelity_full_size")
            )
            result["max_abs_diff_fp32"] = max(
                result[k]["max_abs_diff_fp32"]
                for k in ("fidelity_conformance", "fidelity_full_size")
            )
        dtype = torch.bfloat16
        log("bf16 matmul peak")
        peak = matmul_peak(device, dtype, 2.0 if device.type == "cuda" else 0.5)
        result["bf16_matmul_peak_tflops"] = round(peak / 1e12, 3)
        if "throughput" not in skip:
            tp = throughput(model, device, sizes, args.small, peak)
            result["throughput"] = tp
            result["ratio_long_tailed"] = tp["long_tailed"].get("ratio")
            result["ratio_uniform_512"] = tp["uniform_512"].get("ratio")
            result["peak_fraction_uniform_512"] = tp["uniform_512"]["ours"]["fraction_of_peak"]
        if "server" not in skip:
            log(f"jv3 serve with {args.clients} clients")
            result["server"] = server_case(model, device, args.small, args.clients)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["targets"] = {
        "min_cosine": ">= 0.999",
        "max_abs_diff_fp32": "<= 1e-4",
        "ratio_long_tailed": ">= 1.5",
        "ratio_uniform_512": ">= 1.2",
        "peak_fraction_uniform_512": ">= 0.40",
    }
    text = json.dumps(result, indent=2)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
