"""The settings of an index: ``--chunker`` specs, and the provider, dimensions, model and
hybrid flag of a run checked against those the index was built with."""

from __future__ import annotations

from typing import Any

from ..core import (
    CappedChunker,
    ConfigurationError,
    EmbeddingProvider,
    SentenceChunker,
    TokenChunker,
    default_provider_spec,
)
from ..core._models import MODELS
from ..core._provider import check_late_chunking
from ..core._spec import ProviderSpec
from ..core._validate import check_int
from .index_types import IndexOptions, IndexReport
from .providers import _absolute_local, make_provider
from .state import IndexSettings, redact_spec

DEFAULT_CHUNKER = "sentences"
DEFAULT_SENTENCE_CHARS = 1000


def parse_chunker(spec: str) -> str:
    """Normalize a ``--chunker`` value: ``sentences[:MAX_CHARS]`` or ``tokens:N``.

    Raises:
        ConfigurationError: anything else.
    """
    text = spec.strip().lower()
    name, _, arg = text.partition(":")
    if name in {"sentences", "sentence"}:
        size = DEFAULT_SENTENCE_CHARS if not arg else _positive(arg, spec)
        return f"sentences:{size}"
    if name in {"tokens", "token"} and arg:
        return f"tokens:{_positive(arg, spec)}"
    raise ConfigurationError(
        f"unknown chunker {spec!r}; use 'sentences' (sentences grouped up to "
        f"{DEFAULT_SENTENCE_CHARS} characters), 'sentences:MAX_CHARS' or 'tokens:N'"
    )


def _positive(arg: str, spec: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        value = 0
    return check_int(f"chunker {spec!r}: the size", value)


def build_chunker(spec: str, provider: EmbeddingProvider) -> Any:
    """The chunker object for a normalized ``--chunker`` spec (chunks capped in size)."""
    name, _, arg = spec.partition(":")
    if name == "tokens":
        return CappedChunker(TokenChunker(provider, tokens=int(arg)))
    return CappedChunker(SentenceChunker(max_chars=int(arg)))


def resolve_settings(
    opts: IndexOptions, prior: IndexSettings | None, store: str, collection: str
) -> tuple[str, int | None, str, bool]:
    spec = opts.provider or (prior.provider if prior else None) or default_provider_spec()
    dims = opts.dimensions if opts.dimensions is not None else (prior.dimensions if prior else None)
    if prior is not None and dims != prior.dimensions:
        raise ConfigurationError(
            f"store dimension mismatch: collection {collection!r} in {store} holds "
            f"{prior.dimensions}-dimensional vectors, not {dims}; use --dimensions "
            f"{prior.dimensions}, or another --collection or --store"
        )
    chunker = parse_chunker(opts.chunker) if opts.chunker else None
    chunker = chunker or (prior.chunker if prior else parse_chunker(DEFAULT_CHUNKER))
    late = opts.late_chunking
    if late is None:
        late = prior.late_chunking if prior else True
    return spec, dims, chunker, late


def _resolve_model(
    wanted: str | None, prior: IndexSettings | None, spec: str, store: str, collection: str
) -> str | None:
    """``--model``, else the API model the index was built with (None: the provider's)."""
    if prior is None:
        return wanted
    if wanted is not None and wanted != prior.model:
        raise ConfigurationError(
            f"collection {collection!r} in {store} was built with model {prior.model!r}, not "
            f"{wanted!r}; index without --model, or into another --collection"
        )
    local = ProviderSpec.parse(spec).is_local  # a local model's name is its folder's
    return prior.model if prior.model in MODELS and not local else wanted


def _resolve_hybrid(
    wanted: bool | None, prior: IndexSettings | None, store: str, collection: str
) -> bool:
    if prior is None:
        return bool(wanted)
    if wanted is not None and wanted != prior.hybrid:
        built = "with" if prior.hybrid else "without"
        raise ConfigurationError(
            f"collection {collection!r} in {store} was built {built} --hybrid; a collection "
            "cannot change that: use another --collection (or --store) to index "
            f"{'without' if prior.hybrid else 'with'} it"
        )
    return prior.hybrid


def provider_and_settings(
    opts: IndexOptions,
    prior: IndexSettings | None,
    spec: str,
    dims: int | None,
    chunker_spec: str,
    late: bool,
    report: IndexReport,
) -> tuple[EmbeddingProvider, IndexSettings]:
    """The provider of this run and the settings it records (checked against the prior ones)."""
    model = _resolve_model(opts.model, prior, spec, report.store, opts.collection)
    provider = opts.provider_instance or make_provider(spec, dims, model)
    if opts.late_chunking is None and prior is None:  # default: where the model offers it
        late = provider.supports_late_chunking
    if late:
        check_late_chunking(provider, "--late-chunking", "--no-late-chunking")
    settings = IndexSettings(
        model=provider.model_name,
        provider=redact_spec(_absolute_local(spec)),
        dimensions=provider.dimensions,
        chunker=chunker_spec,
        late_chunking=late,
        hybrid=_resolve_hybrid(opts.hybrid, prior, report.store, opts.collection),
    )
    if prior is not None and prior.model != settings.model:
        raise ConfigurationError(
            f"collection {opts.collection!r} in {report.store} was built with model "
            f"{prior.model!r} (provider {prior.provider}); this provider gives "
            f"{settings.model!r}. Use --provider {prior.provider}, or another --collection"
        )
    return provider, settings
