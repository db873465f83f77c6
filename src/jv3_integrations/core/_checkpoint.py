"""Finding, reading and checking jina-embeddings-v3 checkpoint files (no torch at import).

A model is either a local directory in the layout of the Hub repo ``jinaai/jina-embeddings-v3``
(``config.json``, ``model.safetensors``, ``tokenizer.json`` and the tokenizer/special-token
configs) or a Hub id whose files are fetched with ``huggingface_hub`` (only those files).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MODEL_FILES",
    "ModelConfig",
    "ModelSource",
    "checkpoint_keys",
    "load_weights",
]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, *TOKENIZER_CONFIG_FILES)
_REQUIRED = frozenset({CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE})
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUTHY = {"1", "true", "yes", "on"}


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_HUB_PROBE_TIMEOUT = 3.0
_reachable: dict[str, bool] = {}


def hub_endpoint() -> str:
    """The Hugging Face Hub endpoint in use (``HF_ENDPOINT``, default https://huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` s (probed once per process).

    Offline, huggingface_hub retries each request for about 24 s before giving up; this probe
    lets a missing model fail in seconds with one message instead. Behind a proxy (``*_PROXY``
    set) a direct connection says nothing, so the Hub is assumed reachable.
    """
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    endpoint = hub_endpoint()
    if endpoint not in _reachable:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
            _reachable[endpoint] = True
        except OSError:
            _reachable[endpoint] = False
    return _reachable[endpoint]


@dataclass(frozen=True)
class ModelConfig:
    """The sizes and settings of a jina-embeddings-v3 checkpoint, read from its config.json."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    rotary_base: float
    type_vocab_size: int
    tasks: tuple[str, ...]
    lora_rank: int
    lora_alpha: float
    matryoshka_dimensions: tuple[int, ...]
    task_instructions: Mapping[str, str] = field(default_factory=dict)
    truncate_dim: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = CONFIG_FILE) -> ModelConfig:
        """Validate a config.json mapping.

        Raises:
            ModelLoadError: a key is missing or describes an architecture we do not implement.
        """

        def get(key: str, default: Any = ...) -> Any:
            if key in raw:
                return raw[key]
            if default is ...:
                raise ModelLoadError(
                    f"{source} has no {key!r}; is this a jina-embeddings-v3 model?"
                )
            return default

        try:
            cfg = cls(
                vocab_size=int(get("vocab_size")),
                hidden_size=int(get("hidden_size")),
                num_layers=int(get("num_hidden_layers")),
                num_heads=int(get("num_attention_heads")),
                intermediate_size=int(get("intermediate_size")),
                layer_norm_eps=float(get("layer_norm_eps", 1e-5)),
                rotary_base=float(get("rotary_emb_base", 10000.0)),
                type_vocab_size=int(get("type_vocab_size", 1)),
                tasks=tuple(str(t) for t in get("lora_adaptations")),
                lora_rank=int(get("lora_rank")),
                lora_alpha=float(get("lora_alpha")),
                matryoshka_dimensions=tuple(int(d) for d in get("matryoshka_dimensions", ())),
                task_instructions={
                    str(k): str(v) for k, v in (get("task_instructions", None) or {}).items()
                },
                truncate_dim=(
                    None if get("truncate_dim", None) is None else int(raw["truncate_dim"])
                ),
            )
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source} has an invalid value: {exc}") from exc
        checks = [
            (get("position_embedding_type", "rotary") == "rotary", "position_embedding_type"),
            (get("hidden_act", "gelu") == "gelu", "hidden_act"),
            (get("emb_pooler", None) is None, "emb_pooler"),
            (cfg.hidden_size % cfg.num_heads == 0, "hidden_size/num_attention_heads"),
            (cfg.head_dim % 2 == 0, "head dim (rotary needs it even)"),
            (cfg.type_vocab_size >= 1, "type_vocab_size"),
            (cfg.lora_rank >= 1, "lora_rank"),
        ]
        for ok, what in checks:
            if not ok:
                raise ModelLoadError(
                    f"{source}: unsupported {what}; LocalProvider implements jina-embeddings-v3 "
                    "(rotary XLM-RoBERTa, exact GELU, mean pooling)"
                )
        if cfg.truncate_dim is not None and not 1 <= cfg.truncate_dim <= cfg.hidden_size:
            raise ModelLoadError(f"{source}: truncate_dim {cfg.truncate_dim} is out of range")
        return cfg


