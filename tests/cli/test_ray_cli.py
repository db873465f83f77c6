"""``jv3 index --engine ray`` as a user runs it: a local Ray that ends with the command (even
after ``kill -9``), quiet stderr unless ``JV3_DEBUG``, start-up failures in one line.

Each test runs the real ``jv3`` in a subprocess that starts its own local Ray (slow: Ray takes
10-40 s to start on a loaded 2-core machine).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="walks /proc"),
]

RUN_TIMEOUT_S = 300
#: How long the cluster may outlive a kill -9 of the command (the issue: > 60 s, forever).
GONE_WITHIN_S = 30


def _start_time(pid: int) -> str | None:
    """The process's start time (None once it ended or is a zombie): pid reuse safe."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in {"Z", "X"} else fields[19]


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(
                    (entry / "stat").read_text(errors="replace").rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _jv3(*args: str) -> list[str]:
    return [sys.executable, "-m", "jv3_integrations.cli", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JV3_DEBUG", "RAY_ADDRESS"}}
    src = Path(__file__).resolve().parents[2] / "src"
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    return env | extra


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(4):
        sentences = [f"File {i}, sentence {j}: tides follow the moon." for j in range(30)]
        (folder / f"f{i}.txt").write_text(" ".join(sentences), encoding="utf-8")
    return folder


def _index(docs: Path, store: Path, conformance_dir: Path, *extra: str) -> list[str]:
    return _jv3(
        "index",
        str(docs),
        "--store",
        f"qdrant:{store}",
        "--provider",
        f"local:{conformance_dir}",
        "--chunker",
        "sentences:200",
        "--no-progress",
        "--engine",
        "ray",
        *extra,
    )


def _alive(procs: dict[int, str | None]) -> dict[int, str | None]:
    return {p: s for p, s in procs.items() if s is not None and _start_time(p) == s}


def _kill_all(procs: dict[int, str | None]) -> None:
    for pid in _alive(procs):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tracked() -> Iterator[dict[int, str | None]]:
    """Processes a test saw under its ``jv3``; whatever is left is killed after the test."""
    procs: dict[int, str | None] = {}
    yield procs
    _kill_all(procs)


def _watch(proc: subprocess.Popen[bytes], procs: dict[int, str | None]) -> None:
    for pid in _descendants(proc.pid):
        procs.setdefault(pid, _start_time(pid))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _reaper_folder(cmdline: str) -> str:
    match = re.search(r"_ray_reaper \d+ (\S+)", cmdline)
    return match.group(1) if match else ""


def test_late_chunking_run_is_quiet_and_leaves_nothing(
    docs: Path, tmp_path: Path, conformance_dir: Path, tracked: dict[int, str | None]
) -> None:
    # --workers 2 on a 2-core machine is the plan that hung (issue 26); here it must finish
    proc = subprocess.Popen(
        _index(docs, tmp_path / "store", conformance_dir, "--workers", "2", "--late-chunking"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    folders: set[str] = set()
    while proc.poll() is None and time.monotonic() < deadline:
        _watch(proc, tracked)
        folders |= {f for p in _alive(tracked) if (f := _reaper_folder(_cmdline(p)))}
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "Indexed 4 files" in out.decode()
    # no Ray log lines, warnings or progress on stderr without JV3_DEBUG
    assert err.decode().strip() == ""
    assert len(tracked) >= 3, tracked  # Ray ran under it (GCS, raylet, workers, watchdog)
    # a clean exit leaves no process and no temp folder of its cluster
    assert not _alive(tracked), [_cmdline(p) for p in _alive(tracked)]
    assert folders and not any(Path(f).exists() for f in folders), folders


def test_kill_9_takes_the_local_cluster_with_it(
    docs: Path, tmp_path: Path, conformance_dir: Path, tracked: dict[int, str | None]
) -> None:
    proc = subprocess.Popen(
        _index(docs, tmp_path / "store", conformance_dir, "--workers", "2"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = ""
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        workers = 0
        while time.monotonic() < deadline and proc.poll() is None:
            _watch(proc, tracked)
            names = [_cmdline(p) for p in _alive(tracked)]
            for name in names:
                folder = _reaper_folder(name) or folder
            workers = sum(n.startswith("ray::") for n in names)
            if workers >= 2:  # the agents and a worker or an actor are up: mid-run
                break
            time.sleep(0.2)
        assert proc.poll() is None, "jv3 ended before the test could kill it"
        assert workers >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        end = time.monotonic() + GONE_WITHIN_S
        while _alive(tracked) and time.monotonic() < end:
            time.sleep(0.5)
        left = [_cmdline(p) or str(p) for p in _alive(tracked)]
        assert not left, f"{len(left)} Ray processes outlived jv3 by {GONE_WITHIN_S} s: {left}"
        assert folder and not Path(folder).exists(), folder
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_start_up_failure_is_one_line(tmp_path: Path, docs: Path, conformance_dir: Path) -> None:
    args = _index(docs, tmp_path / "store", conformance_dir, "--ray-address", "not an address")
    done = subprocess.run(args, env=_env(), capture_output=True, timeout=RUN_TIMEOUT_S)
    err = done.stderr.decode()
    assert done.returncode == 1
    assert err.startswith("jv3: error: cannot reach the Ray cluster at 'not an address'"), err
    assert "--ray-address" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    # JV3_DEBUG keeps the whole story
    debug = subprocess.run(
        args, env=_env(JV3_DEBUG="1"), capture_output=True, timeout=RUN_TIMEOUT_S
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr.decode()


def test_local_start_up_failure_is_one_line_and_leaves_nothing(
    tmp_path: Path, docs: Path, conformance_dir: Path
) -> None:
    # a real local start-up failure: Ray refuses an object store below its minimum (75 MiB).
    # Not one larger than the machine: Ray caps it at /dev/shm's size, so whether that fails
    # depended on how much memory was in use at the time (it passed in CI, failed on an idle
    # machine).
    before = set(Path("/tmp").glob("jv3-ray-*"))
    done = subprocess.run(
        _index(docs, tmp_path / "store", conformance_dir),
        env=_env(RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION="0"),
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.startswith("jv3: error: Ray could not start on this machine (ValueError: "), err
    assert "free memory" in err and "JV3_DEBUG=1" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert set(Path("/tmp").glob("jv3-ray-*")) <= before  # the watchdog removed its folder
