"""Every script in ``examples/`` runs, offline, against the tiny model (and one against our server).

Scripts take ``--provider`` (and ``$JV3_PROVIDER``). A script that talks to Pinecone gets the
loopback Pinecone from ``tests/support`` through ``PINECONE_API_KEY`` / ``PINECONE_HOST``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SERVER_API_KEY

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


@contextmanager
def _pinecone_env(source: str) -> Iterator[dict[str, str]]:
    if "pinecone" not in source.lower():
        yield {}
        return
    from tests.support.pinecone_server import running_pinecone

    with running_pinecone() as srv:
        yield {
            "PINECONE_API_KEY": srv.state.api_key,
            "PINECONE_HOST": srv.base_url,
            "PINECONE_CONTROLLER_HOST": srv.base_url,
        }


def _run(script: Path, provider: str, extra_env: dict[str, str], cwd: Path) -> str:
    source = script.read_text(encoding="utf-8")
    args = [sys.executable, str(script), "--provider", provider]
    if "--no-progress" in source:
        args.append("--no-progress")
    env = {k: v for k, v in os.environ.items() if k != "JINA_API_KEY"}
    env.update(
        {
            "JV3_PROVIDER": provider,
            "HAYSTACK_TELEMETRY_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "NO_COLOR": "1",
            "PYTHONPATH": os.pathsep.join([str(EXAMPLES.parent), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
        }
    )
    env.update(extra_env)
    with _pinecone_env(source) as pc_env:
        env.update(pc_env)
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{script.name} failed (rc={proc.returncode})\n{proc.stdout}\n{proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    return proc.stdout


def test_examples_folder_is_not_empty() -> None:
    assert SCRIPTS, f"no example scripts in {EXAMPLES}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs_on_the_tiny_model(
    script: Path, conformance_dir: Path, tmp_path: Path
) -> None:
    _run(script, f"local:{conformance_dir}", {}, tmp_path)


def test_an_example_runs_against_our_server(jina_server_url: str, tmp_path: Path) -> None:
    script = next((s for s in SCRIPTS if s.stem == "langchain_rag"), SCRIPTS[0])
    _run(script, jina_server_url, {"JINA_API_KEY": SERVER_API_KEY}, tmp_path)
