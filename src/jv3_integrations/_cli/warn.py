"""Warnings of ``jv3`` to the user: one line each on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable

Warn = Callable[[str], None]


def stderr_warn(message: str) -> None:
    """Print a warning line on stderr."""
    print(f"jv3: warning: {message}", file=sys.stderr)
