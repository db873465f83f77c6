"""The mutation list (tests/mutations/) stays applicable: each anchor occurs exactly once.

Running the mutants takes minutes (``tox -e mutations``); this cheap check runs in CI so a code
change that moves a promise's line also updates its mutation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutations.mutations import MUTATIONS

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_anchor_occurs_exactly_once(mutation: object) -> None:
    text = (SRC / mutation.path).read_text(encoding="utf-8")  # type: ignore[attr-defined]
    assert text.count(mutation.old) == 1, (mutation.name, mutation.path)  # type: ignore[attr-defined]
    assert all(Path(t.split("::")[0]).exists() for t in mutation.tests)  # type: ignore[attr-defined]
