"""The server's limits: their defaults, their allowed ranges, and the body memory budget.

One table (:data:`LIMITS`) gives every numeric limit of ``jv3 serve`` / :func:`.serve` /
:func:`.create_app` its default and its range, so the CLI, the Python API and the docs refuse
the same values with the same one-line message. Importing this module imports no server
dependency (``jv3 serve --help`` and the option checks stay light).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core._errors import ConfigurationError

__all__ = [
    "DEFAULT_BODY_BUDGET_BYTES",
    "LIMITS",
    "BodyBudget",
    "Limit",
    "add_limit_options",
    "check_api_key",
    "check_limit",
    "check_limits",
    "check_port",
    "options_from_args",
]

#: Request bodies held in memory at once, all connections together (bytes).
DEFAULT_BODY_BUDGET_BYTES = 256 * 1024 * 1024
MAX_API_KEY_CHARS = 1024


@dataclass(frozen=True)
class Limit:
    """One numeric limit: its option, default, range and whether it is a whole number."""

    name: str
    default: float
    low: float
    high: float
    integer: bool
    unit: str = ""
    help: str = ""

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.integer:
            return f"an integer in {int(self.low)}..{int(self.high)}{unit}"
        return f"a number of seconds in {self.low:g}..{self.high:g}"


_GIB = 1 << 30
LIMITS: dict[str, Limit] = {
    lim.name: lim
    for lim in (
        Limit(
            "max_body_bytes",
            64 * 1024 * 1024,
            128,
            4 * _GIB,
            True,
            "bytes",
            "largest request body; 413 past it",
        ),
        Limit(
            "body_budget_bytes",
            DEFAULT_BODY_BUDGET_BYTES,
            128,
            256 * _GIB,
            True,
            "bytes",
            "request bodies held at once, all connections together; 429 past it",
        ),
        Limit(
            "max_queue_requests",
            256,
            1,
            1_000_000,
            True,
            "",
            "requests queued or running at once; 429 past it",
        ),
        Limit(
            "max_queue_tokens",
            1_048_576,
            1,
            1 << 40,
            True,
            "",
            "tokens queued or running at once; 429 past it",
        ),
        Limit(
            "batch_tokens",
            16_384,
            1,
            1 << 24,
            True,
            "",
            "tokens per forward pass of the model",
        ),
        Limit(
            "max_connections",
            1024,
            1,
            1_000_000,
            True,
            "",
            "open connections; the oldest idle ones are closed past it",
        ),
        Limit(
            "timeout_keep_alive",
            5,
            1,
            3600,
            True,
            "seconds",
            "seconds an idle keep-alive connection stays open",
        ),
        Limit(
            "head_timeout",
            10.0,
            0.1,
            3600.0,
            False,
            "",
            "seconds to send a complete request head, else closed",
        ),
        Limit(
            "body_timeout",
            60.0,
            0.1,
            3600.0,
            False,
            "",
            "seconds to send the whole body; 408 past it",
        ),
        Limit(
            "request_timeout",
            60.0,
            1.0,
            3600.0,
            False,
            "",
            "seconds an admitted request may take in all; 503 past it",
        ),
    )
}


def check_limit(name: str, value: Any, *, option: bool = False) -> float:
    """Check one limit against its range; return it (an int for whole-number limits).

    Args:
        name: The limit's keyword (``head_timeout`` ...).
        value: A number, or (``option=True``) the text given on the command line.
        option: Name the command-line option (``--head-timeout``) in the message.

    Raises:
        ConfigurationError: not a finite number, not whole where it must be, or out of range.
    """
    lim = LIMITS[name]
    label = lim.option if option else name
    if isinstance(value, str) and option:  # command-line text
        text = value.strip()
        try:
            number: float = int(text) if lim.integer else float(text)
        except ValueError:
            raise ConfigurationError(f"{label} must be {lim.range_text()}, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{label} must be {lim.range_text()}, not {type(value).__name__}")
    else:
        number = value
    if lim.integer and not isinstance(number, int):
        if not (math.isfinite(number) and number == int(number)):
            raise ConfigurationError(f"{label} must be {lim.range_text()}, got {value!r}")
        number = int(number)
    if not math.isfinite(number) or not lim.low <= number <= lim.high:
        raise ConfigurationError(f"{label} must be {lim.range_text()}, got {value!r}")
    return number if lim.integer else float(number)


def check_limits(values: Mapping[str, Any], *, option: bool = False) -> dict[str, Any]:
    """Check every limit in ``values`` (others are passed through) and how they relate.

    Raises:
        ConfigurationError: a limit out of its range, or a body limit over the body budget.
    """
    out = dict(values)
    for name, value in values.items():
        if name in LIMITS and value is not None:
            out[name] = check_limit(name, value, option=option)
    body = out.get("max_body_bytes", LIMITS["max_body_bytes"].default)
    budget = out.get("body_budget_bytes", LIMITS["body_budget_bytes"].default)
    if body is not None and budget is not None and body > budget:
        name = "--max-body-bytes" if option else "max_body_bytes"
        other = "--body-budget-bytes" if option else "body_budget_bytes"
        raise ConfigurationError(
            f"{name} ({int(body)}) is larger than {other} ({int(budget)}): such a body could "
            f"never be admitted; raise {other} or lower {name}"
        )
    return out


def check_port(value: Any, *, option: bool = False) -> int:
    """A TCP port to listen on: an integer in 1..65535.

    Raises:
        ConfigurationError: anything else (0 is refused: nobody could know the port picked).
    """
    label = "--port" if option else "port"
    try:
        port = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        port = None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigurationError(f"{label} must be an integer in 1..65535, got {value!r}")
    return port


def check_api_key(key: str, *, source: str = "api_key") -> str:
    """A server key a client can send in an ``Authorization`` header: printable ASCII.

    Returns the key without surrounding whitespace. The message never repeats the key.

    Raises:
        ConfigurationError: empty, longer than 1024 characters, or holding a space, a
            control character or a non-ASCII character (no HTTP client sends those).
    """
    stripped = key.strip()
    if not stripped:
        raise ConfigurationError(f"{source} is empty; pass a real key or none")
    if len(stripped) > MAX_API_KEY_CHARS:
        raise ConfigurationError(
            f"{source} is {len(stripped)} characters long; the limit is {MAX_API_KEY_CHARS}"
        )
    for i, ch in enumerate(stripped):
        if not "!" <= ch <= "~":
            what = (
                "a space"
                if ch == " "
                else (
                    "a control character"
                    if ord(ch) < 32 or ord(ch) == 127
                    else "a non-ASCII character"
                )
            )
            raise ConfigurationError(
                f"{source} holds {what} at position {i}: a key must be printable ASCII "
                "(characters 33..126), which every HTTP client can send in a header"
            )
    return stripped


def add_limit_options(group: Any) -> None:
    """Add every limit as an option of ``jv3 serve`` (``group``: an argparse group).

    The values stay text: :func:`options_from_args` checks them, so a bad one is refused in
    one line naming the option and its range.
    """
    for lim in LIMITS.values():
        default = f"{int(lim.default)}" if lim.integer else f"{lim.default:g}"
        group.add_argument(
            lim.option,
            dest=lim.name,
            default=None,
            metavar="N" if lim.integer and lim.unit != "seconds" else "S",
            help=f"{lim.help} (default {default}; {lim.range_text()})",
        )


def options_from_args(args: Any) -> tuple[int, dict[str, Any]]:
    """The port and the limits given to ``jv3 serve``, each checked against its range.

    The key (``--api-key``, else ``$JV3_SERVER_API_KEY``) is checked too.

    Raises:
        ConfigurationError: one line naming the first bad option and its range.
    """
    port = check_port(args.port, option=True)
    given = {name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None}
    limits = check_limits(given, option=True)
    if args.api_key is not None:
        check_api_key(args.api_key, source="--api-key")
    elif os.environ.get("JV3_SERVER_API_KEY", "").strip():
        check_api_key(os.environ["JV3_SERVER_API_KEY"], source="JV3_SERVER_API_KEY")
    return port, limits


class BodyBudget:
    """Bytes of request bodies held at once, all connections together.

    A request takes its declared size (``Content-Length``) before its body is read, or, for a
    chunked body, each chunk before it is kept; it gives everything back once answered. A
    request that cannot take what it needs is answered 429 at once.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.peak = 0  # for tests and metrics

    @property
    def free(self) -> int:
        return self.total - self.used

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (nothing reserved) when they do not fit."""
        if n > self.total - self.used:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give(self, n: int) -> None:
        """Return ``n`` reserved bytes."""
        self.used -= n
