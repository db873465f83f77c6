"""``jv3 index --engine ray``: chunk and embed the files on a Ray cluster (Ray Data).

The driver does what the local engine does before and after embedding (discovery, content
hashes, the index state, deleting removed files, the summary); in between, the files to embed
go into a Ray Dataset, are chunked in parallel Ray tasks (``flat_map``), embedded on the actor
pool of :func:`jv3_integrations.ray.embed_dataset` (late chunking grouped by file) and written
to the store by :func:`jv3_integrations.ray.write_store` with the same deterministic ids, so the
store ends as ``--engine local`` leaves it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..core import EmbeddingProvider, Task
from ..core._errors import ConfigurationError
from ..core._spec import ProviderSpec
from .state import FileEntry

__all__ = ["RayEngine"]

logger = logging.getLogger(__name__)

#: Text per shuffle partition when late chunking groups the chunks by file.
_BYTES_PER_PARTITION = 32 * 1024 * 1024


#: Ray's C++ log level while it starts, unless JV3_DEBUG (its warnings went to our stderr).
_QUIET_BACKEND_LEVEL = "fatal"
#: Seconds to wait for the watchdog to finish its sweep after a clean shutdown.
_REAPER_WAIT_S = 30


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_ray() -> Iterator[None]:
    """Keep Ray's and Ray Data's log lines off stderr (they still go to Ray's log files)."""
    import ray.data

    changed: list[tuple[Any, int]] = []
    loggers = [logging.getLogger(n) for n in ("ray", "ray.data", "ray.train", "ray.tune")]
    for log in loggers:
        changed.append((log, log.level))
        log.setLevel(logging.ERROR)
        for handler in log.handlers:
            if not isinstance(handler, logging.FileHandler):
                changed.append((handler, handler.level))
                handler.setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    printed = context.print_on_execution_start
    context.print_on_execution_start = False
    try:
        with warnings.catch_warnings():  # Ray Data's advice (e.g. "fewer inputs than actors")
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
            yield
    finally:
        context.print_on_execution_start = printed
        for item, level in reversed(changed):
            item.setLevel(level)


@contextlib.contextmanager
def _ray_started_here(ray: Any, address: str | None, debug: bool) -> Iterator[None]:
    """``ray.init`` for this command and ``ray.shutdown`` after it.

    A local cluster (no address) lives in its own temp folder, watched by
    :mod:`._ray_reaper`: however this process ends (even ``kill -9``), no Ray process of that
    cluster outlives it. A start-up failure is one :class:`ConfigurationError` line.
    """
    local = address is None and not os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {
        "address": address,
        "include_dashboard": False,
        "log_to_driver": debug,  # the workers' prints and logs: behind JV3_DEBUG
        "logging_level": logging.INFO if debug else logging.ERROR,
    }
    reaper: subprocess.Popen[bytes] | None = None
    if local and os.name == "posix":  # the watchdog waits on a pipe with select()
        # short: Ray's socket paths (AF_UNIX, 107 bytes) live under it
        root = "/tmp" if os.path.isdir("/tmp") else None
        folder = tempfile.mkdtemp(prefix="jv3-ray-", dir=root)
        reaper = subprocess.Popen(
            [sys.executable, "-m", "jv3_integrations._cli._ray_reaper", str(os.getpid()), folder],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches this process; the watchdog cleans after
        )
        options["_temp_dir"] = folder
    saved = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    if not debug and saved is None:
        os.environ["RAY_BACKEND_LOG_LEVEL"] = _QUIET_BACKEND_LEVEL
    try:
        with contextlib.ExitStack() as quiet:
            if not debug:  # Ray's C++ core prints to fd 2 while it starts
                quiet.enter_context(_stderr_to_devnull())
            ray.init(**options)
    except Exception as exc:
        _stop_reaper(reaper)
        if debug:
            raise
        if not local:
            where = address or os.environ.get("RAY_ADDRESS")
            raise ConfigurationError(
                f"cannot reach the Ray cluster at {where!r} ({_first_line(exc)}); check "
                "--ray-address (or RAY_ADDRESS), or leave it out to run Ray on this machine"
            ) from None
        raise ConfigurationError(
            f"Ray could not start on this machine ({_first_line(exc)}); check that /tmp has "
            "free space and the machine a few GB of free memory (Ray's object store), or "
            "connect to a running cluster with --ray-address; JV3_DEBUG=1 shows Ray's output"
        ) from None
    finally:
        if not debug and saved is None:
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
    try:
        yield
    finally:
        try:
            ray.shutdown()
        finally:
            _stop_reaper(reaper)


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null (native code writes there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    """Close the watchdog's stdin (it then sweeps the cluster's folder) and wait for it."""
    if reaper is None:
        return
    if reaper.stdin is not None:
        reaper.stdin.close()
    try:
        reaper.wait(timeout=_REAPER_WAIT_S)
    except subprocess.TimeoutExpired:  # pragma: no cover - it sweeps for seconds
        logger.debug("the Ray watchdog is still sweeping; leaving it to finish")


@functools.lru_cache(maxsize=4)
def _chunker(chunker_spec: str, spec: str, dimensions: int | None) -> Any:
    from .index_settings import build_chunker
    from .providers import make_provider

    return build_chunker(chunker_spec, make_provider(spec, dimensions))


def _chunk_rows(
    row: dict[str, Any], chunker_spec: str, spec: str, dimensions: int | None
) -> list[dict[str, Any]]:
    """One file's chunks as rows (runs in a Ray task); empty chunks dropped, as add_documents."""
    chunks = [c for c in _chunker(chunker_spec, spec, dimensions).chunk(row["text"]) if c.text]
    return [
        {
            "text": c.text,
            "doc_id": row["key"],
            "chunk_index": j,
            "path": row["key"],
            "hash": row["hash"],
            "start": c.start,
            "end": c.end,
        }
        for j, c in enumerate(chunks)
    ]


@dataclass
class RayEngine:
    """Where and how wide ``jv3 index`` embeds on Ray.

    Attributes:
        address: A Ray cluster address (``ray://host:10001``, ``auto``); None starts a local
            Ray on this machine (unless this process is already connected to one).
        workers: Embedding actors.
        gpus_per_worker: GPUs per actor (0: CPU).
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0

    def embed_files(
        self,
        store: Any,
        to_embed: list[tuple[str, str, str]],
        *,
        chunker: Any,
        spec: str,
        dimensions: int | None,
        chunker_spec: str,
        late: bool,
        provider: EmbeddingProvider,
        files: dict[str, FileEntry],
        report: Any,
        show_progress: bool,
    ) -> None:
        """Embed ``to_embed`` (``(key, text, digest)``, none empty) into ``store``; update
        ``files``."""
        from ..core._errors import missing_extra

        try:
            import ray
            import ray.data
        except ImportError as exc:
            raise missing_extra("ray", "ray[data]") from exc
        from ..stores import chunk_point_id

        docs = to_embed  # the indexer has dealt with empty files (they only lose old chunks)
        local = ProviderSpec.parse(spec).is_local
        if not docs:
            return
        debug = os.environ.get("JV3_DEBUG", "").strip() not in {"", "0"}
        with contextlib.ExitStack() as stack:
            if not debug:
                stack.enter_context(_quiet_ray())
            if not ray.is_initialized():
                stack.enter_context(_ray_started_here(ray, self.address, debug))
            result = self._run(
                ray,
                store,
                docs,
                chunker_spec=chunker_spec,
                spec=spec,
                dimensions=dimensions,
                late=late,
                show_progress=show_progress,
                # the workers build their providers from the spec: the same --model as here
                provider_options=None if local else {"model": provider.model_name},
            )
        for key, text, digest in docs:
            count = result.chunks.get(key, 0)
            if not count:
                raise ConfigurationError(f"{key}: Ray returned no chunks for this file")
            new_ids = [chunk_point_id(key, j) for j in range(count)]
            old = files.get(key)
            if old is not None:
                report.chunks_deleted += len(set(old.ids) - set(new_ids))
            tokens, estimated = 0, True
            try:  # token counts are informative only (as in the local engine)
                counted = provider.count_tokens([text], task=Task.RETRIEVAL_PASSAGE)
                tokens, estimated = counted.total, not counted.exact
            except Exception:
                logger.debug("count_tokens failed", exc_info=True)
            report.tokens += tokens
            report.tokens_estimated = report.tokens_estimated or estimated
            files[key] = FileEntry(hash=digest, ids=new_ids, tokens=tokens)
            report.files_embedded += 1
            report.chunks_embedded += count

    def _run(
        self,
        ray: Any,
        store: Any,
        docs: list[tuple[str, str, str]],
        *,
        chunker_spec: str,
        spec: str,
        dimensions: int | None,
        late: bool,
        show_progress: bool,
        provider_options: dict[str, Any] | None = None,
    ) -> Any:
        from ..ray import embed_dataset, write_store

        size = sum(len(text) for _, text, _ in docs)
        ds = ray.data.from_items(
            [{"key": key, "text": text, "hash": digest} for key, text, digest in docs],
            override_num_blocks=max(1, min(len(docs), 4 * self.workers)),
        )
        ds.context.enable_progress_bars = show_progress
        chunks = ds.flat_map(
            functools.partial(
                _chunk_rows, chunker_spec=chunker_spec, spec=spec, dimensions=dimensions
            )
        )
        embedded = embed_dataset(
            chunks,
            spec,
            dimensions=dimensions,
            late_chunking=late,
            provider_options=provider_options,
            document_column="doc_id",
            order_column="chunk_index",
            concurrency=self.workers,
            num_gpus=self.gpus_per_worker,
            validate=False,  # the texts are the files' own str chunks
            shuffle_partitions=max(1, min(200, size // _BYTES_PER_PARTITION + 1)),
        )
        result = write_store(
            embedded,
            store,
            document_column="doc_id",
            chunk_column="chunk_index",
            metadata_columns=["path", "hash", "start", "end"],
            progress_bar=show_progress,
        )
        return result
