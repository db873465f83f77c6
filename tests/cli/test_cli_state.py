"""``jv3 index`` state under a careless operator: concurrent runs, lost stores, corrupt state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jv3_integrations import LocalProvider
from jv3_integrations._cli.indexer import IndexOptions, run_index
from jv3_integrations._cli.state import StateFile
from jv3_integrations._cli.uri import parse_store_uri
from jv3_integrations.cli import main
from jv3_integrations.core import ConfigurationError, Embeddings, EmbedRequest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files(folder: Path, prefix: str, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"{prefix}{i}.txt").write_text(f"{prefix} document number {i}. " * 3)
    return folder


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str) -> str:
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("jv3: error: "), err
    return lines[0]


class GatedModel(LocalProvider):
    """The local model; its second forward pass waits until ``go`` is set (a run held mid-way)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.go = threading.Event()
        self.held = threading.Event()
        self.calls = 0

    def _embed(self, request: EmbedRequest) -> Embeddings:
        self.calls += 1
        if self.calls == 2:
            self.held.set()
            self.go.wait(30)
        return super()._embed(request)


# -- 13. two runs on one store take turns ------------------------------------------------------


def test_two_concurrent_index_runs_lose_no_state(tmp_path: Path, conformance_dir: Path) -> None:
    a = _files(tmp_path / "a", "alpha", 20)  # 2 batches of 16 files: the second one is held
    b = _files(tmp_path / "b", "beta", 5)
    store = f"milvus:{tmp_path / 'jv3.db'}"
    slow, other = GatedModel(str(conformance_dir)), LocalProvider(str(conformance_dir))
    results: dict[str, object] = {}

    def index(name: str, folder: Path, provider: LocalProvider) -> None:
        try:
            results[name] = run_index(
                IndexOptions([str(folder)], store, progress=False, provider_instance=provider),
                lambda m: None,
            )
        except Exception as exc:  # reported by the assertion below
            results[name] = exc

    first = threading.Thread(target=index, args=("a", a, slow))
    first.start()
    assert slow.held.wait(60), "the first run never reached its second batch"
    second = threading.Thread(target=index, args=("b", b, other))
    second.start()
    second.join(timeout=3)  # before the fix it finished here, its state soon overwritten
    slow.go.set()
    first.join(timeout=120)
    second.join(timeout=120)
    slow.close()
    other.close()
    assert not isinstance(results["a"], Exception), results["a"]
    assert not isinstance(results["b"], Exception), results["b"]
    state = StateFile(parse_store_uri(store).state_path()).collection("jv3")
    assert len(state.files) == 25, sorted(Path(k).name for k in state.files)
    ids = [i for e in state.files.values() for i in e.ids]
    report = results["a"] if results["a"].chunks_total > results["b"].chunks_total else results["b"]  # type: ignore[union-attr]
    assert report.chunks_total == len(ids)  # type: ignore[union-attr]


def test_two_index_processes_racing_keep_every_file(tmp_path: Path, conformance_dir: Path) -> None:
    folders = [_files(tmp_path / f"d{i}", f"doc{i}-", 12) for i in range(2)]
    store = f"milvus:{tmp_path / 'race.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    env.pop("JV3_PROVIDER", None)
    cmd = [sys.executable, "-m", "jv3_integrations", "index", "--store", store]
    cmd += ["--provider", f"local:{conformance_dir}", "--no-progress", "--json"]
    procs = [
        subprocess.Popen([*cmd, str(f)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for f in folders
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()
    state = StateFile(parse_store_uri(store).state_path()).collection("jv3")
    assert len(state.files) == 24
    last = max(json.loads(out)["chunks_total"] for out, _ in outs)
    assert last == sum(len(e.ids) for e in state.files.values())


# -- 14. a lost store behind a valid state is said, not "No results." --------------------------


def _jv3(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JINA_API_KEY", "JV3_PROVIDER"}}
    env.update({"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "JV3_STORE": ""})
    return subprocess.run(
        [sys.executable, "-m", "jv3_integrations", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_search_on_a_lost_store_says_how_to_rebuild(
    damage: str, tmp_path: Path, conformance_dir: Path
) -> None:
    # separate processes, as a user runs them (Milvus Lite keeps an open store in memory)
    _files(tmp_path / "docs", "paella", 3)
    store = ["--store", "milvus:./jv3.db"]
    provider = ["--provider", f"local:{conformance_dir}"]
    done = _jv3(tmp_path, "index", "docs", *store, "--no-progress", *provider)
    assert done.returncode == 0, done.stderr
    db = tmp_path / "jv3.db"
    if damage == "missing":
        shutil.rmtree(db) if db.is_dir() else db.unlink()
    else:  # every file of the store overwritten with garbage
        for f in [db] if db.is_file() else [f for f in db.rglob("*") if f.is_file()]:
            f.write_bytes(b"\x00garbage" * 1000)
    found = _jv3(tmp_path, "search", "paella", *store)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "No results" not in found.stdout
    errors = [line for line in found.stderr.splitlines() if line.startswith("jv3: error:")]
    assert errors and "jv3 index --rebuild" in errors[-1], found.stderr
    assert "3 indexed files" in errors[-1] or damage == "corrupt", found.stderr
    # (pymilvus itself logs a traceback for a corrupt schema file before it raises)
    assert "Traceback" not in found.stderr or damage == "corrupt"
    # and the advice works
    rebuilt = _jv3(
        tmp_path, "index", "docs", *store, "--rebuild", "--no-progress", "--json", *provider
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["files_embedded"] == 3
    found = _jv3(tmp_path, "search", "paella", *store)
    assert found.returncode == 0 and "paella" in found.stdout, found.stderr


# -- 15. a corrupt state file is one line with the fix ----------------------------------------


@pytest.mark.parametrize("command", ["index", "search"])
def test_corrupt_state_is_one_line_with_the_fix(
    command: str, capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    _files(clean_env / "docs", "tide", 2)
    provider = ["--provider", f"local:{conformance_dir}"]
    code, _, err = _run(
        capsys, "index", "docs", "--store", "qdrant:./q", "--no-progress", *provider
    )
    assert code == 0, err
    state = parse_store_uri("qdrant:./q").state_path()
    assert state is not None
    state.write_text('{"version": 1, "collections": {"jv3": {"files": [tru')
    args = ["docs"] if command == "index" else ["tide"]
    code, _, err = _run(capsys, command, *args, "--store", "qdrant:./q", *provider)
    line = _one_line(code, err)
    assert "unreadable" in line and "jv3 index --rebuild" in line, line
    code, out, err = _run(
        capsys,
        "index",
        "docs",
        "--store",
        "qdrant:./q",
        "--rebuild",
        "--no-progress",
        "--json",
        *provider,
    )
    assert code == 0, err
    assert json.loads(out)["files_embedded"] == 2
    assert json.loads(state.read_text())["version"] == 1


def test_a_waiting_run_says_so(tmp_path: Path) -> None:
    from jv3_integrations._cli.state import store_lock

    path = tmp_path / "s.jv3-state.json"
    said: list[str] = []
    with store_lock(path):
        started = time.perf_counter()
        with (
            pytest.raises(ConfigurationError, match="held the store's lock"),
            store_lock(path, timeout=0.3, on_wait=lambda: said.append("waiting")),
        ):
            pass
        assert time.perf_counter() - started < 3
    assert said == ["waiting"]
    with store_lock(path, timeout=0.3):  # released: free again
        pass
