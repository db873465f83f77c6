"""Server-side request parsing: validate a ``POST /v1/embeddings`` body as the Jina API does.

Pure (no I/O). Builds on the wire constants shared with the client in ``core/_wire.py``; the
core never imports this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..core._types import JINA_EMBEDDINGS_V3, Task
from ..core._wire import (
    EMBEDDING_TYPES,
    ENCODING_TYPE_ALIAS,
    MAX_INPUTS,
    MODEL_NAME,
    REQUEST_FIELDS,
)

__all__ = ["EmbeddingsRequest", "WireError", "error_body", "parse_embeddings_request"]


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A validated ``POST /v1/embeddings`` body, as our server receives it."""

    model: str
    texts: list[str]
    task: Task | None = None
    dimensions: int | None = None
    normalized: bool = True
    late_chunking: bool = False
    embedding_types: tuple[str, ...] = ("float",)
    multi_type: bool = False
    truncate: bool = False


@dataclass
class WireError(Exception):
    """A request the server rejects: the HTTP status and the official JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}: {self.body.get('detail', '')}"


def error_body(
    detail: str, code: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """An ``ErrorResponse`` body: ``{"detail", "code", "request_id"}`` (unset keys left out)."""
    body: dict[str, Any] = {"detail": detail}
    if code is not None:
        body["code"] = code
    if request_id is not None:
        body["request_id"] = request_id
    return body


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_TASK_VALUES: Final = tuple(t.value for t in JINA_EMBEDDINGS_V3.tasks)  # the model served


MAX_LISTED_ERRORS: Final = 20  # a 422 lists at most these many errors (and counts the rest)
_ECHO_CHARS: Final = 200  # an echoed input is cut to about this many characters
_ECHO_DEPTH: Final = 20


class _Enough(Exception):
    pass


def _brief(value: Any) -> Any:
    """A short, JSON-safe echo of an offending input value for a 422 body.

    Bounded whatever the value: a long string is cut; a list or object is rendered only until
    about ``_ECHO_CHARS`` characters (never serialized whole), and cut there.
    """
    if isinstance(value, str):
        return value if len(value) <= 100 else value[:100] + "…"
    if not isinstance(value, (list, dict)):
        return value
    out = _Echo()
    try:
        out.walk(value, 0)
    except _Enough:
        return "".join(out.parts)[:_ECHO_CHARS] + "…"
    return value


class _Echo:
    """Renders a value as JSON-like text, stopping (``_Enough``) past ``_ECHO_CHARS``."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def emit(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > _ECHO_CHARS:
            raise _Enough

    def walk(self, v: Any, depth: int) -> None:
        if depth > _ECHO_DEPTH:
            self.emit("…")
            raise _Enough
        if isinstance(v, list):
            self.emit("[")
            for i, x in enumerate(v):
                self.emit(", " if i else "")
                self.walk(x, depth + 1)
            self.emit("]")
        elif isinstance(v, dict):
            self.emit("{")
            for i, (k, x) in enumerate(v.items()):
                self.emit(", " if i else "")
                self.emit(json.dumps(str(k)[:_ECHO_CHARS], ensure_ascii=False) + ": ")
                self.walk(x, depth + 1)
            self.emit("}")
        elif isinstance(v, str):
            self.emit(json.dumps(v[: _ECHO_CHARS + 1], ensure_ascii=False))
        else:
            self.emit(json.dumps(v, default=str))


class _Errors(list[dict[str, Any]]):
    """The errors of one request: the first ``MAX_LISTED_ERRORS`` kept, all of them counted."""

    total = 0

    def add(self, field_name: str, message: str, kind: str, value: Any) -> None:
        """Count an error; list it (with a short echo of ``value``) if it is among the first."""
        self.total += 1
        if len(self) < MAX_LISTED_ERRORS:  # the echo is only computed for listed errors
            self.append(
                {"field": field_name, "message": message, "type": kind, "input": _brief(value)}
            )


def _bool_field(body: Mapping[str, Any], name: str, default: bool, errors: _Errors) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.add(name, "Input should be a valid boolean", "bool_type", value)
        return default
    return value


