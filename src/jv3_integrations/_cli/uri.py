"""``--store`` URIs: ``milvus:./jv3.db``, ``qdrant:./dir``, ``qdrant::memory:``, ``pinecone:X``."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core import ConfigurationError
from ..core._spec import redact_url

__all__ = ["DEFAULT_STORE", "StoreURI", "default_store", "parse_store_uri"]

# The embedded default: see bench/store_choice.py and the README for why this one.
DEFAULT_STORE = "milvus:./jv3.db"

KINDS = ("milvus", "qdrant", "pinecone")

_USAGE = (
    "use milvus:./jv3.db (Milvus Lite file), milvus:http://host:19530, qdrant:./folder "
    "(Qdrant local mode), qdrant::memory:, qdrant:http(s)://host:6333 or pinecone:INDEX_NAME"
)


@dataclass(frozen=True)
class StoreURI:
    """A parsed ``--store`` value.

    Attributes:
        kind: ``milvus``, ``qdrant`` or ``pinecone``.
        target: The file/folder path, ``:memory:``, a server URL, or a Pinecone index name.
        local: Whether ``target`` is a path on this machine.
    """

    kind: str
    target: str
    local: bool

    @property
    def memory(self) -> bool:
        return self.target == ":memory:"

    @property
    def path(self) -> Path:
        """The local path (only for ``local`` stores)."""
        return Path(self.target).expanduser()

    def display(self) -> str:
        """The URI as the user should see it: no password, no query string."""
        return f"{self.kind}:{redact_url(self.target)}"

    def state_path(self) -> Path | None:
        """Where this store's index state lives (``None``: in memory)."""
        if self.memory:
            return None
        if self.local:
            resolved = self.path.resolve()
            return resolved.with_name(resolved.name + ".jv3-state.json")
        base = os.environ.get("JV3_STATE_DIR") or os.path.join(
            os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "jv3"
        )
        display = self.display()
        slug = re.sub(r"[^A-Za-z0-9]+", "-", display).strip("-")[:60]
        digest = hashlib.sha256(display.encode()).hexdigest()[:12]
        return Path(base) / f"{slug}-{digest}.json"


def default_store() -> str:
    """The store used without ``--store``: ``$JV3_STORE``, else :data:`DEFAULT_STORE`."""
    return os.environ.get("JV3_STORE", "").strip() or DEFAULT_STORE


def parse_store_uri(uri: str) -> StoreURI:
    """Parse a ``--store`` value.

    Raises:
        ConfigurationError: an unknown kind or an empty target, with the accepted forms.

    Example:
        >>> parse_store_uri("qdrant::memory:")
        StoreURI(kind='qdrant', target=':memory:', local=True)
    """
    text = uri.strip()
    kind, sep, target = text.partition(":")
    kind = kind.lower()
    if not sep or kind not in KINDS:
        raise ConfigurationError(f"unknown store {uri!r}; {_USAGE}")
    target = target.strip()
    if not target:
        raise ConfigurationError(f"store {uri!r} names no location; {_USAGE}")
    remote = target.startswith(("http://", "https://"))
    if kind == "pinecone":
        if remote or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,44}", target):
            raise ConfigurationError(
                f"pinecone:{target} is not a valid index name (lowercase letters, digits and "
                "hyphens, at most 45 characters)"
            )
        return StoreURI(kind, target, local=False)
    if kind == "milvus" and target == ":memory:":
        raise ConfigurationError(
            "Milvus has no in-memory mode; use milvus:./file.db or qdrant::memory:"
        )
    if kind == "milvus" and not remote and not target.endswith(".db"):
        raise ConfigurationError(
            f"milvus:{target}: a Milvus Lite store is a file ending in .db, e.g. milvus:./jv3.db"
        )
    return StoreURI(kind, target, local=not remote)
