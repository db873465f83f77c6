"""The local model's device set-up: device, compute dtype, attention path, CUDA batch budget.

Used by :class:`~jv3_integrations.core.LocalProvider`: the device and dtype on first use (cuda,
else mps, else cpu; bfloat16 on cuda, float32 elsewhere), the attention path and, on CUDA, the
token budget per batch once the weights are loaded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._errors import ConfigurationError, missing_extra

if TYPE_CHECKING:
    import torch

    from ._local import LocalProvider
    from ._model import JinaEmbeddingsV3

__all__ = ["ATTENTION", "DTYPES", "configure_device", "resolve_device"]

logger = logging.getLogger(__name__)

#: The accepted ``dtype`` strings and the torch dtype each names.
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}

#: The accepted ``attention`` arguments.
ATTENTION = ("auto", "varlen", "nested", "padded")


def resolve_device(
    device_arg: str | torch.device | None,
    dtype_arg: str | torch.dtype | None,
    quantize: str | None,
) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype for the constructor's ``device``/``dtype``/``quantize``."""
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("local", "torch") from exc
    if device_arg is not None:
        device = torch.device(device_arg)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if dtype_arg is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype_arg, str):
        dtype = getattr(torch, DTYPES[dtype_arg.lower()])
    elif isinstance(dtype_arg, torch.dtype) and dtype_arg.is_floating_point:
        dtype = dtype_arg
    else:
        raise ConfigurationError(f"dtype must be a float dtype, got {dtype_arg!r}")
    if quantize == "int8" and (device.type != "cpu" or dtype != torch.float32):
        raise ConfigurationError("quantize='int8' runs on device='cpu' with dtype float32 only")
    return device, dtype


def configure_device(provider: LocalProvider, net: JinaEmbeddingsV3) -> None:
    """Pick the attention path, and on CUDA the batch budget from the free memory."""
    import torch

    from ._packed import first_working, resolve_attention
    from ._pipeline import budget_from_free_memory

    assert provider._device is not None and provider._dtype is not None
    provider._attention = resolve_attention(
        provider._attention_arg, provider._device, provider._dtype
    )
    if provider._attention_arg == "auto" and provider._attention != "padded":
        provider._attention = first_working(provider._attention, provider._device, provider._dtype)
    if provider._batch_tokens is None and provider._device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(provider._device)
        # blocks torch's caching allocator holds but does not use are free to us too
        free += torch.cuda.memory_reserved(provider._device)
        free -= torch.cuda.memory_allocated(provider._device)
        cfg = net.cfg
        provider._budget = budget_from_free_memory(
            free,
            hidden=cfg.hidden_size,
            intermediate=cfg.intermediate_size,
            itemsize=provider._dtype.itemsize,
        )
        logger.info(
            "batch_tokens=%d from %d MiB free on %s", provider._budget, free >> 20, provider._device
        )