class ModelSource:
    """Where a model's files come from: a local directory or a Hub repository.

    Args:
        model: A directory path or a Hub id such as ``"jinaai/jina-embeddings-v3"``.
        revision: Hub branch, tag or commit (Hub ids only).
        cache_dir: Hugging Face cache directory (Hub ids only).
        local_files_only: Never download; use the Hugging Face cache only. ``HF_HUB_OFFLINE=1``
            in the environment has the same effect.
    """

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> None:
        self.model = model
        self.revision = revision
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.local_files_only = local_files_only
        self._config: ModelConfig | None = None

    @property
    def local_dir(self) -> Path | None:
        """The directory when ``model`` is a local directory, else ``None``."""
        path = Path(self.model).expanduser()
        return path if path.is_dir() else None

    @property
    def is_hub(self) -> bool:
        return self.local_dir is None

    def file(self, name: str) -> Path | None:
        """Path of one model file; ``None`` for an absent optional file.

        Raises:
            ModelLoadError: a required file is absent, or cannot be fetched (with what to do).
        """
        local = self.local_dir
        if local is not None:
            path = local / name
            if path.is_file():
                return path
            if name in _REQUIRED:
                raise ModelLoadError(
                    f"{name} not found in model directory {str(local)!r}; a jina-embeddings-v3 "
                    f"directory holds {', '.join(MODEL_FILES)} (download them from the Hub "
                    "repo jinaai/jina-embeddings-v3)"
                )
            return None
        return self._hub_file(name)

    def _hub_file(self, name: str) -> Path | None:
        path = Path(self.model).expanduser()
        if path.exists():
            raise ModelLoadError(f"model {self.model!r} is a file; pass the model's directory")
        if not _HUB_ID.match(self.model):
            raise ModelLoadError(
                f"model {self.model!r} is neither an existing directory nor a Hub id like "
                "'jinaai/jina-embeddings-v3'"
            )
        try:
            import huggingface_hub
            from huggingface_hub.errors import (
                EntryNotFoundError,
                LocalEntryNotFoundError,
                RepositoryNotFoundError,
                RevisionNotFoundError,
            )
        except ImportError as exc:  # pragma: no cover - part of the [local] extra
            from ._errors import missing_extra

            raise missing_extra("local", "huggingface_hub") from exc
        offline = self.local_files_only or _offline_env()
        unreachable = False
        if not offline and not hub_reachable():
            offline = unreachable = True  # the cache only: no 24 s of retries
        try:
            result = huggingface_hub.hf_hub_download(
                self.model,
                name,
                revision=self.revision,
                cache_dir=self.cache_dir,
                local_files_only=offline,
            )
        except LocalEntryNotFoundError as exc:
            if name not in _REQUIRED:
                return None
            raise self._not_downloaded(name, offline=offline, unreachable=unreachable) from exc
        except EntryNotFoundError as exc:
            if name not in _REQUIRED:
                return None
            raise ModelLoadError(f"Hub repo {self.model!r} has no {name}") from exc
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise ModelLoadError(
                f"Hub repo {self.model!r} (revision {self.revision or 'main'}) was not found, "
                "and no local directory of that name exists"
            ) from exc
        except OSError as exc:
            raise ModelLoadError(f"could not fetch {name} of {self.model!r}: {exc}") from exc
        return Path(result)

    def _not_downloaded(self, name: str, *, offline: bool, unreachable: bool) -> ModelLoadError:
        """The error for a required file neither in the cache nor downloadable, and why."""
        fix = f"hf download {self.model} {' '.join(MODEL_FILES)}"
        if unreachable:
            why = f"the Hugging Face Hub ({hub_endpoint()}) cannot be reached (offline?)"
        elif offline:
            why = "downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True)"
        else:
            why = "it could not be downloaded"
        return ModelLoadError(
            f"{name} of {self.model!r} is not in the Hugging Face cache and {why}. "
            f"Download it once with `{fix}` "
            f"(or huggingface_hub.snapshot_download), or point model= at a local directory "
            "holding those files.",
            summary=f"the model {self.model} is not downloaded and {why}",
            fix=fix,
        )

    def config(self) -> ModelConfig:
        """Read and validate config.json (cached; fetches only that file for a Hub id)."""
        if self._config is None:
            path = self.file(CONFIG_FILE)
            assert path is not None  # required files are never None
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot read {path}: {exc}") from exc
            if not isinstance(raw, dict):
                raise ModelLoadError(f"{path} is not a JSON object")
            self._config = ModelConfig.from_dict(raw, source=str(path))
        return self._config


