"""The one grouping helper for "chunks of one source document" (stores, Haystack, LlamaIndex)."""

from __future__ import annotations

from jv3_integrations.integrations._groups import pack_groups, source_groups


def test_source_groups_keep_first_appearance_and_sort_by_position() -> None:
    sources = ["b", "a", None, "b", "a", None]
    positions = [1, 5, None, 0, 2, None]
    assert source_groups(sources, positions) == [
        ("b", [3, 0]),  # sorted by position, not input order
        ("a", [4, 1]),
        (None, [2]),  # no source: its own document
        (None, [5]),
    ]


def test_a_group_missing_a_position_keeps_input_order() -> None:
    assert source_groups(["s", "s", "s"], [2, None, 0]) == [("s", [0, 1, 2])]


def test_pack_groups_never_splits_a_group() -> None:
    groups = [[0, 1], [2], [3, 4, 5, 6], [7], [8]]
    packed = pack_groups(groups, len, 3)
    assert packed == [[[0, 1], [2]], [[3, 4, 5, 6]], [[7], [8]]]
    assert [i for call in packed for g in call for i in g] == list(range(9))  # nothing lost
    assert pack_groups([], len, 3) == []
