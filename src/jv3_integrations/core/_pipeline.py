"""Batches for the local model, prepared in a background thread while the device computes.

A producer thread tokenizes the request segment by segment (``tokenizers`` releases the GIL),
packs each segment into token-budgeted batches and builds their host tensors (pinned memory
on CUDA, so the host->device copies run asynchronously); the consumer (the calling thread)
takes them from a bounded queue of ``depth`` batches, so at most that many prepared batches
wait in memory whatever the request's size. Imported only with the model (torch needed).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._packing import pack_in_order

__all__ = [
    "HostBatch",
    "Prefetcher",
    "budget_from_free_memory",
    "host_batch",
    "is_oom",
    "oom_message",
    "pack_in_order",
    "pool_mean",
]


@dataclass
class HostBatch:
    """One packed batch on the host: its texts' ids concatenated, with their layout.

    Attributes:
        indices: Each text's position in the request.
        seqs: Each text's ids (kept to rebuild halves after an out-of-memory error).
        ids / positions: ``[N]`` int64 token ids and in-text positions.
        cu_seqlens: ``[B + 1]`` int32 text starts.
        max_len: The longest text.
        call_tokens: On a request's first batch: the tokens to plan the adapter merge with.
    """

    indices: list[int]
    seqs: list[list[int]]
    ids: Tensor
    positions: Tensor
    cu_seqlens: Tensor
    max_len: int
    call_tokens: int | None = None

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """ids, positions, cu_seqlens on ``device`` (asynchronous from pinned memory)."""
        return (
            self.ids.to(device, non_blocking=True),
            self.positions.to(device, non_blocking=True),
            self.cu_seqlens.to(device, non_blocking=True),
        )

    def halves(self, pin: bool) -> tuple[HostBatch, HostBatch]:
        """The batch split into two (texts in the same order); needs two or more texts."""
        mid = len(self.indices) // 2
        return (
            host_batch(self.indices[:mid], self.seqs[:mid], pin),
            host_batch(self.indices[mid:], self.seqs[mid:], pin),
        )


def host_batch(indices: list[int], seqs: list[list[int]], pin: bool) -> HostBatch:
    """Pack ``seqs`` into one :class:`HostBatch` (pinned host memory when ``pin``)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=total)
    cu = np.zeros(len(seqs) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    positions = np.arange(total, dtype=np.int64) - np.repeat(cu[:-1].astype(np.int64), lengths)
    tensors = [torch.from_numpy(a) for a in (ids, positions, cu)]
    if pin:
        tensors = [t.pin_memory() for t in tensors]
    return HostBatch(indices, seqs, tensors[0], tensors[1], tensors[2], int(lengths.max(initial=0)))


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (``torch.OutOfMemoryError`` or its message)."""
    kind = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, kind) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def bytes_per_token(hidden: int, intermediate: int, itemsize: int) -> int:
    """Transient activation bytes per token of one forward (the largest live set, x2 slack).

    Live at the MLP: the layer input and h1 ([H] each), fc1's output and its GELU ([I] each),
    in the compute dtype; the embeddings are built in fp32 ([H] x 4 B), the attention
    workspace (q, k, v, context) is [4H]; flash attention itself is linear in tokens.
    """
    live = (6 * hidden + 2 * intermediate) * itemsize + 2 * hidden * 4
    return 2 * live


def budget_from_free_memory(
    free_bytes: int,
    *,
    hidden: int,
    intermediate: int,
    itemsize: int,
    fraction: float = 0.6,
    cap: int = 1 << 17,
) -> int:
    """A ``batch_tokens`` default: ``fraction`` of the free memory over the per-token cost.

    Clamped to ``[1, cap]`` (larger batches stop paying off). A text longer than the budget
    still runs, alone; if that runs out of memory the caller raises :class:`DeviceMemoryError`.
    """
    per_token = bytes_per_token(hidden, intermediate, itemsize)
    return max(1, min(cap, int(free_bytes * fraction) // per_token))


def pool_mean(states: Tensor, cu_seqlens: Tensor) -> Tensor:
    """Mean of each text's token states, accumulated in fp32: ``[N, H]`` -> ``[B, H]`` fp32.

    Args:
        states: Hidden states of a packed batch (any float dtype, e.g. bf16).
        cu_seqlens: ``[B + 1]`` text starts on the same device.
    """
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    rows = torch.repeat_interleave(
        torch.arange(lengths.shape[0], device=states.device), lengths, output_size=states.shape[0]
    )
    sums = torch.zeros(lengths.shape[0], states.shape[1], dtype=torch.float32, device=states.device)
    sums.index_add_(0, rows, states.float())
    return sums / lengths[:, None].float()


def oom_message(tokens: int, device: torch.device) -> str:
    """What to do when one text of ``tokens`` tokens does not fit in ``device``'s memory."""
    free = ""
    if device.type == "cuda":
        left, total = torch.cuda.mem_get_info(device)
        free = f" ({left >> 20} of {total >> 20} MiB free)"
    return (
        f"one text of {tokens} tokens does not fit in the memory of {device}{free}, even in a "
        "batch of its own; lower max_length, free device memory (other processes, other "
        "models), or use device='cpu'"
    )


class Prefetcher:
    """Run ``produce(put)`` in a background thread; iterate over what it puts.

    ``put(item)`` blocks while ``depth`` items wait (bounded memory) and returns False once
    the consumer stopped, so the producer can end early. An exception in the producer is
    raised in the consumer at the point it would have received the next item.

    Example:
        >>> with Prefetcher(lambda put: [put(i) for i in range(3)], depth=1) as items:
        ...     list(items)
        [0, 1, 2]
    """

    _END = object()

    def __init__(self, produce: Callable[[Callable[[Any], bool]], None], *, depth: int = 2):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(produce,), name="jv3-prefetch", daemon=True
        )

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[Callable[[Any], bool]], None]) -> None:
        try:
            produce(self._put)
        except BaseException as exc:  # handed to the consumer
            self._error = exc
        finally:
            self._put(self._END)

    def __enter__(self) -> Iterator[Any]:
        self._thread.start()
        return self._items()

    def _items(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
