"""Ray Data: embed a ``ray.data.Dataset`` on an actor pool and write it to a vector store.

Ray schedules, retries and moves the data; this module supplies three things and nothing
else: the embedding stage (a callable class run by ``Dataset.map_batches`` on an
``ActorPoolStrategy``, one provider per actor), the document-true grouping for late chunking
(``Dataset.groupby(document_column).map_groups``: a document's chunks arrive in one call), and
the store writers (the driver for embedded stores, a Ray ``Datasink`` for servers and Pinecone).
Every id is deterministic (uuid5, as the stores make them), so a task that Ray retries, or an
actor it restarts, rewrites the same points: a run ends with exactly one point per row.

Install with ``pip install 'jv3-integrations[ray]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..core._errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    InputError,
    InputTypeError,
    RateLimitError,
    ServerError,
    missing_extra,
)
from ..core._late_chunking import embed_chunks_many
from ..core._load import load_provider
from ..core._progress import progress
from ..core._types import Task, TaskLike, resolve_task
from ._store import Record, SyncStore, _check_metadata, chunk_point_id, point_id

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise missing_extra("ray", "ray[data]") from exc

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["WriteResult", "embed_dataset", "write_store"]

logger = logging.getLogger(__name__)

#: Tokens per embedding call inside an actor (padded: rows x longest row), by default.
DEFAULT_BATCH_TOKENS = 16384
#: Rows Ray hands an embedding actor at once (cut into calls of ``batch_tokens``).
ROWS_PER_BATCH = 512
#: Retries of a failed batch (transient API errors, a dead actor) and restarts of an actor.
DEFAULT_MAX_RETRIES = 3
#: Errors an embedding batch is retried on by Ray (after the provider's own retries).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RateLimitError,
    ServerError,
    APITimeoutError,
    APIConnectionError,
)
#: ``load_provider`` options that are secrets: they must reach workers through the environment.
_SECRET_OPTIONS = frozenset({"api_key", "token", "key"})

Vectors = npt.NDArray[np.float32]


def _ray() -> Any:
    return ray


# -- checks on the driver (before any work) -------------------------------------------------


def _check_spec(provider: object) -> str:
    if not isinstance(provider, str):
        raise ConfigurationError(
            "provider must be a load_provider spec string ('local:DIR_OR_ID', 'api', "
            f"'http://host:port'), not {type(provider).__name__}: every Ray actor builds its own "
            "provider from it (a provider object would be pickled into Ray's object store, "
            "with its key)"
        )
    spec = provider.strip()
    if spec.startswith("local:"):  # workers may start in another folder: make it absolute
        target = Path(spec[len("local:") :].strip()).expanduser()
        if target.exists():
            spec = f"local:{target.resolve()}"
    return spec


def _check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InputTypeError(f"provider_options must be a dict, not {type(options).__name__}")
    secret = sorted(k for k in options if k in _SECRET_OPTIONS)
    if secret:
        raise ConfigurationError(
            f"provider_options has {', '.join(secret)}: Ray would pickle it into its object store; "
            "give workers the key through the environment instead (JINA_API_KEY in the "
            "cluster's environment, or ray.init(runtime_env={'env_vars': {...}}))"
        )
    return dict(options)


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _columns(ds: Any) -> list[str]:
    try:
        schema = ds.schema()
    except Exception as exc:  # pyarrow cannot unify the blocks' types (mixed values)
        raise InputTypeError(
            f"the Dataset's schema cannot be read ({type(exc).__name__}: {exc}); a column "
            "probably mixes types (e.g. str and int): cast it first"
        ) from None
    if schema is None:
        return []
    return list(schema.names)


def _require_columns(columns: list[str], needed: dict[str, str | None]) -> None:
    for role, name in needed.items():
        if name is not None and name not in columns:
            raise InputError(
                f"the Dataset has no column {name!r} (the {role}); its columns are "
                f"{columns}; pass {role}=... with one of them"
            )


def _scan(table: pa.Table, text_column: str, extra: list[str], no_empty: bool) -> pa.Table:
    """One row per batch: how many texts are not str (or empty), and the first bad one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(text_column)
    bad = 0
    first = ""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        empty = (pc.sum(pc.equal(pc.utf8_length(column), 0)).as_py() or 0) if no_empty else 0
        if not column.null_count and not empty:  # all str (and non-empty): the common case
            column = column.slice(0, 0)
    for i, value in enumerate(column.to_pylist()):
        if not isinstance(value, str) or (no_empty and not value):
            if not bad:
                shown = repr(value) if not isinstance(value, str) else "an empty str"
                first = f"row {i} of a block is {type(value).__name__} {shown[:40]}"
            bad += 1
    nulls = {c: table.column(c).null_count for c in extra}
    return pa.table(
        {
            "bad": [bad],
            "first": [first],
            "null_column": [next((c for c, n in nulls.items() if n), "")],
        }
    )


