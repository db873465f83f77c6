"""docs/server.md lists every ``jv3 serve`` limit with the default and range the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from jv3_integrations.server._limits import LIMITS

DOC = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def _rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(--[a-z-]+)`\s*\|([^|]*)\|([^|]*)\|", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def test_every_limit_is_documented_with_its_default_and_range() -> None:
    rows = _rows()
    for lim in LIMITS.values():
        assert lim.option in rows, f"{lim.option} is missing from docs/server.md"
        default, limits = rows[lim.option]
        shown = f"{int(lim.default)}" if lim.integer else f"{lim.default:g}"
        assert default.split()[0] == shown, (lim.option, default)
        low = f"{int(lim.low)}" if lim.integer else f"{lim.low:g}"
        high = f"{int(lim.high)}" if lim.integer else f"{lim.high:g}"
        assert limits.startswith(f"{low}..{high}"), (lim.option, limits)
    assert rows["--port"] == ("8080", "1..65535")
