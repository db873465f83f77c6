"""Progress bars for long work (indexing, model passes, benchmarks), always switchable off.

Uses tqdm when it is installed (every extra that does long work pulls it in); without it, or
with ``enabled=False``, it is a silent pass-through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["ProgressBar", "progress"]


class ProgressBar(Protocol):
    def update(self, n: int = 1) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None


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
    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield bar
    finally:
        bar.close()