def _validate_rows(
    ds: Any, text_column: str, extra: list[str], no_empty: bool, remote_args: dict[str, Any]
) -> None:
    """Read the text column once (a cheap Ray pass) so a bad value fails before any work."""
    summary = (
        ds.select_columns([text_column, *extra])
        .map_batches(
            _scan,
            fn_args=(text_column, extra, no_empty),
            batch_format="pyarrow",
            batch_size=None,
            **{k: v for k, v in remote_args.items() if k == "runtime_env"},
        )
        .take_all()
    )
    total = sum(int(row["bad"]) for row in summary)
    if total:
        first = next(row["first"] for row in summary if row["bad"])
        what = "a non-empty str (late chunking embeds every chunk)" if no_empty else "a str"
        raise InputTypeError(
            f"column {text_column!r} has {total} values that are not {what} ({first}); "
            "drop or fix those rows, or cast the column to strings, before embedding"
        )
    for row in summary:
        if row["null_column"]:
            raise InputError(
                f"column {row['null_column']!r} has missing (null) values; every chunk needs "
                "its document and its position in it"
            )


def _probe(spec: str, options: dict[str, Any], task: Task | None, dimensions: int | None) -> str:
    """Runs on a worker: build the provider and embed one text. Returns the model name."""
    provider = load_provider(spec, **options)
    try:
        provider.embed(["probe"], task=task, dimensions=dimensions)
        return provider.model_name
    finally:
        provider.close()


def _check_provider_on_workers(
    spec: str,
    options: dict[str, Any],
    task: Task | None,
    dimensions: int | None,
    num_gpus: float,
    remote_args: dict[str, Any],
) -> None:
    ray = _ray()
    if num_gpus:
        have = float(ray.cluster_resources().get("GPU", 0))
        if have < num_gpus:
            raise ConfigurationError(
                f"num_gpus={num_gpus} per actor, but the Ray cluster has {have:g} GPUs; "
                "connect to a cluster with GPUs (ray.init(address=...)) or use num_gpus=0"
            )
    args: dict[str, Any] = {"num_gpus": num_gpus or None, "max_retries": 0}
    if "runtime_env" in remote_args:
        args["runtime_env"] = remote_args["runtime_env"]
    ref = ray.remote(**args)(_probe).remote(spec, options, task, dimensions)
    try:
        ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        raise ConfigurationError(
            f"the provider {_redact(spec)} does not load on the Ray workers: "
            f"{type(cause).__name__}: {cause}. Check that the model path exists on every "
            "node (or use a Hub id), that jv3-integrations with its extras is installed "
            "there, and that keys are in the workers' environment"
        ) from None


def _redact(spec: str) -> str:
    from urllib.parse import urlsplit

    if spec.startswith(("http://", "https://")):
        parts = urlsplit(spec)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    return repr(spec)


# -- the embedding stage (runs in Ray actors) -----------------------------------------------


