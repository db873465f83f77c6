"""``jv3 index --engine ray``: chunk and embed the files on a Ray cluster (Ray Data).

The driver does what the local engine does before and after embedding (discovery, content
hashes, the index state, deleting removed files, the summary); in between, the files to embed
go into a Ray Dataset, are chunked in parallel Ray tasks (``flat_map``), embedded on the actor
pool of :func:`jv3_integrations.ray.embed_dataset` (late chunking grouped by file) and written
to the store by :func:`jv3_integrations.ray.write_store` with the same deterministic ids, so the
store ends as ``--engine local`` leaves it.
"""

from __future__ import annotations

import functools
import logging
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


@functools.lru_cache(maxsize=4)
def _chunker(chunker_spec: str, spec: str, dimensions: int | None) -> Any:
    from .indexer import build_chunker
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
        from ..ray import embed_dataset, write_store
        from ..stores import chunk_point_id

        docs = to_embed  # the indexer has dealt with empty files (they only lose old chunks)
        local = ProviderSpec.parse(spec).is_local
        if not docs:
            return
        started = False
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise ConfigurationError(
                    f"cannot reach the Ray cluster at {self.address!r} ({exc}); check "
                    "--ray-address, or leave it out to run Ray on this machine"
                ) from None
            started = True
        try:
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
                # the workers build their providers from the spec: the same --model as here
                provider_options=None if local else {"model": provider.model_name},
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
        finally:
            if started:
                ray.shutdown()
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
