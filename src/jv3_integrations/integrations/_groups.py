"""Chunks of one source document: grouping and packing shared by the stores and adapters.

Late chunking needs every chunk of a source document in one call, in document order. The
hosts say which chunks belong together in their own way (Haystack's ``meta["source_id"]``,
LlamaIndex's ``source_node``, a store's own document plans); these pure helpers do the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["pack_groups", "source_groups"]

T = TypeVar("T")


def source_groups(
    sources: Sequence[object | None], positions: Sequence[object | None]
) -> list[tuple[object | None, list[int]]]:
    """Indexes grouped by source document, each group in document order.

    Args:
        sources: The source document of each chunk (``None``: the chunk is its own document).
        positions: A sortable position of each chunk in its document, or ``None``; a group is
            sorted by position only when all its members have one (else input order is kept).

    Returns:
        ``(source, indexes)`` per group, groups in the order of their first chunk.
    """
    groups: dict[object, list[int]] = {}
    for i, source in enumerate(sources):
        key: object = ("own", i) if source is None else ("source", source)
        groups.setdefault(key, []).append(i)
    result: list[tuple[object | None, list[int]]] = []
    for key, members in groups.items():
        source = key[1] if key[0] == "source" else None  # type: ignore[index]
        if len(members) > 1 and all(positions[i] is not None for i in members):
            members = sorted(members, key=lambda i: (positions[i], i))  # type: ignore[arg-type,return-value]
        result.append((source, members))
    return result


def pack_groups(groups: Sequence[T], size: Callable[[T], int], batch_size: int) -> list[list[T]]:
    """Whole groups packed into calls of about ``batch_size`` members (a group is never split).

    A call is closed before a group that would take it past ``batch_size``; a group larger
    than ``batch_size`` gets a call of its own.
    """
    packed: list[list[T]] = []
    current: list[T] = []
    used = 0
    for group in groups:
        n = size(group)
        if current and used + n > batch_size:
            packed.append(current)
            current, used = [], 0
        current.append(group)
        used += n
    if current:
        packed.append(current)
    return packed
