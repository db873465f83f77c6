"""The one integer validator every constructor and adapter uses (no I/O, no imports)."""

from __future__ import annotations

from ._errors import ConfigurationError, InputTypeError

__all__ = ["check_int", "check_int_or_none"]


def check_int(
    name: str,
    value: object,
    low: int = 1,
    high: int | None = None,
    *,
    error: type[Exception] = ConfigurationError,
) -> int:
    """Check that ``value`` is an int (not a bool) in ``low..high`` and return it.

    Args:
        name: What the value is, as the message names it (``""``: the message starts at
            "must be", for argparse, which names the option itself).
        value: The value to check.
        low: Smallest allowed value.
        high: Largest allowed value (None: no upper bound).
        error: Raised for an int out of range, and for a non-int (then
            :class:`InputTypeError` when ``error`` is :class:`InputError`: a bad input's
            type is a TypeError too).

    Raises:
        The given ``error``, with a message naming the value and its bounds.
    """
    if high is not None:
        want = f"an int in {low}..{high}"
    elif low == 1:
        want = "a positive int"
    else:
        want = f"an int >= {low}"
    subject = f"{name} must be" if name else "must be"
    if isinstance(value, bool) or not isinstance(value, int):
        kind = InputTypeError if issubclass(InputTypeError, error) else error
        raise kind(f"{subject} {want}, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise error(f"{subject} {want}, got {value!r}")
    return value


def check_int_or_none(
    name: str,
    value: object,
    low: int = 1,
    high: int | None = None,
    *,
    error: type[Exception] = ConfigurationError,
) -> int | None:
    """:func:`check_int`, letting ``None`` (the default) through."""
    if value is None:
        return None
    return check_int(name, value, low, high, error=error)
