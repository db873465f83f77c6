"""The embedding half of the Ray integration: :func:`embed_dataset` on an actor pool.

A callable class run by ``Dataset.map_batches`` on an ``ActorPoolStrategy`` (one provider per
actor, the model loaded once), and the document-true grouping for late chunking
(``Dataset.groupby(document_column).map_groups``: a document's chunks arrive in one call).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core._errors import ConfigurationError, InputError, InputTypeError
from ...core._late_chunking import embed_chunks_many
from ...core._load import load_provider
from ...core._spec import ProviderSpec
from ...core._types import Task, TaskLike, resolve_task
from ._common import DEFAULT_MAX_RETRIES, TRANSIENT_ERRORS, Vectors, _check_count, _ray

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DEFAULT_BATCH_TOKENS", "embed_dataset"]

logger = logging.getLogger(__name__)

#: The local model's default token budget per forward batch (kept for older imports).
DEFAULT_BATCH_TOKENS = 16384
#: Rows Ray hands an embedding actor at once (one provider call; the provider batches them).
ROWS_PER_BATCH = 512
#: The share of the cluster's CPUs Ray Data's hash shuffle may give its aggregators.
SHUFFLE_CPU_SHARE = 0.25
#: The fewest CPUs a cluster needs for late chunking (a 1-CPU shuffle task and aggregators).
MIN_LATE_CHUNKING_CPUS = 2
#: ``load_provider`` options that are secrets: they must reach workers through the environment.
_SECRET_OPTIONS = frozenset({"api_key", "token", "key"})


# -- checks on the driver (before any work) -------------------------------------------------


def _check_spec(provider: object) -> str:
    if not isinstance(provider, str):
        raise ConfigurationError(
            "provider must be a load_provider spec string ('local:DIR_OR_ID', 'api', "
            f"'http://host:port'), not {type(provider).__name__}: every Ray actor builds its own "
            "provider from it (a provider object would be pickled into Ray's object store, "
            "with its key)"
        )
    # workers may start in another folder: a local directory is made absolute
    return str(ProviderSpec.parse(provider).absolute())


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


def _actor_cpus(concurrency: int, late_chunking: bool) -> float | None:
    """CPUs per embedding actor so that the whole plan fits the cluster's CPUs.

    The actors live for the whole run; beside them Ray must still run one task of 1 CPU at a
    time (the upstream map tasks, the shuffle's map and reduce tasks) and, for late chunking,
    the hash shuffle's aggregators (at most a quarter of the cluster's CPUs, Ray Data's own
    cap). Actors asking for a whole CPU each took them all on a small cluster and the shuffle
    waited forever, so the actors share what is left: ``min(1, (CPUs - reserved) /
    concurrency)`` each (0 is allowed: Ray then only counts them for placement; the model
    still uses the CPU, Ray's CPU count is a scheduling token). None (Ray's default) when the
    cluster reports no CPUs yet (an autoscaling cluster whose head has none).
    """
    total = float(_ray().cluster_resources().get("CPU", 0))
    if total <= 0:
        return None
    reserved = 1.0 + (SHUFFLE_CPU_SHARE * total if late_chunking else 0.0)
    if late_chunking and total < MIN_LATE_CHUNKING_CPUS:
        raise ConfigurationError(
            f"late chunking on Ray needs at least {MIN_LATE_CHUNKING_CPUS} CPUs in the cluster "
            f"(it has {total:g}): the group-by shuffle runs 1-CPU tasks beside its aggregators "
            "and the embedding actors; start Ray with more CPUs (ray.init(num_cpus=2)) or embed "
            "without late chunking"
        )
    share = max(0.0, total - reserved) / concurrency
    return min(1.0, math.floor(share * 100) / 100)


def _redact(spec: str) -> str:
    return repr(ProviderSpec.parse(spec).describe())


# -- the embedding stage (runs in Ray actors) -----------------------------------------------


def _texts(table: pa.Table, column: str) -> list[str]:
    values: list[Any] = table.column(column).to_pylist()
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise InputTypeError(
                f"column {column!r} row {i} of a batch is {type(v).__name__}, not str"
            )
    return values


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
        text_column: str,
        output_column: str,
        order_column: str | None,
    ) -> None:
        self.provider = load_provider(spec, **options)
        self.provider.load()
        self.task = task
        self.dimensions = dimensions
        self.text_column = text_column
        self.output_column = output_column
        self.order_column = order_column

    def __call__(self, table: pa.Table) -> pa.Table:
        if self.order_column is not None:
            return self._document(table)
        texts = _texts(table, self.text_column)
        if not texts:
            return table
        # one call: the provider batches by tokens itself (the local model's batch_tokens)
        emb = self.provider.embed(texts, task=self.task, dimensions=self.dimensions)
        return table.append_column(self.output_column, _tensor_column(emb.vectors))

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


def _check_sizes(
    spec: str,
    options: dict[str, Any],
    num_gpus: float,
    batch_tokens: int | None,
    shuffle_partitions: int | None,
) -> None:
    """Check the sizing arguments; the token budget goes to the provider (it batches)."""
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or num_gpus < 0:
        raise InputError(f"num_gpus must be a number >= 0, got {num_gpus!r}")
    if batch_tokens is not None:
        _check_count("batch_tokens", batch_tokens)
        local = ProviderSpec.parse(spec).is_local
        options.setdefault("batch_tokens" if local else "max_batch_tokens", batch_tokens)
    if shuffle_partitions is not None:
        _check_count("shuffle_partitions", shuffle_partitions)


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
    loads once per actor, never per batch) and embed the batches Ray hands them in one
    provider call each: the provider cuts it by tokens itself (the local model into forward
    batches of ``batch_tokens`` padded tokens, the API client into requests), so a 2,048-token
    row costs what it costs and nothing is batched twice.
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
        concurrency: Number of embedding actors. They share the cluster's CPUs that the
            rest of the plan leaves: ``min(1, (CPUs - 1 - shuffle) / concurrency)`` CPUs each,
            where ``shuffle`` is a quarter of the CPUs with late chunking (Ray Data's hash
            shuffle), else 0; ``ray_remote_args={"num_cpus": ...}`` overrides it.
        num_gpus: GPUs per actor (e.g. 1; the local model then runs on CUDA).
        batch_tokens: The provider's token budget: the local model's ``batch_tokens`` (padded
            tokens per forward batch), the API client's ``max_batch_tokens`` (per request).
            Default: the provider's own (16,384 tokens, or from free GPU memory).
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
            ``provider_options``; more GPUs asked for than the cluster has; late chunking on
            a cluster with fewer than 2 CPUs.

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
    _check_sizes(spec, options, num_gpus, batch_tokens, shuffle_partitions)
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
    if "num_cpus" not in remote:  # the actors share what the rest of the plan leaves
        cpus = _actor_cpus(concurrency, late_chunking)
        if cpus is not None:
            remote["num_cpus"] = cpus
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
