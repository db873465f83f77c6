"""Progress bars for long work (indexing, model passes, benchmarks), always switchable off.

Uses tqdm when it is installed (every extra that does long work pulls it in); without it, or
with ``enabled=False``, it is a silent pass-through.

Work deep inside a call (the windows of one long late-chunked document) reports to the bar of
whoever asked for it without a parameter on every layer between: the caller installs its bar
with :func:`report_to`, the worker calls :func:`report_progress` (tokens done) and
:func:`expect_progress` (tokens planned). Nothing is reported when no bar is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["ProgressBar", "expect_progress", "progress", "report_progress", "report_to"]


class ProgressBar(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def expect(self, n: int) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None

    def expect(self, n: int) -> None:
        return None


class _Bar:
    """A tqdm bar whose total can grow as work is planned (``expect``)."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def expect(self, n: int) -> None:
        self._bar.total = (self._bar.total or 0) + n
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


_sink: ContextVar[ProgressBar | None] = ContextVar("jv3_progress_sink", default=None)


@contextmanager
def progress(
    total: int | None, desc: str, *, enabled: bool, unit: str = "it"
) -> Iterator[ProgressBar]:
    """A progress bar: ``with progress(n, "Embedding", enabled=True) as bar: bar.update()``."""
    if not enabled:
        yield _Silent()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield _Silent()
        return
    bar = _Bar(tqdm(total=total, desc=desc, unit=unit, leave=False, unit_scale=unit == "tok"))
    try:
        yield bar
    finally:
        bar.close()


@contextmanager
def report_to(bar: ProgressBar) -> Iterator[None]:
    """Send :func:`report_progress`/:func:`expect_progress` of the work inside to ``bar``.

    A switched-off bar installs nothing, so reports still reach an outer caller's bar.
    """
    if isinstance(bar, _Silent):
        yield
        return
    token = _sink.set(bar)
    try:
        yield
    finally:
        _sink.reset(token)


def report_progress(tokens: int) -> None:
    """``tokens`` more tokens are done (to the bar installed by :func:`report_to`, if any)."""
    bar = _sink.get()
    if bar is not None and tokens:
        bar.update(tokens)


def expect_progress(tokens: int) -> None:
    """``tokens`` more tokens are planned: the installed bar's total grows."""
    bar = _sink.get()
    if bar is not None and tokens:
        bar.expect(tokens)