# OpenAI's embeddings fields beside Jina's: ``encoding_format`` (float | base64) names the
# encoding as ``embedding_type`` does; ``user`` is accepted and ignored (never logged).
OPENAI_ENCODING_FIELD: Final = "encoding_format"
OPENAI_ENCODINGS: Final = ("float", "base64")
_OPENAI_FIELDS: Final = frozenset({OPENAI_ENCODING_FIELD, "user"})
ACCEPTED_FIELDS: Final = REQUEST_FIELDS | {ENCODING_TYPE_ALIAS} | _OPENAI_FIELDS
# the names of the encoding, in the order they are read (a later one that disagrees is named)
_ENCODING_FIELDS: Final = ("embedding_type", ENCODING_TYPE_ALIAS, OPENAI_ENCODING_FIELD)


def parse_embeddings_request(
    payload: Any,
    *,
    max_dimensions: int,
    model_names: Sequence[str] = (MODEL_NAME,),
    request_id: str | None = None,
) -> EmbeddingsRequest:
    """Validate a ``POST /v1/embeddings`` body as the Jina API does, OpenAI's fields included.

    Accepted: Jina's fields (``model``, ``input``, ``task``, ``dimensions``, ``normalized``,
    ``late_chunking``, ``embedding_type`` or its older name ``encoding_type``, ``truncate``)
    and OpenAI's (``encoding_format`` ``"float"``/``"base64"``, ``user``, ignored). Any other
    field is a 422 that names it.

    Raises:
        WireError: 422 (``HTTPValidationError`` body) for unknown fields, wrong types, a bad
            task or embedding type, dimensions out of range; 400 ``INPUT_MODEL_NOT_FOUND`` for
            an unknown model; 400 for more than 2048 inputs.
    """
    rid = request_id
    errors = _Errors()
    if not isinstance(payload, dict):
        errors.add("body", "Input should be a valid JSON object", "model_type", payload)
        raise WireError(422, _validation_body(errors, rid))
    _check_field_names(payload, errors)
    model = _model(payload, errors)
    texts = _texts(payload, errors, rid)
    task = _task(payload, errors)
    dimensions = _dimensions(payload, max_dimensions, errors)
    normalized = _bool_field(payload, "normalized", True, errors)
    late_chunking = _bool_field(payload, "late_chunking", False, errors)
    truncate = _bool_field(payload, "truncate", False, errors)
    _user(payload, errors)
    types, multi = _embedding_types(payload, errors)
    if errors:
        raise WireError(422, _validation_body(errors, rid))
    _check_model(model, model_names, rid)
    if late_chunking:
        _check_no_empty_text(texts, rid)
    return EmbeddingsRequest(
        model=model,
        texts=texts,
        task=task,
        dimensions=dimensions,
        normalized=normalized,
        late_chunking=late_chunking,
        embedding_types=types,
        multi_type=multi,
        truncate=truncate,
    )


def _check_field_names(payload: Mapping[str, Any], errors: _Errors) -> None:
    for key in payload:
        if key not in ACCEPTED_FIELDS:
            errors.add(str(key), "Extra inputs are not permitted", "extra_forbidden", payload[key])


def _model(payload: Mapping[str, Any], errors: _Errors) -> str:
    model = payload.get("model")
    if "model" not in payload:
        errors.add("model", "Field required", "missing", None)
    elif not isinstance(model, str):
        errors.add("model", "Input should be a valid string", "string_type", model)
    return str(model)


def _texts(payload: Mapping[str, Any], errors: _Errors, rid: str | None) -> list[str]:
    if "input" not in payload:
        errors.add("input", "Field required", "missing", None)
        return []
    raw = payload["input"]
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_INPUTS:  # refused before any per-item work (bounds the cost)
        raise _too_many_items(rid)
    if isinstance(raw, list) and not raw:
        errors.add("input", "List should have at least 1 item", "too_short", raw)
    texts: list[str] = []
    for i, item in enumerate(items):
        text = _text(item, f"input.{i}" if isinstance(raw, list) else "input", errors)
        if text is not None:
            texts.append(text)
    return texts


def _text(item: Any, where: str, errors: _Errors) -> str | None:
    """The text of one input (a string or a TextDoc), or None with the error recorded."""
    if isinstance(item, dict) and set(item) == {"text"}:
        text: Any = item["text"]
    else:
        text = item
    if not isinstance(text, str):
        if isinstance(item, list) and item and all(type(x) is int for x in item):
            message = (
                "Input should be text: token-id input is not supported (OpenAI clients that "
                "tokenize, such as LangChain's OpenAIEmbeddings, need "
                "check_embedding_ctx_length=False)"
            )
        else:
            message = "Input should be a string or a TextDoc {'text': str}"
        errors.add(where, message, "union_tag_invalid", item)
        return None
    if not text.isascii() and _LONE_SURROGATE.search(text):
        errors.add(
            where,
            "Input should be valid Unicode text (it has a lone surrogate)",
            "string_unicode",
            item,
        )
        return None
    return text


