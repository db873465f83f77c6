"""Plain texts on the local model: tokenized in the background, packed, pooled, copied back.

Used by :class:`~jv3_integrations.core.LocalProvider` for calls without late chunking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._errors import DeviceMemoryError
from ._packing import pack_longest_first
from ._progress import progress
from ._types import Task

if TYPE_CHECKING:
    import torch

    from ._local import LocalProvider
    from ._model import JinaEmbeddingsV3
    from ._pipeline import HostBatch
    from ._provider import EmbedRequest

__all__ = ["embed_texts"]

logger = logging.getLogger(__name__)

#: The one packer by tokens (padded batches, longest first), under the name used below.
_pack = pack_longest_first


def _segment_end(texts: Sequence[str], start: int, chars: int) -> int:
    """End of the segment starting at ``start``: about ``chars`` characters, one text or more."""
    used, stop = 0, start
    while stop < len(texts) and (stop == start or used + len(texts[stop]) <= chars):
        used += len(texts[stop])
        stop += 1
    return stop


def _to_host(pooled: torch.Tensor, cuda: bool) -> Callable[[], npt.NDArray[np.float32]]:
    """Start copying ``pooled`` to the host; the returned call waits for it and gives numpy.

    On CUDA the copy goes to pinned memory without blocking, and only the returned call
    waits (on an event recorded after the copy), so the host never stalls the device.
    """
    if not cuda:
        array = pooled.numpy()
        return lambda: array
    import torch

    host = torch.empty(pooled.shape, dtype=pooled.dtype, pin_memory=True)
    host.copy_(pooled, non_blocking=True)
    event = torch.cuda.Event()  # type: ignore[no-untyped-call]
    event.record()

    def wait() -> npt.NDArray[np.float32]:
        event.synchronize()
        return host.numpy()

    return wait


def embed_texts(
    provider: LocalProvider, request: EmbedRequest
) -> tuple[npt.NDArray[np.float32], int]:
    """Embed plain texts: tokenized in a background thread while the device computes.

    Each batch is packed (its texts' ids concatenated), copied to the device from pinned
    memory without blocking, pooled there in fp32, and its vectors copied back
    asynchronously: the host waits for a batch's vectors only after the next batch has
    been queued, never once per text.
    """
    import torch

    from ._pipeline import Prefetcher

    net = provider._load()
    task = provider._task_index(request.task)
    cuda = provider.device.type == "cuda"
    out = np.empty((len(request.texts), provider.max_dimensions), dtype=np.float32)
    stats = [0, 0]  # tokens, truncated texts
    produce = _produce(provider, request.texts, request.task, pin=cuda, stats=stats)
    # jagged nested tensors cannot be built from inference tensors: no_grad for those
    grad = torch.no_grad() if provider._attention == "nested" else torch.inference_mode()
    pending: tuple[Callable[[], npt.NDArray[np.float32]], list[int]] | None = None
    with (
        provider._lock,
        grad,
        progress(None, "Embedding", enabled=provider._progress_bar, unit="tok") as bar,
        Prefetcher(produce, depth=2) as batches,
        net.reuse_buffers(),
    ):
        for n, batch in enumerate(batches):
            if n == 0:
                net.set_task(task, batch.call_tokens)
            pooled = _pooled(provider, net, batch)
            done = _to_host(pooled, cuda)
            if pending is not None:
                out[pending[1]] = pending[0]()
            pending = (done, batch.indices)
            bar.update(batch.tokens)
        if pending is not None:
            out[pending[1]] = pending[0]()
    if stats[1]:
        logger.warning(
            "truncated %d of %d texts to max_length=%d tokens",
            stats[1],
            len(request.texts),
            provider._max_length,
        )
    return out, stats[0]


def _produce(
    provider: LocalProvider, texts: Sequence[str], task: Task | None, *, pin: bool, stats: list[int]
) -> Callable[[Callable[[object], bool]], None]:
    """The producer of :func:`embed_texts`: tokenize, pack, build host batches.

    With the padded attention the whole request is tokenized first and sorted by length
    (padding stays small); with packed attention nothing is padded, so the texts go in
    their own order in segments of about one batch (4 characters a token), and the
    tokenization of the next segment overlaps the device's work on the queued batches.
    """
    from ._pipeline import host_batch, pack_in_order

    enc = provider._text_encoder()
    name = None if task is None else task.value
    whole = provider._attention == "padded"

    def produce(put: Callable[[object], bool]) -> None:
        start, first = 0, True
        while start < len(texts):
            stop = len(texts) if whole else _segment_end(texts, start, 4 * provider._budget)
            full = enc.encode(texts[start:stop], name)
            seqs = [enc.truncate(ids, provider._max_length) for ids in full]
            lengths = [len(x) for x in seqs]
            stats[0] += sum(lengths)
            stats[1] += sum(1 for a, b in zip(full, seqs, strict=True) if len(a) != len(b))
            budget = provider._budget
            groups = _pack(lengths, budget) if whole else pack_in_order(lengths, budget)
            for group in groups:
                batch = host_batch([start + i for i in group], [seqs[i] for i in group], pin)
                if first:  # the adapter merge is planned on the call's size
                    batch.call_tokens = sum(lengths) if stop == len(texts) else None
                    first = False
                if not put(batch):
                    return
            start = stop

    return produce


def _pooled(provider: LocalProvider, net: JinaEmbeddingsV3, batch: HostBatch) -> torch.Tensor:
    """Mean-pooled fp32 ``[B, H]`` of one batch on the device; halves it on OOM."""
    import torch

    from ._pipeline import is_oom, oom_message, pool_mean

    device = provider.device

    def attempt() -> torch.Tensor:  # its tensors die with its frame, before any retry
        ids, positions, cu = batch.to(device)
        states = net.forward_packed(ids, positions, cu, batch.max_len, provider._attention)
        return pool_mean(states, cu)

    try:
        return attempt()
    except Exception as exc:
        if not is_oom(exc):
            raise
        if len(batch.indices) == 1:
            raise DeviceMemoryError(oom_message(batch.tokens, device)) from exc
    if device.type == "cuda":
        torch.cuda.empty_cache()
    provider._budget = max(1, min(provider._budget, batch.tokens // 2))
    logger.warning(
        "out of memory on %s with a batch of %d tokens: retrying it in halves, batch_tokens now %d",
        device,
        batch.tokens,
        provider._budget,
    )
    first, second = batch.halves(pin=device.type == "cuda")
    return torch.cat([_pooled(provider, net, first), _pooled(provider, net, second)])
