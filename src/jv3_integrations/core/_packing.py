"""The bin-packer by tokens: texts (or groups of texts) into calls of at most ``budget`` tokens.

One module for every caller: the local model (padded batches, longest first), the packed
pipeline (consecutive texts, nothing padded) and the stores' document groups (whole documents
per call). Every index lands in exactly one batch; an item larger than ``budget`` gets a batch
of its own, never dropped or split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["pack_groups", "pack_in_order", "pack_longest_first"]

T = TypeVar("T")


def pack_in_order(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices in batches whose sizes add up to at most ``budget``.

    For work where nothing is padded (attention on packed tokens, whole documents per call),
    so the input order is kept.

    Example:
        >>> pack_in_order([3, 3, 5, 1], budget=6)
        [[0, 1], [2, 3]]
    """
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(sizes):
        if current and used + n > budget:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        batches.append(current)
    return batches


def pack_longest_first(
    lengths: Sequence[int], budget: int, *, spread: float = 1.25
) -> list[list[int]]:
    """Indices in padded batches, longest first.

    A batch holds at most ``budget`` padded tokens (``count * longest``), and its shortest
    text is at least ``longest / spread`` long, so padding wastes little (``spread=inf``: no
    such limit). Ties keep the input order.

    Example:
        >>> pack_longest_first([2, 8, 7, 1], budget=16)
        [[1, 2], [0], [3]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            longest = lengths[current[0]]
            full = (len(current) + 1) * longest > budget
            if full or lengths[i] * spread < longest:
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pack_groups(groups: Sequence[T], size: Callable[[T], int], budget: int) -> list[list[T]]:
    """Whole groups (e.g. a document's chunks) in calls of about ``budget`` members, in order.

    :func:`pack_in_order` over the groups' sizes: a group is never split; one larger than
    ``budget`` gets a call of its own.
    """
    return [
        [groups[i] for i in batch] for batch in pack_in_order([size(g) for g in groups], budget)
    ]
