"""What ``jv3 index`` does, over the package's public store adapters (``jv3 search``: search.py).

Indexing is incremental: each file's content hash is kept in the index state (see
:mod:`.state`); unchanged files are skipped, changed files re-embedded (their document id is
their absolute path, so the store replaces their chunks and drops stale ones), and files that
disappeared from an indexed folder have their chunks deleted.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from ..core import ConfigurationError
from ..core._progress import report_to
from .files import Discovery, discover, is_under, nothing_to_index
from .generation import mark_generation
from .index_files import batches, classify, drop_empty, embed_batch, remove_gone
from .index_progress import IndexProgress, bytes_per_token, estimate_tokens
from .index_settings import build_chunker, parse_chunker, provider_and_settings, resolve_settings
from .index_types import IndexInterrupted, IndexOptions, IndexReport
from .providers import _absolute_local
from .state import StateFile, store_lock
from .stores import check_stale, close_store, open_for_index, open_store
from .uri import StoreURI, parse_store_uri
from .warn import Warn

__all__ = [
    "IndexInterrupted",
    "IndexOptions",
    "IndexReport",
    "open_store",
    "parse_chunker",
    "run_index",
]


def run_index(opts: IndexOptions, warn: Warn) -> IndexReport:
    """Index ``opts.paths`` into the store; see the module docstring for what is re-embedded.

    The store's lock is taken before the state is read and held until its last write: a
    second run on the same store waits for this one, then sees what it wrote.
    """
    uri = parse_store_uri(opts.store)
    with store_lock(
        uri.state_path(),
        on_wait=lambda: warn("another `jv3 index` is writing to this store; waiting for it"),
    ):
        return _run_index_locked(opts, uri, warn)


def _run_index_locked(opts: IndexOptions, uri: StoreURI, warn: Warn) -> IndexReport:
    t0 = time.perf_counter()
    state = _open_state(uri, rebuild=opts.rebuild)
    coll = state.collection(opts.collection)
    if opts.rebuild:
        coll.files.clear()
        coll.settings = None
    prior = coll.settings
    report = IndexReport(store=uri.display(), collection=opts.collection)

    found: Discovery = discover(opts.paths, include_hidden=opts.include_hidden)
    if found.missing:
        raise ConfigurationError(f"no such file or folder: {', '.join(found.missing)}")
    report.ignored = dict(found.ignored)

    spec, dims, chunker_spec, late = resolve_settings(opts, prior, report.store, opts.collection)
    # options are checked (above) before an empty walk returns: a bad option is still an error
    if not found.files:  # say so; with nothing indexed before, create no empty store either
        report.warnings.append(nothing_to_index(opts.paths, found))
        warn(report.warnings[-1])
        if not coll.files:
            return report
    provider, settings = provider_and_settings(opts, prior, spec, dims, chunker_spec, late, report)
    late = settings.late_chunking
    rechunk = prior is not None and prior.chunking_key() != settings.chunking_key()
    if rechunk:
        warn("chunker or late-chunking setting changed: re-embedding every file")
    report.settings = settings.to_json()
    chunker = build_chunker(chunker_spec, provider)

    store = open_for_index(opts, uri, provider, settings, warn)
    try:
        if any(e.ids for e in coll.files.values()) and int(store.count()) == 0:
            warn(
                f"the index state lists {len(coll.files)} files but the store is empty "
                "(deleted?): embedding everything again"
            )
            coll.files.clear()
        else:
            store = check_stale(store, opts, uri, coll.generation, provider, settings)
        coll.settings = settings
        to_embed, seen = classify(found, coll.files, rechunk, report, warn)
        gone = [k for k in coll.files if k not in seen and is_under(Path(k), found.roots)]
        if to_embed or gone or opts.rebuild:  # marked before the first write (see generation)
            coll.generation = mark_generation(store, coll.generation)
        if opts.engine is not None:  # e.g. Ray: embeds every file and updates their entries
            opts.engine.embed_files(
                store,
                drop_empty(store, to_embed, coll.files, report),
                chunker=chunker,
                spec=_absolute_local(spec),
                dimensions=dims,
                chunker_spec=chunker_spec,
                late=late,
                provider=provider,
                files=coll.files,
                report=report,
                show_progress=opts.progress,
            )
            to_embed = []
        planned = len(to_embed)
        docs = drop_empty(store, to_embed, coll.files, report)
        saved_before = report.files_embedded
        ratio = bytes_per_token(provider, [text for _, text, _ in docs]) if opts.progress else 4.0
        shown = IndexProgress(
            [estimate_tokens(text, ratio) for _, text, _ in docs],
            enabled=opts.progress,
            interval=opts.progress_interval,
        )
        try:
            # late chunking reports the tokens of each window as it finishes (long documents)
            with report_to(shown) if shown.enabled else nullcontext():
                for batch in batches(docs):
                    shown.start_batch([estimate_tokens(text, ratio) for _, text, _ in batch])
                    embed_batch(store, batch, chunker, late, provider, coll.files, report)
                    state.save()
                    shown.end_batch()
        except KeyboardInterrupt:
            shown.close()
            saved = report.empty + report.files_embedded - saved_before
            raise IndexInterrupted(report, saved=saved, planned=planned) from None
        shown.close()
        remove_gone(store, gone, coll.files, report)
        state.save()
        report.chunks_total = int(store.count())
    finally:
        state.save()
        close_store(store)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _open_state(uri: StoreURI, *, rebuild: bool) -> StateFile:
    """The store's index state; an unreadable one starts over only with ``--rebuild``."""
    try:
        return StateFile(uri.state_path())
    except ConfigurationError:
        if not rebuild:
            raise
        return StateFile(uri.state_path(), fresh=True)