def _texts(table: pa.Table, column: str) -> list[str]:
    values: list[Any] = table.column(column).to_pylist()
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise InputTypeError(
                f"column {column!r} row {i} of a batch is {type(v).__name__}, not str"
            )
    return values


def _pack(counts: Sequence[int], budget: int) -> list[list[int]]:
    """Row indices in calls of at most ``budget`` padded tokens (rows x longest), longest first.

    A row longer than ``budget`` is a call of its own; every row is in exactly one call.
    """
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    calls: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = counts[current[0]] if current else counts[i]
        if current and (len(current) + 1) * longest > budget:
            calls.append(current)
            current = []
        current.append(i)
    if current:
        calls.append(current)
    return calls


def _tensor_column(vectors: Vectors) -> Any:
    from ray.data.extensions import ArrowTensorArray

    return ArrowTensorArray.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))


class _Embedder:
    """One actor: one provider (the model loads once, here), any number of batches."""

    def __init__(
        self,
        spec: str,
        options: dict[str, Any],
        task: Task | None,
        dimensions: int | None,
        batch_tokens: int,
        text_column: str,
        output_column: str,
        order_column: str | None,
    ) -> None:
        self.provider = load_provider(spec, **options)
        self.provider.load()
        self.task = task
        self.dimensions = dimensions
        self.batch_tokens = batch_tokens
        self.text_column = text_column
        self.output_column = output_column
        self.order_column = order_column

    def __call__(self, table: pa.Table) -> pa.Table:
        if self.order_column is not None:
            return self._document(table)
        texts = _texts(table, self.text_column)
        if not texts:
            return table
        counts = self.provider.count_tokens(texts, task=self.task).counts
        dims = self.dimensions or self.provider.dimensions
        vectors = np.empty((len(texts), dims), dtype=np.float32)
        for call in _pack(counts, self.batch_tokens):
            emb = self.provider.embed(
                [texts[i] for i in call], task=self.task, dimensions=self.dimensions
            )
            vectors[call] = emb.vectors
        return table.append_column(self.output_column, _tensor_column(vectors))

    def _document(self, table: pa.Table) -> pa.Table:
        """All the chunks of one document (map_groups), embedded together in order."""
        import pyarrow.compute as pc

        order = str(self.order_column)
        if pc.count_distinct(table.column(order)).as_py() != table.num_rows:
            raise InputError(
                f"a document has two chunks with the same {order!r}; each chunk needs its own "
                "position"
            )
        table = table.sort_by(order)
        chunks = _texts(table, self.text_column)
        embedded = embed_chunks_many(
            self.provider, [chunks], task=self.task, dimensions=self.dimensions
        )[0]
        vectors = np.stack([c.vector for c in embedded]).astype(np.float32, copy=False)
        return table.append_column(self.output_column, _tensor_column(vectors))