def hub_cached(model: str, name: str = WEIGHTS_FILE) -> bool:
    """Whether ``name`` of Hub repo ``model`` is already in the Hugging Face cache."""
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - part of the [local] extra
        return False
    return isinstance(huggingface_hub.try_to_load_from_cache(model, name), str)


# -- checkpoint keys --------------------------------------------------------------------------

_PARAM = "parametrizations.weight"


def _linear_keys(prefix: str, out_f: int, in_f: int, t: int, r: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.bias": (out_f,),
        f"{prefix}.{_PARAM}.original": (out_f, in_f),
        f"{prefix}.{_PARAM}.0.lora_A": (t, r, in_f),
        f"{prefix}.{_PARAM}.0.lora_B": (t, out_f, r),
    }


def _embedding_keys(prefix: str, n: int, dim: int, t: int, r: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.{_PARAM}.original": (n, dim),
        f"{prefix}.{_PARAM}.0.lora_A": (t, n, r),
        f"{prefix}.{_PARAM}.0.lora_B": (t, r, dim),
    }


def checkpoint_keys(
    cfg: ModelConfig,
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The official key names and shapes: ``(required, optional)`` (optional = the pooler)."""
    h, i, t, r = cfg.hidden_size, cfg.intermediate_size, len(cfg.tasks), cfg.lora_rank
    req: dict[str, tuple[int, ...]] = {}
    req.update(_embedding_keys("roberta.embeddings.word_embeddings", cfg.vocab_size, h, t, r))
    req.update(
        _embedding_keys("roberta.embeddings.token_type_embeddings", cfg.type_vocab_size, h, t, r)
    )
    req["roberta.emb_ln.weight"] = (h,)
    req["roberta.emb_ln.bias"] = (h,)
    for n in range(cfg.num_layers):
        p = f"roberta.encoder.layers.{n}"
        req.update(_linear_keys(f"{p}.mixer.Wqkv", 3 * h, h, t, r))
        req.update(_linear_keys(f"{p}.mixer.out_proj", h, h, t, r))
        req.update(_linear_keys(f"{p}.mlp.fc1", i, h, t, r))
        req.update(_linear_keys(f"{p}.mlp.fc2", h, i, t, r))
        for norm in ("norm1", "norm2"):
            req[f"{p}.{norm}.weight"] = (h,)
            req[f"{p}.{norm}.bias"] = (h,)
    opt = _linear_keys("roberta.pooler.dense", h, h, t, r)
    return req, opt


def _name_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(
    path: Path,
    cfg: ModelConfig,
    *,
    dtype_for: Callable[[str, torch.dtype], torch.dtype],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Load the checkpoint tensor by tensor, checking every key and shape.

    Each tensor is converted to ``dtype_for(key, stored_dtype)`` as it is read, so peak memory
    stays near one copy in the target dtype. The unused pooler is skipped.

    Raises:
        ModelLoadError: missing or unexpected keys (named), wrong shapes, unreadable file.
    """
    from safetensors import SafetensorError, safe_open

    required, optional = checkpoint_keys(cfg)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except (OSError, SafetensorError) as exc:
        raise ModelLoadError(f"cannot read checkpoint {path}: {exc}") from exc
    with handle as f:
        keys = set(f.keys())
        missing = sorted(set(required) - keys)
        unexpected = sorted(keys - set(required) - set(optional))
        problems = []
        if missing:
            problems.append(f"missing keys: {_name_keys(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_name_keys(unexpected)}")
        if problems:
            raise ModelLoadError(
                f"checkpoint {path} does not match config.json ({cfg.num_layers} layers, hidden "
                f"{cfg.hidden_size}, {len(cfg.tasks)} adapters): " + "; ".join(problems)
            )
        out: dict[str, torch.Tensor] = {}
        for key, shape in required.items():
            got = tuple(f.get_slice(key).get_shape())
            if got != shape:
                raise ModelLoadError(
                    f"checkpoint {path}: {key} has shape {list(got)}, config.json implies "
                    f"{list(shape)}"
                )
            tensor = f.get_tensor(key)
            if not tensor.is_floating_point():
                raise ModelLoadError(f"checkpoint {path}: {key} is {tensor.dtype}, not a float")
            out[key] = tensor.to(device=device, dtype=dtype_for(key, tensor.dtype))
            del tensor
    logger.info("loaded %d tensors from %s", len(out), path)
    return out
