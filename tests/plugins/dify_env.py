"""A Python >= 3.12 with the Dify plugin SDK, for the plugin's tests (the SDK >= 0.9 needs 3.12).

The test suite runs on 3.11; the plugin runs where Dify runs it, on 3.12. So its tests drive it
in a subprocess: ``$JV3_DIFY_PYTHON`` if set, else a venv built once in ``.venv-dify/`` at the
repository root from the first Python >= 3.12 found (on PATH or under pyenv) with the pins of
``constraints/dify.txt``. jv3-integrations itself is not installed there: the subprocess imports
the very package the tests import (a link to it on ``PYTHONPATH``).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "constraints" / "dify.txt"
VENV = ROOT / ".venv-dify"


def _is_312(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_python312() -> str | None:
    """The first interpreter >= 3.12, 3.12 first (what the manifest's runner names): on PATH,
    then pyenv's installs."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which("python3.12")]
    candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python3"), reverse=True)
    candidates += [shutil.which("python3.13")]
    candidates += sorted(glob.glob(f"{root}/versions/3.1[3-9]*/bin/python3"), reverse=True)
    return next((c for c in candidates if c and _is_312(c)), None)


def dify_python() -> str | None:
    """A Python with the pinned SDK (built on first use; None if no Python >= 3.12 exists)."""
    given = os.environ.get("JV3_DIFY_PYTHON")
    if given:
        return given
    python = VENV / "bin" / "python"
    stamp = VENV / "pins.sha256"
    want = hashlib.sha256(PINS.read_bytes()).hexdigest()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".venv-dify.lock", "w") as lock:  # pytest-xdist workers build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text().split(" ")[0] == want:
            return str(python)
        base = find_python312()
        if base is None:
            return None
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(PINS)],
            check=True,
            env=env,
            stdout=sys.stderr,
        )
        want = f"{want} {base}"
        stamp.write_text(want)
    return str(python)
