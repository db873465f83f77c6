"""Optional dependencies: import them by name, or fail with the pip command that fixes it."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import missing_extra

__all__ = ["require"]


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(extra, package or module.split(".")[0]) from exc
