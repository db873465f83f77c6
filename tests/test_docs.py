"""Every ```python / ```bash block of docs/**/*.md runs (issue 27), exactly as the README's
blocks do (tests/test_readme.py: the same parser, model scaling, local servers and rules), and
the site builds with ``mkdocs build --strict``.

A block preceded by ``<!-- skip-test: reason -->`` is not run; :data:`EXPECTED_SKIPS` lists
each one by page and the first words of its reason, so a new skip fails this test until it is
listed here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_readme as _readme
from tests.conftest import ROOT
from tests.test_readme import Block, _scaled, exec_python_block, readme_blocks, run_bash_block

# the README's fixtures, by name: a reader with a key for everything, pointed at local servers
readme_env = _readme.readme_env
pinecone_srv = _readme.pinecone_srv

pytestmark = pytest.mark.slow

DOCS = ROOT / "docs"

#: (page, first words of the reason) of every block the docs deliberately do not run.
EXPECTED_SKIPS = {
    ("index.md", "installs the package"),
    ("troubleshooting.md", "downloads the full model"),
    ("container.md", "needs Docker"),
    ("container.md", "needs Docker and the Hugging Face Hub"),
    ("ray.md", "needs a Ray cluster"),
    ("openai-compatible.md", "starts a long-running server"),
    ("openai-compatible.md", "needs a running jv3 serve"),
    ("openai-compatible.md", "needs litellm"),
    ("dify.md", "runs in a checkout"),
    ("dify.md", "starts a long-running server"),
    ("server.md", "starts a long-running server"),
    ("server.md", "a load benchmark"),
    ("stores.md", "needs a Qdrant server"),
    ("api-client.md", "a benchmark run"),
    ("local-model.md", "changes the process-wide thread count"),
    ("local-model.md", "builds a full-width checkpoint"),
}


def _page_blocks() -> list[tuple[str, Block]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        rel = page.relative_to(DOCS).as_posix()
        for block in readme_blocks(page.read_text(encoding="utf-8")):
            if block.lang in {"python", "bash"}:
                out.append((rel, block))
    return out


BLOCKS = _page_blocks()


def _id(item: tuple[str, Block]) -> str:
    return f"{item[0]}:{item[1].lang}-line{item[1].line}"


def test_docs_have_blocks_and_every_skip_is_listed() -> None:
    pages = {page for page, _ in BLOCKS}
    for page in ("cli.md", "late-chunking.md", "hybrid-search.md", "hosts/qdrant.md"):
        assert page in pages, f"docs/{page} has no runnable block"
    skipped = {(page, b.skip) for page, b in BLOCKS if b.skip}
    unlisted = {
        (page, skip)
        for page, skip in skipped
        if not any(page == p and skip.startswith(r) for p, r in EXPECTED_SKIPS)
    }
    assert not unlisted, f"unlisted skip-test markers: {sorted(unlisted)}"


@pytest.mark.parametrize("item", [i for i in BLOCKS if i[1].lang == "python"], ids=_id)
def test_docs_python_block_runs(
    item: tuple[str, Block],
    readme_env: Path,
    conformance_dir: Path,
    jina_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page, block = item
    if block.skip:
        pytest.skip(f"docs/{page} marks it: {block.skip}")
    code = _scaled(block.code, conformance_dir)
    exec_python_block(
        code, f"docs/{page}:{block.line}", conformance_dir, jina_server_url, monkeypatch
    )
    capsys.readouterr()


@pytest.mark.parametrize("item", [i for i in BLOCKS if i[1].lang == "bash"], ids=_id)
def test_docs_bash_block_runs(
    item: tuple[str, Block], readme_env: Path, conformance_dir: Path
) -> None:
    page, block = item
    if block.skip:
        pytest.skip(f"docs/{page} marks it: {block.skip}")
    code = _scaled(block.code, conformance_dir)
    run_bash_block(code, f"docs/{page}:{block.line}", readme_env, conformance_dir)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with no warning (broken links and anchors fail): CI runs it too."""
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]')")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
    shutil.rmtree(tmp_path / "site")
