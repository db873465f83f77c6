"""Long late chunking on the local model, streamed: windows encoded as their tokens are known.

Used by :class:`~jv3_integrations.core.LocalProvider` for ``late_chunking=True``: a document
longer than ``max_length`` is encoded in overlapping windows, and each chunk is mean-pooled from
the kept states of the windows it spans (memory O(window + chunks), not O(document)).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._errors import ConfigurationError
from ._packing import pack_longest_first
from ._progress import ProgressBar, progress, report_progress

if TYPE_CHECKING:
    import torch

    from ._local import LocalProvider
    from ._model import JinaEmbeddingsV3
    from ._provider import EmbedRequest

__all__ = ["embed_late"]

logger = logging.getLogger(__name__)

#: The one packer by tokens (padded batches, longest first), under the name used below.
_pack = pack_longest_first


def embed_late(
    provider: LocalProvider, request: EmbedRequest
) -> tuple[npt.NDArray[np.float32], int]:
    """Long late chunking, streamed: memory O(window + chunks), not O(document).

    The document is tokenized in sections of whole chunks; windows of ``max_length``
    tokens (``late_chunking_overlap`` shared with the previous one, whose states are
    dropped) are encoded in order as soon as their tokens are known, and each chunk is
    mean-pooled from the kept states of the windows it spans as they finish (float64
    running sums). Same vectors as pooling the concatenated states of all windows.
    """
    import torch

    enc = provider._text_encoder()
    texts = request.texts
    n = len(texts)
    out = np.zeros((n, provider.max_dimensions), dtype=np.float32)
    if n == 0:
        return out, 0
    window, overlap = provider._max_length, provider._overlap
    step = window - overlap
    task = provider._task_index(request.task)
    net = provider._load()
    device = provider.device
    pooler = _ChunkPooler(n, out)
    span_start, span_end = pooler.span_start, pooler.span_end
    budget = provider._budget
    per_batch = max(1, budget // window)
    starts: list[int] = []  # document offset of each pending window
    pending: list[npt.NDArray[np.int64]] = []
    windows = 0

    def run(seqs: list[npt.NDArray[np.int64]], offsets: list[int], bar: ProgressBar) -> None:
        nonlocal windows
        windows += _encode_windows(
            net, enc.pad_id, device, budget, overlap, seqs, offsets, pooler, bar
        )

    from ._model import MERGE_MIN_TOKENS

    def check(total: int) -> None:
        _check_overlap(total, window, overlap)

    buf = np.zeros(0, dtype=np.int64)  # document tokens buf_at:buf_at+len(buf)
    buf_at = 0
    total = 0  # document tokens known so far
    nxt = 0  # offset of the next window
    with (
        provider._lock,
        torch.inference_mode(),
        progress(None, "Late chunking", enabled=provider._progress_bar, unit="tok") as bar,
        net.reuse_buffers(),
    ):
        c = 0
        sections = enc.sections(texts, None if request.task is None else request.task.value)
        for k, pieces in enumerate(sections):
            new = pooler.add_section(pieces, c, total, enc.bos_id if k == 0 else None)
            c += len(pieces)
            del pieces
            total += len(new)
            buf = np.concatenate((buf, new))
            del new
            check(total + 1)  # </s> is still to come
            # </s> is still to come, so the document is longer than `total`: a window
            # that ends by then has tokens after it, i.e. is full and not the last one.
            while nxt + window <= total:
                pending.append(buf[nxt - buf_at : nxt - buf_at + window].copy())
                starts.append(nxt)
                nxt += step
                buf, buf_at = buf[nxt - buf_at :], nxt
            # Encode whole batches as they fill. Before the first one, wait for enough
            # tokens that the adapter choice (merge or side path) is the whole document's.
            ready = len(pending) // per_batch * per_batch
            if ready and (windows or total >= MERGE_MIN_TOKENS):
                if not windows:
                    net.set_task(task, total)
                run(pending[:ready], starts[:ready], bar)
                del pending[:ready], starts[:ready]
        buf = np.concatenate((buf, np.asarray([enc.eos_id], dtype=np.int64)))
        total += 1  # </s>
        check(total)
        span_start[0] = 0
        span_end[n - 1] = total
        while nxt + window < total:  # full windows before the last one
            pending.append(buf[nxt - buf_at : nxt - buf_at + window].copy())
            starts.append(nxt)
            nxt += step
        pending.append(buf[nxt - buf_at :].copy())  # the last window (maybe the only one)
        starts.append(nxt)
        del buf
        if not windows:
            net.set_task(task, sum(len(q) for q in pending))
        run(pending, starts, bar)
    if pooler.chunk != n:  # pragma: no cover - window arithmetic invariant
        raise RuntimeError(f"late chunking pooled {pooler.chunk} of {n} chunks")
    if windows > 1:
        logger.info("late chunking: %d tokens in %d windows", total, windows)
    return out, total


class _ChunkPooler:
    """Mean-pools chunks from window states as they finish (long late chunking).

    ``span_start``/``span_end`` hold each chunk's ``[start, end)`` in document tokens (filled
    as sections are tokenized); the open chunk's states are summed in float64.
    """

    def __init__(self, n: int, out: npt.NDArray[np.float32]) -> None:
        self.n = n
        self.out = out
        self.span_start = np.zeros(n, dtype=np.int64)
        self.span_end = np.zeros(n, dtype=np.int64)
        self.acc = np.zeros(out.shape[1], dtype=np.float64)  # the open chunk's running sum
        self.chunk = 0  # next chunk to finish

    def add_section(
        self, pieces: Sequence[Sequence[int]], c: int, total: int, bos: int | None
    ) -> npt.NDArray[np.int64]:
        """Record the spans of chunks ``c:c+len(pieces)`` (a section starting at document
        token ``total``, with ``bos`` first when given) and return the section's tokens."""
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        flat = [] if bos is None else [bos]
        for piece in pieces:
            flat.extend(piece)
        ends = total + (0 if bos is None else 1) + np.cumsum(lengths)
        self.span_end[c : c + len(lengths)] = ends
        self.span_start[c : c + len(lengths)] = np.concatenate(([total], ends[:-1]))
        return np.asarray(flat, dtype=np.int64)

    def add(self, kept: npt.NDArray[np.float32], first: int) -> None:
        """Add the kept states of document tokens ``first:first+len(kept)``."""
        last = first + kept.shape[0]
        c = self.chunk
        acc, span_start, span_end = self.acc, self.span_start, self.span_end
        while c < self.n and span_start[c] < last:
            a = max(int(span_start[c]), first) - first
            b = min(int(span_end[c]), last) - first
            np.add(acc, kept[a:b].sum(axis=0, dtype=np.float64), out=acc)
            if span_end[c] > last:
                break  # continues in the next window
            self.out[c] = acc / float(span_end[c] - span_start[c])
            acc[:] = 0.0
            c += 1
        self.chunk = c


