"""Every code block of README.md runs (issue 17): ```python blocks in-process, ```bash blocks
in a shell, offline, against the conformance model and our own Jina server.

How a block meets the test machine (each rule is listed here so nothing is hidden):

* Models: ``jinaai/jina-embeddings-v3`` becomes the conformance checkpoint, and every
  ``dimensions=N`` / ``small_dimensions=N`` is divided by 8 (1024 -> 128, its full size).
* Jina's API (``"api"``, ``JinaAPIProvider()``): our server (``tests/support/server.py``) on
  the conformance model, with ``JINA_API_KEY`` set to its key; Pinecone: the loopback server
  of ``tests/support/pinecone_server.py`` through ``PINECONE_API_KEY`` /
  ``PINECONE_CONTROLLER_HOST``.
* ``load_provider()`` with no argument follows ``$JV3_PROVIDER``: a block using it runs twice,
  once with the local model and once with the server ("same call" must hold for both).
* bash: ``pip install`` commands are not run (the project is already installed; the first-run
  test in tests/test_first_run.py covers the README's first command), ``jv3`` is
  ``python -m jv3_integrations``, and the block runs in a fresh folder holding ``docs/``.
* A block preceded by ``<!-- skip-test: reason -->`` (a GPU, a cloud key, a server that never
  exits) is not run; :data:`EXPECTED_SKIPS` lists them, so a new skip fails this test until it
  is listed too. Blocks added by other sections need nothing else: they run like these.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import jv3_integrations
from tests.conftest import CONFORMANCE_DIR, ROOT, SERVER_API_KEY

pytestmark = pytest.mark.slow

README = ROOT / "README.md"

#: Blocks deliberately not run, by the first words of their skip reason.
EXPECTED_SKIPS = {
    "runs the whole test suite",
    "starts a long-running server",
    "needs a Ray cluster",
    "needs a running jv3 serve",
}

_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"<!--\s*skip-test:\s*(.+?)\s*-->")
_DIMS = re.compile(r"\b((?:small_)?dimensions=)(\d+)")


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.lang}-line{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with their language and skip marker (if any)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        skip = None
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (sm := _SKIP.search(lines[k])):
            skip = sm.group(1)
        blocks.append(Block(lang, start + 1, "\n".join(lines[start + 1 : j]), skip))
        i = j + 1
    return blocks


BLOCKS = [
    b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.lang in {"python", "bash"}
]


def _scaled(code: str, conformance: Path) -> str:
    code = re.sub(r"(?<![\w/.-])tests/data/tiny-v3", str(conformance), code)
    code = code.replace("jinaai/jina-embeddings-v3", str(conformance))
    return _DIMS.sub(lambda m: f"{m.group(1)}{max(1, int(m.group(2)) // 8)}", code)


def test_readme_has_blocks_and_every_skip_is_listed() -> None:
    python = [b for b in BLOCKS if b.lang == "python"]
    assert len(python) >= 8
    # one runnable snippet per host (issue 27): each host's module appears in a python block
    for module in (
        "jv3_integrations.qdrant",
        "jv3_integrations.milvus",
        "jv3_integrations.pinecone",
        "haystack_integrations.components.embedders.jina_v3",
        "jv3_integrations.llama_index",
        "jv3_integrations.langchain",
    ):
        assert any(f"from {module} import" in b.code and not b.skip for b in python), module
    assert any(b.code.lstrip().startswith("jv3 ") and not b.skip for b in BLOCKS), "a jv3 block"
    skipped = {b.skip for b in BLOCKS if b.skip}
    listed = {s for s in skipped if any(s.startswith(e) for e in EXPECTED_SKIPS)}
    assert skipped == listed, f"unlisted skip-test markers: {sorted(skipped - listed)}"


def test_block_parser_reads_markers() -> None:
    text = "x\n<!-- skip-test: needs a GPU -->\n\n```python\nprint(1)\n```\n```bash\nls\n```\n"
    a, b = readme_blocks(text)
    assert (a.lang, a.code, a.skip, a.line) == ("python", "print(1)", "needs a GPU", 4)
    assert (b.lang, b.code, b.skip) == ("bash", "ls", None)


@pytest.fixture(scope="module")
def pinecone_srv() -> Iterator[Any]:
    from tests.support.pinecone_server import running_pinecone

    with running_pinecone() as srv:
        yield srv
        assert srv.schema_errors == []


@pytest.fixture
def readme_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    jina_server_url: str,
    pinecone_srv: Any,
) -> Path:
    """The environment of a reader who has a key for everything, pointed at local servers."""
    from jv3_integrations.core._api import JinaAPIProvider

    for name in ("JV3_STORE", "JV3_DEBUG", "JV3_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JINA_API_KEY", SERVER_API_KEY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_srv.state.api_key)
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", pinecone_srv.base_url)
    # The reader downloaded the model's tokenizer.json once (README "Hybrid search"): here the
    # conformance model's, the one our server runs.
    monkeypatch.setenv("JV3_TOKENIZER", str(CONFORMANCE_DIR / "tokenizer.json"))
    # Jina's API is our server on the conformance model (128 dimensions at most).
    defaults = dict(JinaAPIProvider.__init__.__kwdefaults__ or {})
    defaults.update(base_url=jina_server_url, max_dimensions=128)
    monkeypatch.setattr(JinaAPIProvider.__init__, "__kwdefaults__", defaults)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "kuendigen.md").write_text(
        "# Abo kündigen\n\nSo kündigen Sie Ihr Abo: Einstellungen, dann Abo beenden.\n",
        encoding="utf-8",
    )
    return tmp_path


def exec_python_block(
    code: str,
    filename: str,
    conformance_dir: Path,
    jina_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run one python block (already scaled) in-process, twice if it uses ``load_provider()``."""
    providers = [f"local:{conformance_dir}"]
    if "load_provider()" in code:
        providers.append(jina_server_url)
    for spec in providers:
        monkeypatch.setenv("JV3_PROVIDER", spec)
        namespace: dict[str, Any] = {"__name__": "__readme__"}
        try:
            exec(compile(code, filename, "exec"), namespace)
        finally:
            for value in namespace.values():  # release Milvus Lite / Qdrant local locks
                client = getattr(value, "client", None)
                if hasattr(client, "close") and not hasattr(client, "__aenter__"):
                    with contextlib.suppress(Exception):
                        client.close()


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_runs(
    block: Block,
    readme_env: Path,
    conformance_dir: Path,
    jina_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if block.skip:
        pytest.skip(f"README marks it: {block.skip}")
    code = _scaled(block.code, conformance_dir)
    exec_python_block(
        code, f"README.md:{block.line}", conformance_dir, jina_server_url, monkeypatch
    )
    capsys.readouterr()


def _bash_commands(code: str) -> list[str]:
    """The commands of a bash block, ``pip install`` dropped, ``jv3`` as this interpreter."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    out: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            part = part.strip()
            if re.match(r"^(python3? -m )?pip install\b", part):
                continue
            part = re.sub(
                r"(^|\s)jv3(\s)",
                rf"\1{shlex.quote(sys.executable)} -m jv3_integrations\2",
                part,
                count=1,
            )
            out.append(part)
    return out


def test_bash_command_extraction() -> None:
    cmds = _bash_commands("pip install x   # y\njv3 demo  # z\njv3 index \\\n  ./docs\n")
    exe = shlex.quote(sys.executable)
    assert cmds == [
        f"{exe} -m jv3_integrations demo  # z",
        f"{exe} -m jv3_integrations index ./docs",
    ]


def run_bash_block(code: str, where: str, cwd: Path, conformance_dir: Path) -> None:
    """Run each command of one bash block (already scaled) in ``cwd``; each must exit 0."""
    env = dict(os.environ)
    env["JV3_PROVIDER"] = f"local:{conformance_dir}"
    # the package this test imported (the checkout's src/, or the installed wheel under tox)
    here = str(Path(jv3_integrations.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    commands = _bash_commands(code)
    assert commands, f"{where} has nothing to run"
    for command in commands:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "bash"], ids=lambda b: b.id)
def test_bash_block_runs(block: Block, readme_env: Path, conformance_dir: Path) -> None:
    if block.skip:
        pytest.skip(f"README marks it: {block.skip}")
    code = _scaled(block.code, conformance_dir)
    run_bash_block(code, f"README block at line {block.line}", readme_env, conformance_dir)


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_install_from_a_checkout_keeps_the_extras_table() -> None:
    """Item 14: not on PyPI yet; every extra of pyproject.toml still has its row."""
    import tomllib

    text = README.read_text(encoding="utf-8")
    install = _section(text, "Install")
    assert "not on PyPI yet" in install and "from a checkout" in install
    assert "git+https://github.com/jv3-integrations/jv3-integrations" in install
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    # every extra has its row (issue 27: pdf, test and bench were missing; html was unused)
    assert {"local", "server", "qdrant", "milvus", "pinecone", "haystack", "all"} <= set(extras)
    for extra in extras:
        assert f"pip install -e '.[{extra}]'" in install, extra
    assert "html" not in extras
    assert (
        "pip install jv3-integrations\n" not in text
        and "`pip install jv3-integrations`" not in text
    )


def test_readme_states_the_weights_licence_where_the_model_runs() -> None:
    """Item 15: CC BY-NC 4.0 where the local model and `jv3 serve` are described."""
    text = README.read_text(encoding="utf-8")
    for title in ("Local model", "Self-hosted server"):
        section = _section(text, title)
        assert "CC BY-NC 4.0" in section and "Apache-2.0" in section, title
