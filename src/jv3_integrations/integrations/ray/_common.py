"""What the two halves of the Ray integration share: the Ray import, retries, checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ...core._errors import (
    APIConnectionError,
    APITimeoutError,
    InputError,
    RateLimitError,
    ServerError,
    missing_extra,
)

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("ray", "ray[data]") from exc

#: Retries of a failed batch (transient API errors, a dead actor) and restarts of an actor.
DEFAULT_MAX_RETRIES = 3
#: Errors an embedding batch (or a write task) is retried on by Ray (after the provider's own).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RateLimitError,
    ServerError,
    APITimeoutError,
    APIConnectionError,
)

Vectors = npt.NDArray[np.float32]


def _ray() -> Any:
    return ray


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value
