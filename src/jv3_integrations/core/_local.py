"""Placeholder: LocalProvider is being built (issue 3)."""

from __future__ import annotations

from typing import Any

from ._errors import ConfigurationError


class LocalProvider:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigurationError("LocalProvider is not available yet")