def embed_dataset(
    ds: Any,
    provider: str,
    *,
    text_column: str = "text",
    output_column: str = "embedding",
    task: TaskLike = Task.RETRIEVAL_PASSAGE,
    dimensions: int | None = None,
    late_chunking: bool = False,
    document_column: str | None = None,
    order_column: str | None = None,
    concurrency: int = 1,
    num_gpus: float = 0,
    batch_tokens: int | None = None,
    provider_options: Mapping[str, Any] | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    validate: bool = True,
    shuffle_partitions: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
) -> Any:
    """Add a float32 vector column to a Ray Dataset, embedded on a pool of Ray actors.

    ``concurrency`` actors each build their own provider from the ``provider`` spec (the model
    loads once per actor, never per batch) and embed the batches Ray hands them, cut into
    calls of at most ``batch_tokens`` padded tokens: a 2,048-token row costs what it costs.
    Every other column is kept. The result is lazy (consume it, or give it to
    :func:`write_store`); rows may come back in another order, so key them by an id column.

    With ``late_chunking=True`` the rows that share ``document_column`` are the chunks of one
    document in ``order_column`` order: Ray groups them (``groupby(...).map_groups``) so a
    document is embedded in one call, never split across batches or actors, exactly as
    :func:`~jv3_integrations.core.embed_chunks_many` does it (the local model late-chunks long
    documents itself; over the API, the same windows).

    Before returning it checks, on the driver: the columns exist; one cheap pass over the text
    column (``validate=False`` skips it) that every value is a str; and, in one Ray task, that
    the provider spec loads and embeds on the workers (with ``num_gpus`` if set).

    Secrets: an API key reaches the actors through their environment (``JINA_API_KEY`` in the
    cluster's environment, or ``ray.init(runtime_env={"env_vars": {...}})``), never as an
    argument: ``provider_options`` with ``api_key`` is refused, because Ray pickles arguments
    into its object store.

    API provider bound: each actor's provider keeps at most its ``max_concurrency`` requests
    in flight (``provider_options={"max_concurrency": N}``, default 4), so the whole cluster
    has at most ``concurrency x max_concurrency`` requests in flight. 429s and 5xx are retried
    by the provider in the actor, as in-process; a batch that still fails with such an error
    (or whose actor dies) is retried by Ray up to ``max_retries`` times. Retries rewrite the
    same rows, so no text is lost or duplicated.

    Args:
        ds: A ``ray.data.Dataset``.
        provider: A :func:`~jv3_integrations.core.load_provider` spec: ``"local:DIR_OR_ID"``
            (a path that exists here is made absolute; it must exist on every node),
            ``"api"`` or ``"http(s)://host:port"`` (e.g. ``jv3 serve``).
        text_column: Column with the texts (str).
        output_column: Column to add (float32 vectors of ``dimensions``).
        task: Task adapter (default ``retrieval.passage``).
        dimensions: Matryoshka size (default: the provider's).
        late_chunking: Embed each document's chunks together (needs the two columns below).
        document_column: Column naming each row's document (late chunking).
        order_column: Column giving each chunk's position in its document (late chunking).
        concurrency: Number of embedding actors.
        num_gpus: GPUs per actor (e.g. 1; the local model then runs on CUDA).
        batch_tokens: Padded tokens per embedding call (default 16,384).
        provider_options: Extra ``load_provider`` arguments (no secrets), e.g.
            ``{"max_concurrency": 8}`` or ``{"dtype": "float16"}``.
        max_retries: Ray retries of a failed batch and restarts of a dead actor.
        validate: Read the text column once up front to fail fast on a bad value.
        shuffle_partitions: Partitions of the late-chunking group-by (Ray's hash shuffle;
            default ``DataContext.min_parallelism``): about one per 32 MiB of text.
        ray_remote_args: More Ray options for the actors (``runtime_env``, ``resources``).

    Returns:
        The lazy ``ray.data.Dataset`` with ``output_column`` added.

    Raises:
        MissingDependencyError: Ray is not installed (the message is the pip command).
        InputError: a missing column, a bad argument, late chunking without its columns.
        InputTypeError: a text that is not a str.
        ConfigurationError: the provider spec does not load on the workers; a secret in
            ``provider_options``; more GPUs asked for than the cluster has.

    Example:
        >>> ds = ray.data.from_items([{"id": "a", "text": "Berlin is..."}])  # doctest: +SKIP
        >>> out = embed_dataset(ds, "local:jinaai/jina-embeddings-v3", concurrency=2,
        ...                     num_gpus=1)  # doctest: +SKIP
    """
    ray = _ray()
    spec = _check_spec(provider)
    options = _check_options(provider_options)
    resolved = resolve_task(task)
    if dimensions is not None:
        _check_count("dimensions", dimensions)
    concurrency = _check_count("concurrency", concurrency)
    max_retries = _check_count("max_retries", max_retries, 0)
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or num_gpus < 0:
        raise InputError(f"num_gpus must be a number >= 0, got {num_gpus!r}")
    tokens = _check_count(
        "batch_tokens", DEFAULT_BATCH_TOKENS if batch_tokens is None else batch_tokens
    )
    if shuffle_partitions is not None:
        _check_count("shuffle_partitions", shuffle_partitions)
    remote = dict(ray_remote_args or {})
    if late_chunking and (document_column is None or order_column is None):
        raise InputError(
            "late_chunking=True needs document_column= (which document each chunk belongs to) "
            "and order_column= (the chunk's position in it)"
        )
    if not isinstance(ds, ray.data.Dataset):
        raise InputTypeError(f"ds must be a ray.data.Dataset, not {type(ds).__name__}")
    columns = _columns(ds)
    needed: dict[str, str | None] = {"text_column": text_column}
    if late_chunking:
        needed |= {"document_column": document_column, "order_column": order_column}
    _require_columns(columns, needed)
    if output_column in columns:
        raise InputError(
            f"the Dataset already has a column {output_column!r}; pass another output_column="
        )
    if validate:
        extra = [c for c in (document_column, order_column) if late_chunking and c]
        _validate_rows(ds, text_column, extra, late_chunking, remote)
    _check_provider_on_workers(spec, options, resolved, dimensions, num_gpus, remote)

    compute = ray.data.ActorPoolStrategy(size=concurrency)
    remote.setdefault("max_restarts", max_retries)
    remote.setdefault("max_task_retries", max_retries)
    args: dict[str, Any] = {
        "fn_constructor_args": (
            spec,
            options,
            resolved,
            dimensions,
            tokens,
            text_column,
            output_column,
            order_column if late_chunking else None,
        ),
        "compute": compute,
        "batch_format": "pyarrow",
        "num_gpus": num_gpus or None,
        **remote,
    }
    if late_chunking:
        grouped = ds.groupby(document_column, num_partitions=shuffle_partitions)
        out = grouped.map_groups(_Embedder, **args)
    else:
        out = ds.map_batches(_Embedder, batch_size=ROWS_PER_BATCH, **args)
    # Ray retries an actor's batch on these application errors (it always does on a dead actor)
    out.context.actor_task_retry_on_errors = list(TRANSIENT_ERRORS)
    return out


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
        meta = _check_metadata({k: _plain(batch[k][i]) for k in keys}, f"row {i} metadata")
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
            pid = point_id(key)
        else:
            pid = point_id(text)
        records.append(Record(pid, text, meta))
    return records, vectors


