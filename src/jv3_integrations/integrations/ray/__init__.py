"""Ray Data: embed a ``ray.data.Dataset`` on an actor pool and write it to a vector store.

Ray schedules, retries and moves the data; this package supplies the embedding stage
(:mod:`._embed`: :func:`embed_dataset`) and the store writer (:mod:`._write`:
:func:`write_store`, over the stores' public contract). Every id is deterministic (uuid5, as the
stores make them), so a task that Ray retries, or an actor it restarts, rewrites the same
points: a run ends with exactly one point per row.

Install with ``pip install 'jv3-integrations[ray]'``.
"""

from __future__ import annotations

from ._common import DEFAULT_MAX_RETRIES, TRANSIENT_ERRORS
from ._embed import DEFAULT_BATCH_TOKENS, embed_dataset
from ._write import WriteResult, write_store

__all__ = [
    "DEFAULT_BATCH_TOKENS",
    "DEFAULT_MAX_RETRIES",
    "TRANSIENT_ERRORS",
    "WriteResult",
    "embed_dataset",
    "write_store",
]
