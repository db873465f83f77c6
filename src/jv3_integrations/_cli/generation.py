"""The write generation that ties a store to its index state (issue 26 item 8: stale restores).

Every ``jv3 index`` run that writes marks the collection with the next generation, in the
collection's own metadata (``jv3generation``: Qdrant collection metadata, Milvus collection
properties, Pinecone index tags), *before* its first write, and records it in the state file
as the run goes. A store whose generation is lower than its state's is an older copy (a
restored backup, a file copied back): it may hold chunks of old file versions that the state
no longer lists, so ``jv3 search`` and ``jv3 index`` refuse it and say to rebuild.

A store ahead of its state is accepted: a run that was killed after marking the store.

Pinecone: a ``--collection`` is a namespace of the index, and one backup restores every
namespace at once, so each namespace has its own tag (``jv3generation-NAMESPACE``; see
:func:`_pinecone_key`). With one shared number, rebuilding (or indexing) one namespace of a
restored index would raise it past what another stale namespace's state records and hide it.
An index holds at most 20 tags: where no tag is left for a namespace, marking fails and that
namespace is not checked (as on a Qdrant server without collection metadata).

Stores that keep no such metadata are not checked: a ``PineconeStore`` opened on an ``Index``
handle (data plane only: no control plane to read or write tags) and unknown stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from typing import Any

from ..core._errors import ConfigurationError

__all__ = [
    "GENERATION_KEY",
    "StaleStoreError",
    "check_generation",
    "drop_stale_collection",
    "mark_generation",
]

#: Not under the ``jv3_`` prefix of the facts the stores verify (``store_facts``): it changes.
GENERATION_KEY = "jv3generation"

logger = logging.getLogger(__name__)


class StaleStoreError(ConfigurationError):
    """The store is older than its index state (restored from an earlier copy)."""


#: A namespace that fits a tag key as it is (keys: at most 80 of ``[A-Za-z0-9_-]``).
_READABLE_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,65}$")


def _kind(store: Any) -> str | None:
    name = type(store).__name__
    if name == "PineconeStore":
        from pinecone import Pinecone  # loaded already: the store imports it

        # An Index handle given without the control plane has no tags to read or write: such
        # a store keeps no generation and is not checked (as before generations existed).
        return "pinecone" if isinstance(store.client, Pinecone) else None
    return {"QdrantStore": "qdrant", "MilvusStore": "milvus"}.get(name)


def _pinecone_key(namespace: str) -> str:
    """The tag of a namespace's generation: ``jv3generation`` for the default namespace,
    ``jv3generation-NAME`` where the name fits a tag key, else ``jv3generation--`` and a hash
    of the name (``--``: a readable name never starts with ``-``, so the two cannot meet)."""
    if not namespace:
        return GENERATION_KEY
    if _READABLE_NAMESPACE.match(namespace):
        return f"{GENERATION_KEY}-{namespace}"
    return f"{GENERATION_KEY}--{hashlib.sha256(namespace.encode()).hexdigest()[:32]}"


def read_generation(store: Any) -> int | None:
    """The generation marked in the store's collection (0: none yet), or None where the store
    keeps no such metadata."""
    kind = _kind(store)
    key = GENERATION_KEY
    if kind == "qdrant":
        meta = store.client.get_collection(store.collection).config.metadata or {}
    elif kind == "milvus":
        meta = store.client.describe_collection(store.collection).get("properties") or {}
    elif kind == "pinecone":
        meta = store.client.describe_index(store.collection).tags or {}
        key = _pinecone_key(store.namespace)
    else:
        return None
    try:
        return int(meta.get(key, 0))
    except (TypeError, ValueError):
        return 0


def mark_generation(store: Any, recorded: int | None) -> int | None:
    """Mark the store with the next generation and return it (None: the store keeps none)."""
    kind = _kind(store)
    if kind is None:
        return recorded
    found = read_generation(store) or 0
    new = max(found, recorded or 0) + 1
    try:
        if kind == "qdrant":
            store.client.update_collection(store.collection, metadata={GENERATION_KEY: str(new)})
        elif kind == "pinecone":  # tags are merged: the store's jv3_* facts are kept
            store.client.configure_index(
                store.collection, tags={_pinecone_key(store.namespace): str(new)}
            )
        else:
            store.client.alter_collection_properties(
                store.collection, properties={GENERATION_KEY: str(new)}
            )
    except Exception as exc:  # a server too old for collection metadata: no check, no failure
        logger.debug("store keeps no write generation (%s): not checked", type(exc).__name__)
        return None
    return new


def drop_stale_collection(store: Any) -> None:
    """Drop a stale collection (``--rebuild``): it may hold chunks of old file versions that no
    state lists, which re-embedding the files would not remove.

    Pinecone: the collection is a namespace; its vectors are deleted, the index (other
    namespaces, its tags) is kept."""
    kind = _kind(store)
    if kind == "qdrant":
        store.client.delete_collection(store.collection)
    elif kind == "milvus":
        store.client.drop_collection(store.collection)
    elif kind == "pinecone":
        from pinecone import NotFoundError

        # a restored copy without this namespace has nothing to drop
        with contextlib.suppress(NotFoundError):
            store.index.delete(delete_all=True, namespace=store.namespace)


def check_generation(store: Any, recorded: int | None, where: str) -> None:
    """Refuse a store older than its index state.

    Args:
        store: The opened store (its collection exists).
        recorded: The generation in the state file (None: none recorded yet).
        where: The store and collection, as shown to the user.

    Raises:
        StaleStoreError: the store holds an earlier generation than the state records.
    """
    if recorded is None:
        return
    found = read_generation(store)
    if found is None or found >= recorded:
        return
    raise StaleStoreError(
        f"the store {where} is older than its index state (write generation {found}, the state "
        f"records {recorded}): it was restored from an earlier copy and may return old text; "
        "run `jv3 index --rebuild PATH...` (same --store and --collection) to rebuild it"
    )
