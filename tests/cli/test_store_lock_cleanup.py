"""The store's lock file is removed when a run lets go of it, and waiters stay exclusive."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from jv3_integrations._cli.state import store_lock

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock locks are POSIX only")


def test_no_lock_file_is_left_behind(tmp_path: Path) -> None:
    state = tmp_path / "store.jv3-state.json"
    with store_lock(state):
        assert (tmp_path / "store.jv3-state.json.lock").exists()  # held: it exists
    assert list(tmp_path.iterdir()) == []  # released: nothing left in the folder


def test_no_lock_file_is_left_behind_after_an_error(tmp_path: Path) -> None:
    state = tmp_path / "s.jv3-state.json"
    with pytest.raises(RuntimeError), store_lock(state):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _hold(state: str, log: str, hold_s: float) -> None:
    with store_lock(Path(state), timeout=30):
        with open(log, "a") as f:
            f.write(f"in {os.getpid()}\n")
        time.sleep(hold_s)
        with open(log, "a") as f:
            f.write(f"out {os.getpid()}\n")


def test_waiters_still_take_turns_when_the_file_is_removed(tmp_path: Path) -> None:
    """Several runs racing for one store: never two inside at once (one that waited on a file
    the last holder removed must lock the new one, not the removed one)."""
    state, log = tmp_path / "x.jv3-state.json", tmp_path / "log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(str(state), str(log), 0.15)) for _ in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = log.read_text().split()
    events = list(zip(lines[0::2], lines[1::2], strict=True))
    assert len(events) == 10
    for i in range(0, 10, 2):  # "in A", "out A", "in B", "out B", ...: strictly alternating
        assert events[i][0] == "in" and events[i + 1] == ("out", events[i][1])
    assert not (tmp_path / "x.jv3-state.json.lock").exists()


def test_a_waiter_that_opened_the_removed_file_does_not_get_in_beside_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrow race, made certain: a waiter opens the lock file, the holder removes it and
    lets go, a third run creates and locks a new file; the waiter must then wait for that one."""
    import threading

    import jv3_integrations._cli.state as state_mod

    state = tmp_path / "r.jv3-state.json"
    lock = str(tmp_path / "r.jv3-state.json.lock")
    opened, released, entered = threading.Event(), threading.Event(), threading.Event()
    real_open = os.open
    first = [True]

    def slow_open(path: object, *args: object, **kw: object) -> int:
        fd = real_open(path, *args, **kw)  # type: ignore[arg-type]
        if str(path) == lock and threading.current_thread().name == "waiter" and first[0]:
            first[0] = False
            opened.set()
            released.wait(10)  # the file it opened is gone by now
        return fd

    monkeypatch.setattr(state_mod.os, "open", slow_open)

    def waiter() -> None:
        with store_lock(state, timeout=10):
            entered.set()

    holder = store_lock(state)
    holder.__enter__()
    t = threading.Thread(target=waiter, name="waiter")
    t.start()
    assert opened.wait(10)
    holder.__exit__(None, None, None)  # removes the file the waiter opened
    with store_lock(state):  # the next run: a new file, locked
        released.set()
        assert not entered.wait(0.5), "the waiter got in while another run held the store"
    t.join(10)
    assert entered.is_set()
    assert not Path(lock).exists()
