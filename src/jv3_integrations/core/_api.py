"""Placeholder: JinaAPIProvider is being built (issue 4)."""

from __future__ import annotations

from typing import Any

from ._errors import ConfigurationError


class JinaAPIProvider:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigurationError("JinaAPIProvider is not available yet")
