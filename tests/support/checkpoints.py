"""Build tiny random jina-embeddings-v3 checkpoints in the official Hub layout, for tests.

``build_checkpoint(tmp_path / "m")`` writes config.json, model.safetensors (official key names,
random non-zero LoRA), and copies the conformance tokenizer files. Options drop or add keys,
store bf16, omit the pooler, or change sizes, so loading errors can be provoked on purpose.

Also used by ``bench/local_throughput.py`` to build a full-size random checkpoint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.conftest import CONFORMANCE_DIR

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
    "separation": "",
    "classification": "",
    "text-matching": "",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def make_config(
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    vocab_size: int = 256,
    rank: int = 4,
    dtype: str = "float32",
    matryoshka: Iterable[int] | None = None,
) -> dict[str, object]:
    """A config.json dict in the official format with the given sizes."""
    dims = list(matryoshka) if matryoshka is not None else [d for d in (8, 16, 32) if d <= hidden]
    return {
        "_name_or_path": "jinaai/jina-embeddings-v3",
        "architectures": ["XLMRobertaLoRA"],
        "bos_token_id": 0,
        "emb_pooler": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "layer_norm_eps": 1e-05,
        "load_trained_adapters": True,
        "lora_adaptations": list(TASKS),
        "lora_alpha": 1,
        "lora_dropout_p": 0.0,
        "lora_rank": rank,
        "matryoshka_dimensions": dims,
        "max_position_embeddings": 8194,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
        "task_instructions": dict(INSTRUCTIONS),
        "torch_dtype": dtype,
        "truncate_dim": None,
        "type_vocab_size": 1,
        "use_flash_attn": True,
        "vocab_size": vocab_size,
    }


def make_tensors(
    config: dict[str, object], *, seed: int = 0, pooler: bool = True
) -> dict[str, torch.Tensor]:
    """Random fp32 tensors under the official key names for ``config``."""
    gen = torch.Generator().manual_seed(seed)
    h = int(config["hidden_size"])  # type: ignore[call-overload]
    inter = int(config["intermediate_size"])  # type: ignore[call-overload]
    n_layers = int(config["num_hidden_layers"])  # type: ignore[call-overload]
    vocab = int(config["vocab_size"])  # type: ignore[call-overload]
    r = int(config["lora_rank"])  # type: ignore[call-overload]
    t = len(TASKS)
    p = "parametrizations.weight"

    def rand(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    out: dict[str, torch.Tensor] = {}

    def embedding(prefix: str, n: int) -> None:
        out[f"{prefix}.{p}.original"] = rand(n, h, std=0.5)
        out[f"{prefix}.{p}.0.lora_A"] = rand(t, n, r, std=0.5)
        out[f"{prefix}.{p}.0.lora_B"] = rand(t, r, h, std=0.5)

    def linear(prefix: str, o: int, i: int) -> None:
        out[f"{prefix}.bias"] = rand(o, std=0.02)
        out[f"{prefix}.{p}.original"] = rand(o, i, std=i**-0.5)
        out[f"{prefix}.{p}.0.lora_A"] = rand(t, r, i, std=i**-0.5)
        out[f"{prefix}.{p}.0.lora_B"] = rand(t, o, r, std=0.5)

    def norm(prefix: str) -> None:
        out[f"{prefix}.weight"] = 1.0 + rand(h, std=0.1)
        out[f"{prefix}.bias"] = rand(h, std=0.1)

    embedding("roberta.embeddings.word_embeddings", vocab)
    embedding("roberta.embeddings.token_type_embeddings", 1)
    norm("roberta.emb_ln")
    for n in range(n_layers):
        lp = f"roberta.encoder.layers.{n}"
        linear(f"{lp}.mixer.Wqkv", 3 * h, h)
        linear(f"{lp}.mixer.out_proj", h, h)
        linear(f"{lp}.mlp.fc1", inter, h)
        linear(f"{lp}.mlp.fc2", h, inter)
        norm(f"{lp}.norm1")
        norm(f"{lp}.norm2")
    if pooler:
        linear("roberta.pooler.dense", h, h)
    return out


def build_checkpoint(
    path: Path,
    *,
    dtype: str = "float32",
    seed: int = 0,
    pooler: bool = True,
    drop_keys: Iterable[str] = (),
    extra_keys: Iterable[str] = (),
    skip_files: Iterable[str] = (),
    tokenizer_dir: Path = CONFORMANCE_DIR,
    bf16_values: bool = False,
    **sizes: int,
) -> Path:
    """Write a random checkpoint directory in the official layout and return its path.

    Args:
        path: Directory to create.
        dtype: ``"float32"`` or ``"bfloat16"`` (the stored dtype of every tensor).
        seed: Random seed (same seed, same weights).
        pooler: Include the unused ``roberta.pooler.dense`` tensors.
        drop_keys / extra_keys: Keys to remove / add (to provoke load errors).
        skip_files: Files not to write (e.g. ``"tokenizer.json"``).
        bf16_values: Round every value through bfloat16 first (so a float32 checkpoint holds
            exactly the values of the bfloat16 one with the same seed).
        sizes: ``hidden``, ``layers``, ``heads``, ``intermediate``, ``vocab_size``, ``rank``.
    """
    path.mkdir(parents=True, exist_ok=True)
    config = make_config(dtype=dtype, **sizes)
    tensors = make_tensors(config, seed=seed, pooler=pooler)
    for key in drop_keys:
        del tensors[key]
    for key in extra_keys:
        tensors[key] = torch.zeros(2)
    store = getattr(torch, dtype)
    if bf16_values:
        tensors = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    tensors = {k: v.to(store).contiguous() for k, v in tensors.items()}
    skip = set(skip_files)
    if "config.json" not in skip:
        (path / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if "model.safetensors" not in skip:
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if name not in skip:
            shutil.copyfile(tokenizer_dir / name, path / name)
            (path / name).chmod(0o644)
    return path
