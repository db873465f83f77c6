"""The one bin-packer by tokens (issue 23.5): every item exactly once, budgets kept."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from jv3_integrations.core._packing import pack_groups, pack_in_order, pack_longest_first

sizes = st.lists(st.integers(min_value=1, max_value=300), max_size=60)
budgets = st.integers(min_value=1, max_value=1000)


@given(sizes, budgets)
def test_in_order_keeps_order_and_budget(lengths: list[int], budget: int) -> None:
    batches = pack_in_order(lengths, budget)
    assert [i for b in batches for i in b] == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or sum(lengths[i] for i in b) <= budget
    for left, right in itertools.pairwise(batches):  # closed only when full
        assert sum(lengths[i] for i in left) + lengths[right[0]] > budget


@given(sizes, budgets, st.sampled_from([1.0, 1.25, 2.0, math.inf]))
def test_longest_first_pads_within_budget(lengths: list[int], budget: int, spread: float) -> None:
    batches = pack_longest_first(lengths, budget, spread=spread)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert lengths[b[0]] == longest
        assert len(b) == 1 or len(b) * longest <= budget
        assert all(lengths[i] * spread >= longest for i in b)


def test_examples_and_groups() -> None:
    assert pack_in_order([3, 3, 5, 1], 6) == [[0, 1], [2, 3]]
    assert pack_longest_first([2, 8, 7, 1], 16) == [[1, 2], [0], [3]]
    assert pack_longest_first([2, 8, 7, 1], 16, spread=math.inf) == [[1, 2], [0, 3]]
    assert pack_in_order([9], 4) == [[0]]  # larger than the budget: alone, never dropped
    groups = [["a", "b"], ["c"], ["d", "e", "f", "g"], ["h"]]
    assert pack_groups(groups, len, 3) == [[groups[0], groups[1]], [groups[2]], [groups[3]]]
