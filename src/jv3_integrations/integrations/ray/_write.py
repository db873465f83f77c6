"""The writing half of the Ray integration: :func:`write_store`, over the store contract.

Rows become :class:`~jv3_integrations.stores.Record` s with the stores' own deterministic ids
and go through ``store.write``; chunks a shorter new document no longer has go through
``store.delete(keep_chunks=...)``; ``store.traits`` says whether several write tasks may open
the store. The driver writes embedded stores; a Ray ``Datasink`` writes servers and Pinecone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core._errors import ConfigurationError, InputError, InputTypeError
from ...core._progress import progress
from .._store import Record, SyncStore, chunk_point_id
from ._common import DEFAULT_MAX_RETRIES, TRANSIENT_ERRORS, Vectors, _check_count, _ray

__all__ = ["WriteResult", "write_store"]

logger = logging.getLogger(__name__)


# -- writing to a store -----------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_store` wrote.

    Attributes:
        written: Rows upserted (each one point, with a deterministic id).
        chunks: Chunks per document (when ``document_column`` was given), else empty.
    """

    written: int
    chunks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Layout:
    """How a row becomes a point (picklable: it travels to the write tasks)."""

    text_column: str
    vector_column: str
    id_column: str | None
    document_column: str | None
    chunk_column: str | None
    metadata_columns: tuple[str, ...] | None

    def metadata_keys(self, columns: Iterable[str]) -> list[str]:
        if self.metadata_columns is not None:
            return list(self.metadata_columns)
        taken = {self.text_column, self.vector_column, self.id_column}
        taken |= {self.document_column, self.chunk_column}
        return [c for c in columns if c not in taken]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _points(
    batch: Mapping[str, Any], layout: _Layout, dimensions: int
) -> tuple[list[Record], Vectors]:
    """Records and vectors of one numpy batch, every check done before the caller writes."""
    for column in (layout.text_column, layout.vector_column, layout.id_column):
        if column is not None and column not in batch:
            raise InputError(
                f"the Dataset has no column {column!r}; its columns are {sorted(batch)} "
                "(embed it with embed_dataset first, or name the column)"
            )
    for column in (layout.document_column, layout.chunk_column):
        if column is not None and column not in batch:
            raise InputError(
                f"the Dataset has no column {column!r}; its columns are {sorted(batch)}"
            )
    texts = [_plain(t) for t in batch[layout.text_column]]
    raw = batch[layout.vector_column]
    vectors = np.asarray(
        np.stack(list(raw)) if raw.dtype == object else raw, dtype=np.float32
    ).reshape(len(texts), -1)
    if vectors.shape[1] != dimensions:
        raise ConfigurationError(
            f"column {layout.vector_column!r} holds {vectors.shape[1]}-dimensional vectors; the "
            f"store holds {dimensions}: embed with dimensions={dimensions}, or use another store"
        )
    keys = layout.metadata_keys(batch)
    records: list[Record] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputTypeError(
                f"column {layout.text_column!r} row {i} of a batch is {type(text).__name__}, "
                "not str"
            )
        meta = {k: _plain(batch[k][i]) for k in keys}
        if layout.document_column is not None and layout.chunk_column is not None:
            doc = str(_plain(batch[layout.document_column][i]))
            index = _plain(batch[layout.chunk_column][i])
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise InputTypeError(
                    f"column {layout.chunk_column!r} must hold chunk indexes (ints >= 0), "
                    f"not {index!r}"
                )
            pid = chunk_point_id(doc, index)
            meta = {**meta, "doc_id": doc, "chunk_index": index}
        elif layout.id_column is not None:
            key = _plain(batch[layout.id_column][i])
            if not isinstance(key, str) or not key:
                raise InputTypeError(f"column {layout.id_column!r} must hold non-empty str ids")
            pid = key  # store.write makes it the store id (point_id), as add_texts does
        else:
            pid = text
        records.append(Record(pid, text, meta))
    return records, vectors


def _write_batch(store: SyncStore, batch: Mapping[str, Any], layout: _Layout) -> list[Record]:
    records, vectors = _points(batch, layout, store.dimensions)
    store.write(records, vectors)
    return records


def _tally(records: list[Record], chunks: dict[str, int]) -> None:
    for r in records:
        doc = r.metadata.get("doc_id")
        if isinstance(doc, str):
            chunks[doc] = max(chunks.get(doc, 0), int(r.metadata["chunk_index"]) + 1)


def _close(store: SyncStore) -> None:
    try:
        store.close()
    except Exception:  # closing must never mask the result
        logger.debug("closing the store failed", exc_info=True)


def _sink_class() -> type:
    from ray.data import Datasink

    class StoreSink(Datasink):  # type: ignore[misc,type-arg]
        """Many Ray write tasks, each with its own store from the factory."""

        def __init__(self, factory: Callable[[], SyncStore], layout: _Layout, size: int) -> None:
            self.factory, self.layout, self.size = factory, layout, size
            self.result = WriteResult(0)

        def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
            from ray.data.block import BlockAccessor

            store = self.factory()
            written, chunks = 0, dict[str, int]()
            try:
                store.create()
                for block in blocks:
                    acc = BlockAccessor.for_block(block)
                    for start in range(0, acc.num_rows(), self.size):
                        part = BlockAccessor.for_block(acc.slice(start, start + self.size))
                        records = _write_batch(store, part.to_batch_format("numpy"), self.layout)
                        written += len(records)
                        _tally(records, chunks)
            finally:
                _close(store)
            return {"written": written, "chunks": chunks}

        def on_write_complete(self, write_result: Any) -> None:
            written, chunks = 0, dict[str, int]()
            for part in write_result.write_returns:
                written += part["written"]
                for doc, n in part["chunks"].items():
                    chunks[doc] = max(chunks.get(doc, 0), n)
            self.result = WriteResult(written, chunks)

    return StoreSink


