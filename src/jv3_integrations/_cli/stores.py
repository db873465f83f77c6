"""Opening and closing the package's stores for ``jv3``: from a store URI and the host's key,
created or verified for indexing, damaged or stale ones set aside with ``--rebuild``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ..core import ConfigurationError, EmbeddingProvider, Jv3Error, MissingDependencyError
from .generation import StaleStoreError, check_generation, drop_stale_collection
from .index_types import IndexOptions
from .state import IndexSettings
from .uri import StoreURI
from .warn import Warn

logger = logging.getLogger(__name__)


def open_store(
    uri: StoreURI,
    collection: str,
    provider: EmbeddingProvider,
    dimensions: int,
    hybrid: bool = False,
) -> Any:
    """The package's store for ``uri``, opened from its URL or path and the host's key.

    Keys come from the environment, as each host's own client reads them: ``QDRANT_API_KEY``,
    ``MILVUS_TOKEN``, ``PINECONE_API_KEY`` (and ``PINECONE_HOST`` for another control plane).
    Nothing is opened yet: the store opens its client on first use.
    """
    common: dict[str, Any] = {"dimensions": dimensions, "hybrid": hybrid}
    try:
        if uri.kind == "qdrant":
            from ..qdrant import QdrantStore

            if uri.memory:
                return QdrantStore(provider, collection=collection, **common)
            if uri.local:
                if uri.path.exists() and not uri.path.is_dir():
                    raise ConfigurationError(
                        f"qdrant:{uri.target} is a file, but Qdrant local mode keeps its index "
                        "in a folder: give a folder path (e.g. --store qdrant:./jv3-qdrant), or "
                        "--store milvus:FILE.db for Milvus Lite"
                    )
                return QdrantStore(provider, path=str(uri.path), collection=collection, **common)
            key = os.environ.get("QDRANT_API_KEY", "").strip() or None
            return QdrantStore(
                provider, url=uri.target, api_key=key, collection=collection, **common
            )
        if uri.kind == "milvus":
            from ..milvus import MilvusStore

            if uri.local:
                return MilvusStore(provider, uri=str(uri.path), collection=collection, **common)
            token = os.environ.get("MILVUS_TOKEN", "").strip() or None
            return MilvusStore(
                provider, uri=uri.target, token=token, collection=collection, **common
            )
        return _open_pinecone(uri, collection, provider, common)
    except MissingDependencyError:
        raise
    except ImportError:
        raise ConfigurationError(
            f"{uri.kind} support is not installed: pip install 'jv3-integrations[{uri.kind}]'"
        ) from None


def _open_pinecone(
    uri: StoreURI, collection: str, provider: EmbeddingProvider, common: dict[str, Any]
) -> Any:
    from ..pinecone import PineconeStore

    key = os.environ.get("PINECONE_API_KEY", "").strip()
    if not key:
        raise ConfigurationError(
            "pinecone: stores need PINECONE_API_KEY in the environment (and PINECONE_HOST for "
            "a non-default control-plane endpoint)"
        )
    host = os.environ.get("PINECONE_HOST") or os.environ.get("PINECONE_CONTROLLER_HOST")
    return PineconeStore(
        provider,
        api_key=key,
        host=host or None,
        collection=uri.target,
        namespace=collection,
        **common,
    )


def close_store(store: Any) -> None:
    """Close the store (releases Qdrant's folder lock / Milvus Lite's server)."""
    if store is None:
        return
    try:
        store.close()
    except Exception:  # closing must never mask the real result
        logger.debug("closing the store failed", exc_info=True)


def open_for_index(
    opts: IndexOptions,
    uri: StoreURI,
    provider: EmbeddingProvider,
    settings: IndexSettings,
    warn: Warn,
) -> Any:
    """The store, created or verified (its dimension is checked before anything is written);
    with ``--rebuild``, a damaged local store is set aside and a new one started."""
    store: Any = None
    try:
        store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
        store.create()
        return store
    except Jv3Error:
        raise
    except Exception:
        if not (opts.rebuild and uri.local and not uri.memory):
            raise
        close_store(store)
        _set_aside(uri.path, warn)
        store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
        store.create()
        return store


def check_stale(
    store: Any,
    opts: IndexOptions,
    uri: StoreURI,
    recorded: int | None,
    provider: EmbeddingProvider,
    settings: IndexSettings,
) -> Any:
    """Refuse a store older than its state; with ``--rebuild`` its collection is dropped (it
    may hold chunks of old file versions that no state lists) and made again."""
    try:
        check_generation(store, recorded, f"{uri.display()} [{opts.collection}]")
        return store
    except StaleStoreError:
        if not opts.rebuild:
            raise
    drop_stale_collection(store)
    close_store(store)
    store = open_store(uri, opts.collection, provider, settings.dimensions, settings.hybrid)
    store.create()
    return store


def _set_aside(path: Path, warn: Warn) -> None:
    """Move a damaged local store out of the way (kept, never deleted) for ``--rebuild``."""
    if not path.exists():
        return
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    warn(f"the store could not be opened; moved it to {aside} and building a new one")
