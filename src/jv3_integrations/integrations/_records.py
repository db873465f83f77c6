"""What every store writes and returns: ids, records, hits, traits, and their checks (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core._errors import ConfigurationError, InputError, InputTypeError

__all__ = [
    "DOC_FIELDS",
    "MODES",
    "TEXT_KEY",
    "Hit",
    "Record",
    "StoreTraits",
    "chunk_point_id",
    "point_id",
    "rescore",
    "simple_filter",
]

#: Namespace of every deterministic id this package makes (uuid5).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/jv3-integrations/ids")
#: Payload/metadata key holding the passage text.
TEXT_KEY = "text"
#: Metadata keys that late-chunked documents add to every chunk.
DOC_FIELDS = ("doc_id", "chunk_index", "start", "end")
#: Search modes: fused dense + keyword, dense only, keyword (BM25) only.
MODES = ("hybrid", "dense", "keyword")

Vectors = npt.NDArray[np.float32]


def point_id(key: str) -> str:
    """The store id for a caller id or text: the UUID itself if ``key`` is one, else uuid5.

    Re-running an ingestion with the same ids (or, without ids, the same texts) therefore
    overwrites points instead of adding duplicates, and ``delete`` accepts either the ids
    ``add_texts`` returned or the caller's own ids.
    """
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(ID_NAMESPACE, key))


def chunk_point_id(doc_id: str, index: int) -> str:
    """Deterministic id of chunk ``index`` of document ``doc_id``."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{doc_id}\x1f{index}"))


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: The point/vector id in the store.
        score: Higher is better: cosine similarity to the query (dense search), the BM25
            score (``mode="keyword"``) or the store's fused score (``mode="hybrid"``).
        text: The stored passage text.
        metadata: The stored metadata (for late-chunked documents also ``doc_id``,
            ``chunk_index``, ``start``, ``end``: the chunk's character span in its document).
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One point to write: id, text and metadata (vectors come per batch)."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoreTraits:
    """What a store is, declared from its configuration (no I/O), so callers never probe it.

    Attributes:
        multi_process: Several processes may write at once (a Qdrant or Milvus server,
            Pinecone). False for stores one process owns: a Qdrant local folder or
            ``:memory:``, a Milvus Lite file.
        persistent: The data outlives this process (False only for ``:memory:``).
    """

    multi_process: bool
    persistent: bool = True


@dataclass(frozen=True)
class _DocPlan:
    doc_id: str
    chunks: list[Record]


def _chunk_count(plan: _DocPlan) -> int:
    return len(plan.chunks)


_FACT_PREFIX = "jv3_"


def _tag_value(text: str) -> str:
    """``text`` as printable ASCII of at most 120 characters (Pinecone's tag values)."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else "?" for c in ascii_text)[:120]


def _check_metadata(meta: object, where: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputTypeError(f"{where} must be a dict (or None), not {type(meta).__name__}")
    out = dict(meta)
    for key in out:
        if not isinstance(key, str):
            raise InputTypeError(f"{where} has a non-str key {key!r}; metadata keys are strings")
    if TEXT_KEY in out:
        raise InputError(
            f"{where} has the key {TEXT_KEY!r}, which holds the passage text; rename it"
        )
    return out


def _check_size(name: str, value: object) -> int | None:
    """A vector size argument: None or a positive int (its upper bound is checked later)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_parallel(name: str, values: object, n: int) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise InputTypeError(f"{name} must be a list with one entry per text, or None")
    out = list(values)
    if len(out) != n:
        raise InputError(f"{name} has {len(out)} entries for {n} texts; give one per text")
    return out


def _check_ids(ids: object, n: int, what: str) -> list[str] | None:
    out = _check_parallel("ids", ids, n)
    if out is None:
        return None
    seen: set[str] = set()
    for i, v in enumerate(out):
        if not isinstance(v, str) or not v:
            raise InputTypeError(f"ids[{i}] must be a non-empty str, not {v!r}")
        if v in seen:
            raise InputError(f"ids[{i}] = {v!r} appears twice; each {what} needs its own id")
        seen.add(v)
    return out


def simple_filter(filter: Any) -> dict[str, Any] | None:
    """A plain ``{key: value}`` dict (our portable filter), validated; None if not one."""
    if not isinstance(filter, dict):
        return None
    for key, value in filter.items():
        if not isinstance(key, str) or key.startswith("$"):
            return None
        if isinstance(value, dict):
            return None
        if not isinstance(value, (str, int, float, bool, list, tuple)):
            raise InputTypeError(
                f"filter[{key!r}] must be a str, number, bool or a list of them, "
                f"not {type(value).__name__}"
            )
    return filter


def rescore(
    candidates: list[str], full_vectors: Mapping[str, Vectors], query: Vectors
) -> list[tuple[str, float]]:
    """Exact cosine rescoring of candidate ids with their full (unit) vectors, best first."""
    ids = [c for c in candidates if c in full_vectors]
    if not ids:
        return []
    mat = np.asarray([full_vectors[i] for i in ids], dtype=np.float32)
    scores = mat @ np.asarray(query, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    return [(ids[i], float(scores[i])) for i in order]