def write_store(
    ds: Any,
    store: SyncStore | Callable[[], SyncStore],
    *,
    text_column: str = "text",
    vector_column: str = "embedding",
    id_column: str | None = None,
    document_column: str | None = None,
    chunk_column: str | None = None,
    metadata_columns: Sequence[str] | None = None,
    writers: int = 1,
    batch_size: int = 256,
    max_retries: int = DEFAULT_MAX_RETRIES,
    progress_bar: bool = False,
) -> WriteResult:
    """Write an embedded Dataset (see :func:`embed_dataset`) to a Qdrant, Milvus or Pinecone store.

    Ids are the stores' own deterministic ones: ``chunk_point_id(document, chunk)`` for chunk
    rows (with ``doc_id`` and ``chunk_index`` in the metadata, as ``add_documents`` stores
    them; chunks a shorter new version of a document no longer has are deleted), else
    ``point_id(id_column value)``, else ``point_id(text)`` as ``add_texts`` does. A retried
    Ray task or a restarted actor therefore rewrites the same points: exactly one per row.

    ``writers=1`` writes from the driver, one batch at a time as Ray streams them (memory
    bounded by ``batch_size``): the only way for embedded stores that one process owns (a
    Milvus Lite file, a Qdrant local path). ``writers=N`` runs a Ray ``Datasink`` with N write
    tasks in parallel, each building its own store with ``store()`` (a picklable factory
    that reads keys from the environment, e.g. ``PINECONE_API_KEY``): for servers and Pinecone.

    Args:
        ds: The Dataset, with ``text_column`` and ``vector_column``.
        store: A store (``writers=1``), or a zero-argument factory that builds one.
        text_column: The passage text column.
        vector_column: The vector column.
        id_column: Caller ids (str) for non-chunk rows.
        document_column: Document id column (chunk rows; needs ``chunk_column``).
        chunk_column: Chunk index column (ints 0, 1, 2 ... within each document).
        metadata_columns: Columns copied into each point's metadata (default: every column
            that is not one of the above).
        writers: Parallel writers (1: the driver).
        batch_size: Rows per upsert.
        max_retries: Ray retries of a failed write task (``writers > 1``).
        progress_bar: Show rows written (``writers=1``).

    Returns:
        A :class:`WriteResult`.

    Raises:
        InputError, InputTypeError: a missing column, a bad value (before any write).
        ConfigurationError: vectors of another size than the store's; ``writers > 1`` with a
            store instance or an embedded store.
    """
    ray = _ray()
    writers = _check_count("writers", writers)
    batch_size = _check_count("batch_size", batch_size)
    max_retries = _check_count("max_retries", max_retries, 0)
    if (document_column is None) != (chunk_column is None):
        raise InputError("document_column and chunk_column go together (chunk rows need both)")
    if not isinstance(ds, ray.data.Dataset):
        raise InputTypeError(f"ds must be a ray.data.Dataset, not {type(ds).__name__}")
    layout = _Layout(
        text_column,
        vector_column,
        id_column,
        document_column,
        chunk_column,
        None if metadata_columns is None else tuple(metadata_columns),
    )
    if writers > 1:
        return _write_parallel(ds, store, layout, writers, batch_size, max_retries)
    target = store if isinstance(store, SyncStore) else store()
    if not isinstance(target, SyncStore):
        raise ConfigurationError(
            f"store must be a QdrantStore, MilvusStore or PineconeStore (or a factory of one), "
            f"not {type(target).__name__}"
        )
    target.create()  # checks the collection's dimension before anything is written
    written, chunks = 0, dict[str, int]()
    with progress(None, "Writing", enabled=progress_bar, unit="row") as bar:
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
            records = _write_batch(target, batch, layout)
            written += len(records)
            _tally(records, chunks)
            bar.update(len(records))
    _delete_stale(target, chunks)
    if target is not store:
        _close(target)
    return WriteResult(written, chunks)


def _write_parallel(
    ds: Any,
    store: object,
    layout: _Layout,
    writers: int,
    batch_size: int,
    max_retries: int,
) -> WriteResult:
    if isinstance(store, SyncStore) or not callable(store):
        raise ConfigurationError(
            "writers > 1 needs a factory, e.g. functools.partial(make_store, ...): each Ray "
            "write task builds its own store (a client cannot be shared across processes)"
        )
    first = store()
    if not isinstance(first, SyncStore):
        raise ConfigurationError(
            f"the factory must return a QdrantStore, MilvusStore or PineconeStore, not "
            f"{type(first).__name__}"
        )
    try:
        if not first.traits.multi_process:
            raise ConfigurationError(
                "this store is an embedded one (Milvus Lite file, Qdrant local path or "
                ":memory:) that only one process can open: use writers=1"
            )
        first.create()
    finally:
        _close(first)
    sink = _sink_class()(store, layout, batch_size)
    ds.write_datasink(
        sink,
        concurrency=writers,
        ray_remote_args={"max_retries": max_retries, "retry_exceptions": list(TRANSIENT_ERRORS)},
    )
    result: WriteResult = sink.result
    last = store()
    try:
        last.create()
        _delete_stale(last, result.chunks)
    finally:
        _close(last)
    return result


def _delete_stale(store: SyncStore, chunks: dict[str, int]) -> None:
    """Drop chunks past each written document's new count (a shorter new version)."""
    if chunks:
        store.delete(keep_chunks=chunks)
