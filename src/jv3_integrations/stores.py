"""The vector-store contract that Qdrant, Milvus and Pinecone stores share.

``SyncStore`` / ``AsyncStore`` declare it: ``add_texts``, ``add_documents``, ``write``,
``search``, ``search_many``, ``delete``, ``count``, ``create``, ``close`` (and ``with``),
``traits``. Writers that embed elsewhere (Ray, your own pipeline) build :class:`Record` s with
the same deterministic ids as the stores (:func:`point_id`, :func:`chunk_point_id`) and call
``store.write(records, vectors)``. Importing this module loads no host library.
"""

from __future__ import annotations

from .integrations._store import (
    AsyncStore,
    Hit,
    Record,
    StoreTraits,
    SyncStore,
    chunk_point_id,
    point_id,
)

__all__ = [
    "AsyncStore",
    "Hit",
    "Record",
    "StoreTraits",
    "SyncStore",
    "chunk_point_id",
    "point_id",
]