def _write_batch(store: SyncStore, batch: Mapping[str, Any], layout: _Layout) -> list[Record]:
    records, vectors = _points(batch, layout, store.dimensions)
    if records:
        store._check_records(records)
        store._upsert(records, *store._split(vectors))
    return records


def _tally(records: list[Record], chunks: dict[str, int]) -> None:
    for r in records:
        doc = r.metadata.get("doc_id")
        if isinstance(doc, str):
            chunks[doc] = max(chunks.get(doc, 0), int(r.metadata["chunk_index"]) + 1)


def _close(store: SyncStore) -> None:
    close = getattr(getattr(store, "client", None), "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing must never mask the result
            logger.debug("closing the store client failed", exc_info=True)


def _single_process(store: SyncStore) -> bool:
    """True for stores one process owns: a Qdrant local path / :memory:, a Milvus Lite file."""
    from importlib.util import find_spec

    if find_spec("qdrant_client") is not None:
        from .qdrant import QdrantStore

        if isinstance(store, QdrantStore):
            opts = store.client.init_options
            return bool(opts.get("path")) or opts.get("location") == ":memory:"
    if find_spec("pymilvus") is not None:
        from .milvus import MilvusStore

        if isinstance(store, MilvusStore):
            return store._client is None and "://" not in store.uri
    return False


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
        if _single_process(first):
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


def _delete_stale(store: SyncStore, chunks: dict[str, int], per_call: int = 256) -> None:
    """Drop chunks past each written document's new count (a shorter new version)."""
    items = list(chunks.items())
    for start in range(0, len(items), per_call):
        store._delete_stale_chunks(dict(items[start : start + per_call]))
