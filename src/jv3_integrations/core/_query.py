"""Search queries: the checks every search path shares (the stores' and the ``jv3`` CLI's)."""

from __future__ import annotations

from ._errors import InputError
from ._provider import validate_texts

__all__ = ["EMPTY_QUERY", "validate_queries"]

#: The one message for an empty query, wherever it is refused.
EMPTY_QUERY = "the query is empty; give the words to search for"


def validate_queries(queries: object) -> list[str]:
    """Check search queries and return them as a list.

    Raises:
        InputTypeError: not a sequence of str (as :func:`validate_texts`).
        InputError: a query that is empty or only white space (:data:`EMPTY_QUERY`): it has
            no words, and searching with it would return arbitrary hits.
    """
    items = validate_texts(queries)
    if any(not q.strip() for q in items):
        raise InputError(EMPTY_QUERY)
    return items