def _encode_windows(
    net: JinaEmbeddingsV3,
    pad_id: int,
    device: torch.device,
    budget: int,
    overlap: int,
    seqs: list[npt.NDArray[np.int64]],
    offsets: list[int],
    pooler: _ChunkPooler,
    bar: ProgressBar,
) -> int:
    """Encode windows (document offsets ``offsets``) in token-budget batches; pool their
    states less the overlap with the previous window. Returns the number of windows."""
    import torch

    lengths = [len(q) for q in seqs]
    windows = 0
    for batch in _pack(lengths, budget):
        longest = lengths[batch[0]]
        ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.bool)
        for row, i in enumerate(batch):
            ids[row, : lengths[i]] = torch.from_numpy(seqs[i])
            mask[row, : lengths[i]] = True
        padded = not bool(mask.all())
        states = net(ids.to(device), mask.to(device) if padded else None)
        row_at = 0
        for i in batch:
            part = states[row_at : row_at + lengths[i]]
            row_at += lengths[i]
            skip = 0 if offsets[i] == 0 else overlap
            kept = part[skip:].float().cpu().numpy()
            pooler.add(kept, offsets[i] + skip)
            windows += 1
            report_progress(kept.shape[0])
            bar.update(kept.shape[0])
    return windows


def _check_overlap(total: int, window: int, overlap: int) -> None:
    if total > window and overlap >= window:
        raise ConfigurationError(
            f"this document has more than max_length={window} tokens, so it is "
            f"windowed; late_chunking_overlap ({overlap}) must be smaller than max_length"
        )
