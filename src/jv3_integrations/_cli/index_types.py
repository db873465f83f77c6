"""What one ``jv3 index`` run is given (options) and gives back (its report, or an interruption)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core import EmbeddingProvider


@dataclass
class IndexOptions:
    """``jv3 index`` arguments (``None``: keep what the index was built with, else default)."""

    paths: Sequence[str]
    store: str
    collection: str = "jv3"
    provider: str | None = None
    #: ``--model`` (API and servers; None: as the index was built, else the provider's).
    model: str | None = None
    dimensions: int | None = None
    late_chunking: bool | None = None
    chunker: str | None = None
    #: Also index keyword (BM25) vectors (``None``: as the index was built; default off).
    hybrid: bool | None = None
    progress: bool = True
    #: A provider already built from ``provider`` (reused across commands, e.g. by the demo).
    provider_instance: EmbeddingProvider | None = None
    #: Also index files inside hidden folders and hidden files (``--include-hidden``).
    include_hidden: bool = False
    #: Forget the collection's state (even an unreadable one) and embed every file again.
    rebuild: bool = False
    #: Where files are chunked and embedded: None here, in-process; a ``RayEngine`` on Ray.
    engine: Any = None
    #: Seconds between progress lines when stderr is not a terminal (None: the default,
    #: ``JV3_PROGRESS_INTERVAL`` or 10 s).
    progress_interval: float | None = None


class IndexInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``jv3 index``; what was embedded before it is saved and kept.

    Running the same command again embeds only the files not saved yet. ``report`` is the run
    so far, ``saved`` the files stored and recorded, ``planned`` those there were to embed.
    """

    def __init__(self, report: IndexReport, *, saved: int, planned: int) -> None:
        super().__init__(f"saved {saved} of {planned} files; run the same command to continue")
        self.report = report
        self.saved = saved
        self.planned = planned


@dataclass
class IndexReport:
    """What one ``jv3 index`` run did (printed as the summary line or as JSON)."""

    store: str
    collection: str
    files: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    empty: int = 0
    files_embedded: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    tokens: int = 0
    tokens_estimated: bool = False
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: What the folder walk passed over, by reason (hidden folder/file, unsupported type).
    ignored: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.new} new", f"{self.changed} changed", f"{self.unchanged} unchanged"]
        if self.removed:
            parts.append(f"{self.removed} removed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.empty:
            parts.append(f"{self.empty} empty")
        tokens = f"{'~' if self.tokens_estimated else ''}{self.tokens:,} tokens"
        line = (
            f"Indexed {_plural(self.files, 'file')} ({', '.join(parts)}): "
            f"{_plural(self.chunks_embedded, 'chunk')} embedded, {self.chunks_deleted} deleted, "
            f"{self.chunks_total} in the index; "
            f"{tokens}; {self.seconds:.1f} s -> {self.store} [{self.collection}]"
        )
        if self.ignored:
            reasons = ", ".join(_plural(n, why) for why, n in sorted(self.ignored.items()))
            hint = " (--include-hidden indexes hidden ones)" if "hidden" in reasons else ""
            line += f"; not indexed: {reasons}{hint}"
        return line


def _plural(n: int, noun: str) -> str:
    """``1 file``, ``2 files``, ``0 files``: plural only when not exactly one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
