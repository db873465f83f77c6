"""What ``jv3 search`` does: embed the queries with the index's settings and search the store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..core import (
    ConfigurationError,
    EmbeddingProvider,
    InputError,
    Jv3Error,
    default_provider_spec,
)
from ..core._models import MODELS
from ..core._spec import ProviderSpec
from .files import display_path
from .generation import check_generation
from .output import DisplayHit
from .providers import make_provider
from .state import StateFile, redact_spec
from .stores import close_store, open_store
from .uri import StoreURI, parse_store_uri
from .warn import Warn

__all__ = ["SearchOptions", "run_search"]


@dataclass
class SearchOptions:
    """``jv3 search`` arguments (several queries are embedded in one call)."""

    queries: Sequence[str]
    store: str
    collection: str = "jv3"
    provider: str | None = None
    #: ``--model``: must be the index's (None: the model the index was built with).
    model: str | None = None
    k: int = 5
    provider_instance: EmbeddingProvider | None = None
    #: ``hybrid``, ``dense`` or ``keyword``; None: hybrid if the index was built with it.
    mode: str | None = None


def run_search(opts: SearchOptions, warn: Warn) -> list[list[DisplayHit]]:
    """Embed the queries (``retrieval.query``) with the index's settings and search the store.

    Returns:
        One ranked hit list per query.
    """
    if not opts.queries or any(not q.strip() for q in opts.queries):
        raise InputError("the query is empty; give the words to search for")
    if opts.k < 1:
        raise InputError(f"--k must be a positive integer, got {opts.k}")
    uri = parse_store_uri(opts.store)
    state = StateFile(uri.state_path())
    settings = (
        state.collection(opts.collection).settings
        if state.has_collection(opts.collection)
        else None
    )
    if settings is None and uri.local and (uri.memory or not uri.path.exists()):
        raise ConfigurationError(
            f"nothing is indexed in {uri.display()} [{opts.collection}]; run "
            "`jv3 index PATH...` first (or pass the --store you indexed into)"
        )
    if settings is not None and opts.model is not None and opts.model != settings.model:
        raise ConfigurationError(
            f"{uri.display()} [{opts.collection}] was built with model {settings.model!r}, not "
            f"{opts.model!r}; search without --model (queries must use the index's model)"
        )
    spec = opts.provider or (settings.provider if settings else None) or default_provider_spec()
    model = opts.model
    if model is None and settings is not None and settings.model in MODELS:
        model = settings.model if not ProviderSpec.parse(spec).is_local else None
    provider = opts.provider_instance or make_provider(
        spec, settings.dimensions if settings else None, model
    )
    if settings is not None and provider.model_name != settings.model:
        raise ConfigurationError(
            f"collection {opts.collection!r} in {uri.display()} was built with model "
            f"{settings.model!r}; provider {redact_spec(spec)} gives {provider.model_name!r}. "
            f"Use --provider {settings.provider}"
        )
    dims = settings.dimensions if settings else provider.dimensions
    hybrid = settings.hybrid if settings else False
    if opts.mode not in (None, "dense") and not hybrid:
        raise ConfigurationError(
            f"--mode {opts.mode} needs keyword vectors, but {uri.display()} [{opts.collection}] "
            "was indexed without --hybrid; index with `jv3 index --hybrid` into a new "
            "--collection, or search with --mode dense"
        )
    indexed = [e for e in state.collection(opts.collection).files.values() if e.ids]
    with _unreadable_store_is_said(uri, opts.collection, len(indexed)):
        store = open_store(uri, opts.collection, provider, dims, hybrid)
    try:
        with _unreadable_store_is_said(uri, opts.collection, len(indexed)):
            count = int(store.count())
        if settings is None and count == 0:
            raise ConfigurationError(
                f"nothing is indexed in {uri.display()} [{opts.collection}]; run "
                "`jv3 index PATH...` first"
            )
        if indexed and count == 0:
            raise ConfigurationError(
                f"the index state lists {len(indexed)} indexed files for {uri.display()} "
                f"[{opts.collection}] but the store holds no chunks (missing, emptied or "
                "corrupt); rebuild it with `jv3 index --rebuild PATH...`"
            )
        if count:
            generation = state.collection(opts.collection).generation
            check_generation(store, generation, f"{uri.display()} [{opts.collection}]")
        raw = store.search_many(list(opts.queries), k=opts.k, mode=opts.mode)
    finally:
        close_store(store)
    return [[_hit(h) for h in row] for row in raw]


@contextmanager
def _unreadable_store_is_said(uri: StoreURI, collection: str, indexed: int) -> Iterator[None]:
    """A local store that fails to open or count while the state lists files is damaged."""
    try:
        yield
    except Jv3Error:
        raise
    except Exception as exc:
        if not indexed or not uri.local or uri.memory:
            raise
        reason = " ".join(str(exc).split())[:200]
        raise ConfigurationError(
            f"the store {uri.display()} [{collection}] cannot be read though the index state "
            f"lists {indexed} indexed files (corrupt? {type(exc).__name__}: {reason}); rebuild "
            "it with `jv3 index --rebuild PATH...`"
        ) from None


def _hit(h: Any) -> DisplayHit:
    meta = dict(h.metadata)
    path = str(meta.get("path") or meta.get("doc_id") or "")
    start, end = meta.get("start"), meta.get("end")
    return DisplayHit(
        score=float(h.score),
        file=display_path(path) if path else "?",
        text=h.text,
        start=int(start) if isinstance(start, int) else None,
        end=int(end) if isinstance(end, int) else None,
        id=str(h.id),
    )
