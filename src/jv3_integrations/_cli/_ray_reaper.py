"""The watchdog that makes a local Ray cluster die with the ``jv3`` process that started it.

``jv3 index --engine ray`` starts Ray on this machine (GCS, raylet, agents, workers). Ray ties
the GCS and the raylet to the driver's life, but not the raylet's children: after a
``kill -9`` of the driver, the dashboard agent, the runtime-env agent and idle workers lived
on. This process (``python -m jv3_integrations._cli._ray_reaper PARENT_PID TEMP_DIR``, started
by the CLI before ``ray.init(_temp_dir=TEMP_DIR)``, in its own session) waits until its stdin
reaches end of file, which happens when the CLI closes the pipe or dies in any way, then kills
every process of that cluster and removes ``TEMP_DIR``. It finds them two ways: the CLI's
descendants that belong to the cluster, seen while the CLI lived (polled; an entry is a pid
and its start time, so a reused pid is never killed), and any process with a file open under
``TEMP_DIR`` (Ray's workers and agents write their logs there; their command lines are
rewritten, so they cannot be matched by name). It never kills the CLI itself (which waits
for it on a clean exit). Linux only (``/proc``); elsewhere it only removes the folder.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time

_POLL_S = 0.2
#: How long the sweep keeps looking for stragglers after the CLI is gone.
_SWEEP_S = 5.0


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in {"Z", "X"}:  # a zombie has ended: nothing to kill
        return None
    return fields[19]  # field 22 of stat: the start time


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                out[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ray_descendants(root: int, folder: str) -> set[int]:
    """The CLI's descendants that belong to its Ray cluster: those whose command line names
    ``folder`` (GCS, raylet, dashboard, log monitor) and everything under them (the raylet's
    agents and workers). Other children of the CLI (a Milvus Lite server) are not Ray's."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [(root, False)]
    while todo:
        pid, under_ray = todo.pop()
        for child in children.get(pid, []):
            ray = under_ray or folder in _cmdline(child)
            if ray:
                found.add(child)
            todo.append((child, ray))
    return found


def _holding(folder: str) -> set[int]:
    """Processes with a file (log, socket) open under ``folder``."""
    prefix = folder.rstrip("/") + "/"
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                if os.readlink(f"/proc/{name}/fd/{fd}").startswith(prefix):
                    found.add(int(name))
                    break
        except OSError:
            continue
    return found


def _kill(pid: int, started: str | None, spare: int) -> bool:
    """SIGKILL ``pid`` unless it is us, ``spare`` (the CLI, which waits for us on a clean
    exit) or a new process under a reused pid."""
    if pid in {os.getpid(), spare} or (started is not None and _start_time(pid) != started):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    return True


def main(argv: list[str]) -> int:
    parent, folder = int(argv[0]), argv[1]
    linux = os.path.isdir("/proc/self/fd")
    seen: dict[int, str | None] = {}
    while True:  # until the CLI closes our stdin or dies (both: end of file)
        if linux:
            for pid in _ray_descendants(parent, folder) - {os.getpid()}:
                seen.setdefault(pid, _start_time(pid))
        ready, _, _ = select.select([sys.stdin], [], [], _POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break
    if linux:
        for pid, started in seen.items():
            _kill(pid, started, parent)
        deadline = time.monotonic() + _SWEEP_S
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            left = _holding(folder) - {os.getpid()}
            left |= {p for p, s in seen.items() if s is not None and _start_time(p) == s}
            killed = [p for p in left if _kill(p, None, parent)]
            quiet = 0 if killed else quiet + 1
            time.sleep(_POLL_S)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the CLI; we clean after it
    raise SystemExit(main(sys.argv[1:]))
