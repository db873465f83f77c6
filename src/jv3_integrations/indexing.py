"""Index folders into a vector store incrementally: what ``jv3 index`` does, from Python.

Example:
    >>> from jv3_integrations import index_folder
    >>> report = index_folder(  # doctest: +SKIP
    ...     "docs/", store="qdrant:./jv3-index", provider="local:jinaai/jina-embeddings-v3"
    ... )
    >>> print(report.summary())  # doctest: +SKIP
    Indexed 12 files (12 new, 0 changed, 0 unchanged): 40 chunks embedded, ...

Run it again and only new or changed files are embedded; files deleted from an indexed
folder lose their chunks. ``jv3 search`` (or the store classes) search the result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ._cli.indexer import IndexInterrupted, IndexOptions, IndexReport, run_index
from .core import EmbeddingProvider

__all__ = ["IndexInterrupted", "IndexReport", "index_folder"]

logger = logging.getLogger("jv3_integrations.indexing")

PathLike = str | os.PathLike[str]


def index_folder(
    paths: PathLike | Sequence[PathLike],
    *,
    store: str,
    collection: str = "jv3",
    provider: str | EmbeddingProvider | None = None,
    model: str | None = None,
    dimensions: int | None = None,
    late_chunking: bool | None = None,
    chunker: str | None = None,
    hybrid: bool | None = None,
    include_hidden: bool = False,
    rebuild: bool = False,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
    _engine: Any = None,
) -> IndexReport:
    """Embed the files under ``paths`` into ``store``, skipping those already indexed unchanged.

    The same job as ``jv3 index`` (docs/cli.md), with the same state file next to the store:
    the CLI and an application can take turns on one store. Settings left at ``None`` keep what
    the collection was built with (for a new one: the defaults of ``jv3 index``).

    Args:
        paths: Files and folders (folders are walked; ``.txt``, ``.md``, ``.html``, ``.pdf`` ...).
        store: Where the vectors go, as ``jv3 index --store``: ``qdrant:PATH``,
            ``qdrant:http://HOST:6333``, ``milvus:FILE.db``, ``milvus:http://...``,
            ``pinecone:INDEX`` (keys from the environment, never arguments).
        collection: The collection (namespace for Pinecone).
        provider: A provider spec (``local:PATH_OR_ID``, ``api``, ``http://HOST:PORT``) or a
            provider already loaded (e.g. :func:`jv3_integrations.load_provider`), which is then
            reused, not loaded again. ``None``: the collection's, else ``$JV3_PROVIDER`` or the
            default.
        model: The model, for Jina's API or a server (``jina-embeddings-v3`` by default;
            also ``jina-embeddings-v5-text-small``/``-nano``, ``jina-embeddings-v4``).
            ``None``: the one the collection was built with.
        dimensions: Matryoshka dimensions (default: the model's full size).
        late_chunking: Embed each file once and pool its chunks (default True).
        chunker: ``"sentences"``, ``"sentences:MAX_CHARS"`` or ``"tokens:N"``.
        hybrid: Also store keyword (BM25) vectors (default False; fixed per collection).
        include_hidden: Also index hidden files and folders.
        rebuild: Forget the collection's state and embed everything again.
        progress: Show progress on stderr (a line rewritten on a terminal, plain lines in a log).
        on_warning: Called with each warning (skipped files, ...); default: logged on
            ``jv3_integrations.indexing``. They are also in ``report.warnings``.

    Returns:
        What was done: counts of new, changed, unchanged, removed and skipped files, chunks
        and tokens (``report.summary()`` is the CLI's line, ``report.to_json()`` its JSON).

    Raises:
        ConfigurationError: a path that does not exist, a setting the collection was not built
            with, a store that cannot be used; raised before anything is written.
        IndexInterrupted: Ctrl-C (a ``KeyboardInterrupt``); what was embedded before it is
            saved, and calling again goes on from there.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    instance = None if provider is None or isinstance(provider, str) else provider
    options = IndexOptions(
        paths=[os.fspath(p) for p in paths],
        store=store,
        collection=collection,
        provider=provider if isinstance(provider, str) else None,
        model=model,
        dimensions=dimensions,
        late_chunking=late_chunking,
        chunker=chunker,
        hybrid=hybrid,
        progress=progress,
        provider_instance=instance,
        include_hidden=include_hidden,
        rebuild=rebuild,
        engine=_engine,
    )
    return run_index(options, warn=on_warning or logger.warning)
