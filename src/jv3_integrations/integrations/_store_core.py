"""The I/O-free half of every store (sync and async): configuration, planning, checks, facts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core._errors import ConfigurationError, InputError, InputTypeError, Jv3Error
from ..core._load import load_provider
from ..core._provider import (
    EmbeddingProvider,
    check_late_chunking,
    validate_dimensions,
    validate_texts,
)
from ..core._redact import scrub_exception
from ..core._sparse import TermEncoder
from ..core._validate import check_int
from ..core._vecmath import matryoshka
from ._records import (
    _FACT_PREFIX,
    DOC_FIELDS,
    MODES,
    Record,
    StoreTraits,
    Vectors,
    _check_ids,
    _check_metadata,
    _check_parallel,
    _check_size,
    _DocPlan,
    _tag_value,
    chunk_point_id,
    point_id,
)

__all__ = ["StoreCore"]

#: The I/O hooks (and I/O methods) a store implements over its host's client: the one boundary
#: where the host's errors reach us, so the one place their text is cleaned of secrets.
_HOST_CALLS = (
    "create",
    "_upsert",
    "_delete_ids",
    "_delete_stale_chunks",
    "_search",
    "_search_hybrid",
    "count",
    "stats",
    "_close_client",
)


def _scrubbed(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with the host's errors cleaned of every secret the store knows, in place.

    The exception keeps its type (the CLI's damaged-store handling and Ray's retries still
    recognise it); only its text (args, body, reason, headers, chained causes) is masked.
    """
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def guarded_async(self: StoreCore, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            except Jv3Error:
                raise
            except Exception as exc:
                scrub_exception(exc, self._host_secrets())
                raise

        guarded_async.__jv3_scrubbed__ = True  # type: ignore[attr-defined]
        return guarded_async

    @functools.wraps(method)
    def guarded(self: StoreCore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Jv3Error:
            raise
        except Exception as exc:
            scrub_exception(exc, self._host_secrets())
            raise

    guarded.__jv3_scrubbed__ = True  # type: ignore[attr-defined]
    return guarded


class StoreCore:
    """Shared configuration and the I/O-free parts of every store (sync and async)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _HOST_CALLS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__jv3_scrubbed__", False):
                setattr(cls, name, _scrubbed(method))

    def _host_secrets(self) -> list[str | None]:
        """The secrets this store holds (its key or token, its client's); env keys are added
        by the redaction itself."""
        client = getattr(self, "_client", None)
        options = getattr(client, "init_options", None)
        client_key = options.get("api_key") if isinstance(options, dict) else None
        return [
            getattr(self, "_api_key", None),
            getattr(self, "_token", None),
            client_key if isinstance(client_key, str) else None,
        ]

    #: Default number of passages embedded and upserted per batch.
    default_batch_size = 64

    def __init__(
        self,
        *,
        provider: EmbeddingProvider | str | None,
        dimensions: int | None,
        small_dimensions: int | None = None,
        batch_size: int | None = None,
        progress_bar: bool = False,
        hybrid: bool = False,
    ) -> None:
        # No I/O here: a provider's sizes may need a network call (``max_dimensions`` of a
        # self-hosted server is read from its GET /v1/models), so they are checked on first use.
        self.provider: EmbeddingProvider = load_provider(provider)
        self._dimensions_arg = _check_size("dimensions", dimensions)
        self._small_arg = _check_size("small_dimensions", small_dimensions)
        if self._dimensions_arg is not None and self._small_arg is not None:
            self._check_small(self._dimensions_arg)
        self._dimensions: int | None = None
        self.batch_size = check_int(
            "batch_size",
            self.default_batch_size if batch_size is None else batch_size,
            error=InputError,
        )
        self.progress_bar = bool(progress_bar)
        self.hybrid = bool(hybrid)
        #: Client-side keyword term vectors (Qdrant, Pinecone); None where the host analyses
        #: the text itself (Milvus) or without hybrid.
        self.term_encoder: TermEncoder | None = None

    @property
    def dimensions(self) -> int:
        """Vector size: the ``dimensions`` argument, else the provider's (checked on first use).

        Raises:
            ConfigurationError: larger than the model's full size.
        """
        if self._dimensions is None:
            arg = self._dimensions_arg
            dims = self.provider.dimensions if arg is None else arg
            try:
                resolved = validate_dimensions(dims, self.provider.max_dimensions)
            except InputError as exc:
                raise ConfigurationError(str(exc)) from None
            if self._small_arg is not None:
                self._check_small(resolved)
            self._dimensions = resolved
        return self._dimensions

    @property
    def small_dimensions(self) -> int | None:
        """Two-stage search: the size of the small vector (None: one vector per point)."""
        if self._small_arg is not None:
            _ = self.dimensions  # checks small <= full
        return self._small_arg

    def _check_small(self, dimensions: int) -> None:
        if self._small_arg is not None and self._small_arg > dimensions:
            raise ConfigurationError(
                f"small_dimensions must be in 1..{dimensions} (the full dimensions), "
                f"got {self._small_arg!r}"
            )

    def _init_terms(self, term_encoder: TermEncoder | None) -> None:
        """Stores that send term vectors: the encoder (default: the provider's tokenizer)."""
        if term_encoder is not None and not isinstance(term_encoder, TermEncoder):
            raise ConfigurationError(
                f"term_encoder must be a TermEncoder, not {type(term_encoder).__name__}"
            )
        if term_encoder is not None and not self.hybrid:
            raise ConfigurationError("term_encoder is used only with hybrid=True; set it too")
        if self.hybrid:
            self.term_encoder = term_encoder or TermEncoder(provider=self.provider)

    def _load_terms(self) -> None:
        """Load the tokenizer before the first write or query (so a missing one fails early)."""
        if self.term_encoder is not None:
            self.term_encoder.load()

    def _resolve_mode(self, mode: object) -> str:
        """The search mode: ``hybrid`` by default on a hybrid store, else ``dense``."""
        if mode is None:
            return "hybrid" if self.hybrid else "dense"
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "dense" and not self.hybrid:
            raise ConfigurationError(
                f"mode={mode!r} needs keyword vectors, but this store was created without "
                "hybrid=True; recreate it with hybrid=True (and re-index), or use mode='dense'"
            )
        return str(mode)

    # -- planning (pure) -----------------------------------------------------------------

    def _plan_texts(self, texts: Sequence[str], metadatas: object, ids: object) -> list[Record]:
        items = validate_texts(texts)
        metas = _check_parallel("metadatas", metadatas, len(items))
        caller_ids = _check_ids(ids, len(items), "text")
        records = []
        for i, text in enumerate(items):
            meta = _check_metadata(metas[i] if metas is not None else None, f"metadatas[{i}]")
            key = caller_ids[i] if caller_ids is not None else text
            records.append(Record(point_id(key), text, meta))
        self._check_records(records)
        return records

    def _plan_documents(
        self,
        documents: Sequence[str],
        ids: object,
        metadatas: object,
        chunker: Any,
    ) -> list[_DocPlan]:
        docs = validate_texts(documents)
        metas = _check_parallel("metadatas", metadatas, len(docs))
        caller_ids = _check_ids(ids, len(docs), "document")
        if chunker is None:
            from ..core._chunkers import SentenceChunker

            chunker = SentenceChunker()
        if not callable(getattr(chunker, "chunk", None)):
            raise InputTypeError("chunker must have a chunk(document) -> list[Chunk] method")
        plans = []
        seen: set[str] = set()
        for d, doc in enumerate(docs):
            if not doc.strip():
                raise InputError(f"documents[{d}] is empty; there is nothing to index")
            meta = _check_metadata(metas[d] if metas is not None else None, f"metadatas[{d}]")
            for key in DOC_FIELDS:
                if key in meta:
                    raise InputError(
                        f"metadatas[{d}] has the key {key!r}, which add_documents sets itself"
                    )
            doc_id = caller_ids[d] if caller_ids is not None else point_id(doc)
            if doc_id in seen:
                raise InputError(f"documents[{d}] repeats an earlier document (id {doc_id!r})")
            seen.add(doc_id)
            chunks = [c for c in chunker.chunk(doc) if c.text]
            if not chunks:
                raise InputError(f"documents[{d}] gave no chunks; check the chunker")
            records = [
                Record(
                    chunk_point_id(doc_id, j),
                    c.text,
                    {**meta, "doc_id": doc_id, "chunk_index": j, "start": c.start, "end": c.end},
                )
                for j, c in enumerate(chunks)
            ]
            plans.append(_DocPlan(doc_id, records))
        self._check_records([r for p in plans for r in p.chunks])
        return plans

    def _check_records(self, records: list[Record]) -> None:
        """Store-specific checks of everything about to be written (before any write)."""

    def _plan_write(
        self, records: Sequence[Record], vectors: object
    ) -> tuple[list[Record], Vectors]:
        """Check what :meth:`SyncStore.write` was given (before any write); store ids."""
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
            raise InputTypeError("records must be a list of Record")
        out: list[Record] = []
        for i, r in enumerate(records):
            if not isinstance(r, Record):
                raise InputTypeError(f"records[{i}] must be a Record, not {type(r).__name__}")
            if not isinstance(r.id, str) or not r.id:
                raise InputTypeError(f"records[{i}].id must be a non-empty str, not {r.id!r}")
            if not isinstance(r.text, str):
                raise InputTypeError(
                    f"records[{i}].text must be a str, not {type(r.text).__name__}"
                )
            meta = _check_metadata(r.metadata, f"records[{i}].metadata")
            out.append(Record(point_id(r.id), r.text, meta))
        try:
            array = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputTypeError(
                "vectors must be a 2-D array of floats, one row per record"
            ) from None
        if array.ndim != 2 or array.shape[0] != len(out):
            raise InputError(
                f"vectors has shape {array.shape} for {len(out)} records; give one row per record"
            )
        if out and array.shape[1] != self.dimensions:
            raise ConfigurationError(
                f"the vectors are {array.shape[1]}-dimensional; the store holds "
                f"{self.dimensions}: embed with dimensions={self.dimensions}, or use another store"
            )
        if not np.isfinite(array).all():
            raise InputError("vectors hold NaN or infinity; embed the texts again")
        self._check_records(out)
        return out, array

    @staticmethod
    def _check_keep(keep_chunks: object) -> dict[str, int]:
        if keep_chunks is None:
            return {}
        if not isinstance(keep_chunks, Mapping):
            raise InputTypeError("keep_chunks must be a dict {document id: chunk count}")
        out: dict[str, int] = {}
        for doc, n in keep_chunks.items():
            if not isinstance(doc, str) or not doc:
                raise InputTypeError(f"keep_chunks has a key {doc!r}; document ids are str")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise InputTypeError(f"keep_chunks[{doc!r}] must be an int >= 0, not {n!r}")
            out[doc] = n
        return out

    @property
    def traits(self) -> StoreTraits:
        """What this store is (see :class:`StoreTraits`); from its configuration, no I/O."""
        return StoreTraits(multi_process=True)

    def _split(self, vectors: Vectors) -> tuple[Vectors, Vectors | None]:
        """Full vectors and, in two-stage mode, their Matryoshka cut to ``small_dimensions``."""
        if self.small_dimensions is None:
            return vectors, None
        return vectors, matryoshka(vectors, self.small_dimensions)

    @staticmethod
    def _check_k(k: object) -> int:
        return check_int("k", k, error=InputError)

    def _resolve_late(self, late_chunking: object) -> bool:
        """``late_chunking`` of add_documents: None = where the model offers it (no I/O)."""
        if late_chunking is None:
            return self.provider.supports_late_chunking
        if not isinstance(late_chunking, bool):
            raise InputTypeError(
                f"late_chunking must be True, False or None, not {type(late_chunking).__name__}"
            )
        if late_chunking:
            check_late_chunking(self.provider)
        return late_chunking

    def _embed_kwargs(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}

    # -- how the store was built (kept in the collection's own metadata) -----------------

    def store_facts(self) -> dict[str, str]:
        """What this store writes into the collection's metadata when it creates it.

        ``jv3_model`` (the provider's model name), ``jv3_dimensions``, and where they apply
        ``jv3_small_dimensions`` and ``jv3_quantization``. Keys and values fit every host's
        rules (Pinecone tags: ``[A-Za-z0-9_-]`` keys, printable ASCII values of at most 120
        characters).
        """
        facts = {
            "jv3_model": _tag_value(self.provider.model_name),
            "jv3_dimensions": str(self.dimensions),
        }
        if self.small_dimensions is not None:
            facts["jv3_small_dimensions"] = str(self.small_dimensions)
        facts.update(self._extra_facts())
        return facts

    def _extra_facts(self) -> dict[str, str]:
        return {}

    def _check_facts(self, found: Mapping[str, Any] | None, where: str) -> None:
        """Refuse a collection built with another model, size or layout (before any I/O on it).

        A collection without our keys (made before they were recorded, or by another tool)
        is accepted: its vector size and metric are still verified by the store.

        Raises:
            ConfigurationError: naming the collection's value and this store's.
        """
        theirs = {k: str(v) for k, v in (found or {}).items() if k.startswith(_FACT_PREFIX)}
        if not theirs:
            return
        mine = self.store_facts()
        for key in sorted(set(theirs) | set(mine)):
            built, now = theirs.get(key, "none"), mine.get(key, "none")
            if built != now:
                what = key[len(_FACT_PREFIX) :]
                raise ConfigurationError(
                    f"{where} was built with {what}={built!r}, but this store uses "
                    f"{what}={now!r}; open it with the same provider and settings "
                    f"({what}={built!r}), or use another collection"
                )
