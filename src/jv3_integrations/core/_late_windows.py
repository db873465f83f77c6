"""Late chunking's window planning (pure): a long document's chunks cut into request windows.

A document too long for one late-chunking request is sent as consecutive windows of whole
chunks; each window keeps a range of chunks and carries neighbouring chunks as context (their
vectors are discarded). Used by the planner in :mod:`._late_plan`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class _Window:
    """One late-chunking request: chunks ``lo:hi`` are sent, chunks ``start:end`` are kept."""

    lo: int
    start: int
    end: int
    hi: int


def _plan_windows(
    counts: Sequence[int], budget: int, context: int, max_items: int | None = None
) -> list[_Window]:
    """Split a document's chunks into consecutive windows of whole chunks.

    Every window's sent chunks total at most ``budget`` tokens (and ``max_items`` chunks). The
    kept ranges tile ``0..len(counts)`` in order. A window after the first carries up to
    ``context`` tokens of the chunks before its kept range, one before the last carries up to
    ``context`` tokens of the chunks after it, and at least the adjacent chunk on each side:
    every chunk whose two neighbours fit in one window with it sees both of them.

    Args:
        counts: Token count of each chunk (without special tokens or instruction).
        budget: Tokens available for chunks in one request.
        context: Target context tokens on each side of a window.
        max_items: Most chunks in one request (None: no limit; at least 3 when set).

    Raises:
        ValueError: a single chunk is larger than ``budget`` (the caller reports which).
    """
    n = len(counts)
    cap = n if max_items is None else max(3, max_items)
    for c in counts:
        if c > budget:
            raise ValueError(f"a chunk of {c} tokens does not fit a window of {budget}")
    if sum(counts) <= budget and n <= cap:
        return [_Window(0, 0, n, n)] if n else []
    total = list(itertools.accumulate(counts, initial=0))  # total[i] = sum(counts[:i])
    windows: list[_Window] = []
    s = 0
    while s < n:
        lo, before = _context_before(counts, s, context, cap)
        # the first kept chunk and its right neighbour must fit: drop far context first
        nxt = counts[s + 1] if s + 1 < n else 0
        while lo < s and before + counts[s] + nxt > budget:
            before -= counts[lo]
            lo += 1
        # the rest of the document fits: last window
        if before + total[n] - total[s] <= budget and n - lo <= cap:
            windows.append(_Window(lo, s, n, n))
            break
        # kept chunks: leave room after them for `context` tokens and at least the next chunk
        end, used = s + 1, before + counts[s]
        while end < n and end - lo < cap - cap // 3:
            reserve = max(context, counts[end + 1]) if end + 1 < n else 0
            if used + counts[end] + reserve > budget:
                break
            used += counts[end]
            end += 1
        hi = _context_after(counts, lo, end, used, budget, context, cap)
        windows.append(_Window(lo, s, end, hi))
        s = end
    return windows


def _context_before(counts: Sequence[int], s: int, context: int, cap: int) -> tuple[int, int]:
    """``(lo, tokens)``: whole chunks back from ``s``, up to ``context`` tokens (at least one)."""
    lo, before = s, 0
    while lo > 0 and before + counts[lo - 1] <= context and s - lo < cap // 3:
        lo -= 1
        before += counts[lo]
    if lo == s and s > 0:
        lo, before = s - 1, counts[s - 1]
    return lo, before


def _context_after(
    counts: Sequence[int], lo: int, end: int, used: int, budget: int, context: int, cap: int
) -> int:
    """``hi``: whole chunks after ``end``, up to ``context`` tokens (at least one if it fits)."""
    n = len(counts)
    hi, after = end, 0
    while (
        hi < n
        and after + counts[hi] <= context
        and used + after + counts[hi] <= budget
        and hi - lo < cap
    ):
        after += counts[hi]
        hi += 1
    if hi == end and end < n and used + counts[end] <= budget and hi - lo < cap:
        hi = end + 1
    return hi
