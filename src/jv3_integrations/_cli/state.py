"""The index state ``jv3 index`` keeps beside the store: settings, file hashes, chunk ids.

One small JSON file per store (``<store path>.jv3-state.json`` for local stores, a file under
``$JV3_STATE_DIR`` or ``~/.local/state/jv3`` for remote ones), one section per collection::

    {"version": 1, "collections": {"jv3": {
        "settings": {"model": ..., "provider": ..., "dimensions": 1024,
                     "chunker": "sentences", "late_chunking": true, "hybrid": false},
        "files": {"/abs/path/a.md": {"hash": "sha256:...", "ids": ["..."], "tokens": 120}}}}}

``hybrid`` (``jv3 index --hybrid``) says the collection also holds keyword (BM25) vectors;
state files without it were written before hybrid search existed and mean false.

The provider spec is stored without secrets (no API keys, no URL passwords).

Writers take the store's lock (:func:`store_lock`, a ``flock`` on ``<state file>.lock``)
*before* reading the state and keep it until the last write, so two ``jv3 index`` runs on one
store take turns instead of overwriting each other's state.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core._errors import ConfigurationError
from ..core._spec import ProviderSpec, redact_url

__all__ = [
    "STATE_VERSION",
    "CollectionState",
    "FileEntry",
    "IndexSettings",
    "StateCorruptError",
    "StateFile",
    "chunk_id",
    "redact_spec",
    "store_lock",
]

STATE_VERSION = 1
_ID_NAMESPACE = uuid.UUID("5b0c53a8-8f7e-4a53-9d0e-6a1c1b1f3a11")


def chunk_id(path: str, digest: str, index: int) -> str:
    """A stable id for chunk ``index`` of a file version (a UUID string every store accepts)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{path}\n{digest}\n{index}"))


def redact_spec(spec: str) -> str:
    """A provider spec safe to store and show: user names, passwords and query strings removed
    (:meth:`ProviderSpec.describe`, over the one URL redaction)."""
    try:
        return ProviderSpec.parse(spec).describe()
    except ConfigurationError:
        return redact_url(spec)


@dataclass(frozen=True)
class IndexSettings:
    """What an index was built with; ``jv3 search`` reuses it so queries match the passages."""

    model: str
    provider: str
    dimensions: int
    chunker: str
    late_chunking: bool
    hybrid: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "dimensions": self.dimensions,
            "chunker": self.chunker,
            "late_chunking": self.late_chunking,
            "hybrid": self.hybrid,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexSettings:
        return cls(
            model=str(data["model"]),
            provider=str(data["provider"]),
            dimensions=int(data["dimensions"]),
            chunker=str(data["chunker"]),
            late_chunking=bool(data["late_chunking"]),
            hybrid=bool(data.get("hybrid", False)),
        )

    def chunking_key(self) -> tuple[str, bool]:
        """The part of the settings that decides the chunks (a change re-embeds every file)."""
        return (self.chunker, self.late_chunking)


@dataclass
class FileEntry:
    """One indexed file: its content hash, the ids of its chunks, its token count."""

    hash: str
    ids: list[str]
    tokens: int = 0


@dataclass
class CollectionState:
    """The state of one collection: its settings (``None`` before the first index) and files."""

    settings: IndexSettings | None = None
    files: dict[str, FileEntry] = field(default_factory=dict)
    #: The store's write generation at the last write (``_cli.generation``); None: not known.
    generation: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "settings": self.settings.to_json() if self.settings else None,
            "files": {
                path: {"hash": e.hash, "ids": e.ids, "tokens": e.tokens}
                for path, e in sorted(self.files.items())
            },
        }
        if self.generation is not None:
            data["generation"] = self.generation
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionState:
        settings = data.get("settings")
        files = {
            str(path): FileEntry(
                hash=str(e["hash"]), ids=[str(i) for i in e["ids"]], tokens=int(e.get("tokens", 0))
            )
            for path, e in (data.get("files") or {}).items()
        }
        generation = data.get("generation")
        return cls(
            IndexSettings.from_json(settings) if settings else None,
            files,
            None if generation is None else int(generation),
        )


class StateCorruptError(ConfigurationError):
    """The state file exists but cannot be parsed (the message says how to rebuild)."""


LOCK_TIMEOUT = 600.0  # seconds a run waits for another run on the same store


@contextmanager
def store_lock(
    state_path: Path | None,
    *,
    timeout: float = LOCK_TIMEOUT,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the store's exclusive lock (a no-op for in-memory stores or without ``fcntl``).

    Raises:
        ConfigurationError: another run kept the lock for ``timeout`` seconds.
    """
    try:
        import fcntl
    except ImportError:  # not on this platform: no cross-process lock
        yield
        return
    if state_path is None:
        yield
        return
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"another `jv3 index` has held the store's lock ({lock_path}) for "
                    f"{timeout:.0f} s; wait for it to finish, or stop it"
                ) from None
            time.sleep(0.1)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock_path):
            break
        # the holder before us removed this file as it let go: lock the one now at the path
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    try:
        yield
    finally:
        # Remove the (empty) lock file while still holding it, so no run is left locking a
        # file that is gone: a waiter that then gets this lock sees it was unlinked
        # (_same_file) and locks the path anew.
        with suppress(OSError):
            os.unlink(lock_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one unlinked by the last holder)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


class StateFile:
    """The JSON state of one store (``path=None``: kept in memory only, e.g. ``:memory:``).

    ``fresh=True`` starts from an empty state whatever the file holds (``--rebuild``).
    """

    def __init__(self, path: Path | None, *, fresh: bool = False) -> None:
        self.path = path
        self._collections: dict[str, CollectionState] = {}
        if path is not None and path.exists() and not fresh:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if int(data.get("version", 0)) != STATE_VERSION:
                    raise ValueError(f"unsupported version {data.get('version')!r}")
                self._collections = {
                    str(name): CollectionState.from_json(c)
                    for name, c in (data.get("collections") or {}).items()
                }
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                reason = " ".join(str(exc).split())[:200]
                raise StateCorruptError(
                    f"the index state file {path} is unreadable ({reason}); rebuild the index "
                    "with `jv3 index --rebuild PATH...` (same --store and --collection)"
                ) from None

    def collection(self, name: str) -> CollectionState:
        """The state of collection ``name`` (created empty if new)."""
        return self._collections.setdefault(name, CollectionState())

    def has_collection(self, name: str) -> bool:
        return name in self._collections and self._collections[name].settings is not None

    def save(self) -> None:
        """Write the state atomically (temp file + rename); a no-op for in-memory stores."""
        if self.path is None:
            return
        data = {
            "version": STATE_VERSION,
            "collections": {n: c.to_json() for n, c in sorted(self._collections.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".jv3-state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
