"""Shared fixtures: where ../shared lives, the conformance checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("JV3_SHARED", ROOT.parent / "shared")).resolve()
CONFORMANCE_DIR = SHARED / "conformance" / "tiny-v3"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set JV3_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def conformance_dir(shared_dir: Path) -> Path:
    return CONFORMANCE_DIR