def _task(payload: Mapping[str, Any], errors: _Errors) -> Task | None:
    raw_task = payload.get("task")
    if raw_task is None:
        return None
    if isinstance(raw_task, str) and raw_task in _TASK_VALUES:
        return Task(raw_task)
    valid = ", ".join(f"'{t}'" for t in _TASK_VALUES)
    errors.add("task", f"Input should be {valid} or null", "literal_error", raw_task)
    return None


def _dimensions(payload: Mapping[str, Any], max_dimensions: int, errors: _Errors) -> int | None:
    raw = payload.get("dimensions")
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        errors.add("dimensions", "Input should be a valid integer", "int_type", raw)
    elif raw < 1:
        errors.add("dimensions", "Input should be greater than 0", "greater_than", raw)
    elif raw > max_dimensions:
        errors.add(
            "dimensions",
            f"Input should be less than or equal to {max_dimensions}",
            "less_than_equal",
            raw,
        )
    else:
        return raw
    return None


def _user(payload: Mapping[str, Any], errors: _Errors) -> None:
    """OpenAI's ``user`` (an end-user id): type-checked, then ignored; its value is never echoed."""
    value = payload.get("user")
    if value is not None and not isinstance(value, str):
        errors.add("user", "Input should be a valid string", "string_type", type(value).__name__)


def _embedding_types(payload: Mapping[str, Any], errors: _Errors) -> tuple[tuple[str, ...], bool]:
    """The requested encodings and whether they were asked for as a list (multi-type answer)."""
    given = [n for n in _ENCODING_FIELDS if payload.get(n) is not None]
    if not given:
        return ("float",), False
    openai = payload.get(OPENAI_ENCODING_FIELD)
    if openai is not None and openai not in OPENAI_ENCODINGS:  # OpenAI's field: its 2 values
        errors.add(
            OPENAI_ENCODING_FIELD, "Input should be 'float' or 'base64'", "literal_error", openai
        )
        return ("float",), False
    first = payload[given[0]]
    for name in given[1:]:
        if payload[name] != first:
            errors.add(
                name,
                f"{' and '.join(given)} name the same setting and disagree; send one",
                "value_error",
                payload[name],
            )
            return ("float",), False
    kinds = first if isinstance(first, list) else [first]
    if not kinds or not all(isinstance(k, str) and k in EMBEDDING_TYPES for k in kinds):
        errors.add(
            given[0],
            "Input should be 'float', 'base64', 'binary', 'ubinary' or a list of them",
            "literal_error",
            first,
        )
        return ("float",), False
    return tuple(dict.fromkeys(kinds)), isinstance(first, list)


def _check_model(model: str, model_names: Sequence[str], rid: str | None) -> None:
    if model not in model_names:
        raise WireError(
            400,
            error_body(
                f"Model '{model}' not found. Available models: {', '.join(model_names)}",
                "INPUT_MODEL_NOT_FOUND",
                rid,
            ),
        )


def _check_no_empty_text(texts: Sequence[str], rid: str | None) -> None:
    for i, t in enumerate(texts):
        if not t:
            raise WireError(
                400,
                error_body(
                    f"input[{i}] is empty; with late_chunking every input needs text",
                    "INPUT_EMPTY_TEXT",
                    rid,
                ),
            )


def _too_many_items(rid: str | None) -> WireError:
    return WireError(
        400,
        error_body(
            f"input length is larger than the largest allowed size {MAX_INPUTS}",
            "INPUT_TOO_MANY_ITEMS",
            rid,
        ),
    )


def _validation_body(errors: list[dict[str, Any]], request_id: str | None) -> dict[str, Any]:
    n = errors.total if isinstance(errors, _Errors) else len(errors)
    prefix = f"[RID: {request_id}] " if request_id else ""
    listed = f" (the first {len(errors)} are listed)" if n > len(errors) else ""
    body: dict[str, Any] = {
        "detail": f"{prefix}Validation errors in {n:,} field{'s' if n != 1 else ''}{listed}",
        "errors": list(errors),
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body
