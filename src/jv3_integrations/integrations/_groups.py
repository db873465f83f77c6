"""Chunks of one source document: grouping and packing shared by the stores and adapters.

Late chunking needs every chunk of a source document in one call, in document order. The
hosts say which chunks belong together in their own way (Haystack's ``meta["source_id"]``,
LlamaIndex's ``source_node``, a store's own document plans); these pure helpers do the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core._packing import pack_groups

__all__ = ["pack_groups", "source_groups"]  # pack_groups: the core packer, re-exported


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
