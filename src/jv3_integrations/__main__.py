"""``python -m jv3_integrations``: the same as the ``jv3`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
