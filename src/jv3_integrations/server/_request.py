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

from ..core._types import Task
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
    parts: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size > _ECHO_CHARS:
            raise _Enough

    def walk(v: Any, depth: int) -> None:
        if depth > _ECHO_DEPTH:
            emit("…")
            raise _Enough
        if isinstance(v, list):
            emit("[")
            for i, x in enumerate(v):
                emit(", " if i else "")
                walk(x, depth + 1)
            emit("]")
        elif isinstance(v, dict):
            emit("{")
            for i, (k, x) in enumerate(v.items()):
                emit(", " if i else "")
                emit(json.dumps(str(k)[:_ECHO_CHARS], ensure_ascii=False) + ": ")
                walk(x, depth + 1)
            emit("}")
        elif isinstance(v, str):
            emit(json.dumps(v[: _ECHO_CHARS + 1], ensure_ascii=False))
        else:
            emit(json.dumps(v, default=str))

    try:
        walk(value, 0)
    except _Enough:
        return "".join(parts)[:_ECHO_CHARS] + "…"
    return value


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


def parse_embeddings_request(
    payload: Any,
    *,
    max_dimensions: int,
    model_names: Sequence[str] = (MODEL_NAME,),
    request_id: str | None = None,
) -> EmbeddingsRequest:
    """Validate a ``POST /v1/embeddings`` body exactly as the Jina API does.

    Raises:
        WireError: 422 (``HTTPValidationError`` body) for unknown fields, wrong types, a bad
            task or embedding type, dimensions out of range; 400 ``INPUT_MODEL_NOT_FOUND`` for
            an unknown model; 400 for more than 2048 inputs.
    """
    rid = request_id
    errors = _Errors()

    fail = errors.add

    if not isinstance(payload, dict):
        fail("body", "Input should be a valid JSON object", "model_type", payload)
        raise WireError(422, _validation_body(errors, rid))

    for key in payload:
        if key not in REQUEST_FIELDS and key != ENCODING_TYPE_ALIAS:
            fail(str(key), "Extra inputs are not permitted", "extra_forbidden", payload[key])

    model = payload.get("model")
    if "model" not in payload:
        fail("model", "Field required", "missing", None)
    elif not isinstance(model, str):
        fail("model", "Input should be a valid string", "string_type", model)

    texts: list[str] = []
    if "input" not in payload:
        fail("input", "Field required", "missing", None)
    else:
        raw = payload["input"]
        items = raw if isinstance(raw, list) else [raw]
        if len(items) > MAX_INPUTS:  # refused before any per-item work (bounds the cost)
            raise _too_many_items(rid)
        if isinstance(raw, list) and not raw:
            fail("input", "List should have at least 1 item", "too_short", raw)
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                text: Any = item["text"]
            else:
                text = item
            if isinstance(text, str) and not text.isascii() and _LONE_SURROGATE.search(text):
                fail(
                    f"input.{i}" if isinstance(raw, list) else "input",
                    "Input should be valid Unicode text (it has a lone surrogate)",
                    "string_unicode",
                    item,
                )
            elif isinstance(item, str):
                texts.append(item)
            elif (
                isinstance(item, dict)
                and set(item) == {"text"}
                and isinstance(item.get("text"), str)
            ):
                texts.append(item["text"])
            else:
                where = f"input.{i}" if isinstance(raw, list) else "input"
                fail(
                    where,
                    "Input should be a string or a TextDoc {'text': str}",
                    "union_tag_invalid",
                    item,
                )

    task: Task | None = None
    raw_task = payload.get("task")
    if raw_task is not None:
        try:
            task = Task(raw_task) if isinstance(raw_task, str) else None
        except ValueError:
            task = None
        if task is None:
            valid = ", ".join(f"'{t.value}'" for t in Task)
            fail("task", f"Input should be {valid} or null", "literal_error", raw_task)

    dimensions: int | None = None
    raw_dims = payload.get("dimensions")
    if raw_dims is not None:
        if isinstance(raw_dims, float) and raw_dims.is_integer():
            raw_dims = int(raw_dims)
        if isinstance(raw_dims, bool) or not isinstance(raw_dims, int):
            fail("dimensions", "Input should be a valid integer", "int_type", raw_dims)
        elif raw_dims < 1:
            fail("dimensions", "Input should be greater than 0", "greater_than", raw_dims)
        elif raw_dims > max_dimensions:
            fail(
                "dimensions",
                f"Input should be less than or equal to {max_dimensions}",
                "less_than_equal",
                raw_dims,
            )
        else:
            dimensions = raw_dims

    normalized = _bool_field(payload, "normalized", True, errors)
    late_chunking = _bool_field(payload, "late_chunking", False, errors)
    truncate = _bool_field(payload, "truncate", False, errors)

    types: tuple[str, ...] = ("float",)
    multi = False
    given = [n for n in ("embedding_type", ENCODING_TYPE_ALIAS) if payload.get(n) is not None]
    values = [payload[n] for n in given]
    if len(values) == 2 and values[0] != values[1]:
        fail(
            ENCODING_TYPE_ALIAS,
            "embedding_type and encoding_type (its older name) disagree; send one",
            "value_error",
            values[1],
        )
    elif values:
        raw_type = values[0]
        kinds = raw_type if isinstance(raw_type, list) else [raw_type]
        ok = bool(kinds) and all(isinstance(k, str) and k in EMBEDDING_TYPES for k in kinds)
        if not ok:
            fail(
                given[0],
                "Input should be 'float', 'base64', 'binary', 'ubinary' or a list of them",
                "literal_error",
                raw_type,
            )
        else:
            types = tuple(dict.fromkeys(kinds))
            multi = isinstance(raw_type, list)

    if errors:
        raise WireError(422, _validation_body(errors, rid))
    model = str(model)
    if model not in model_names:
        raise WireError(
            400,
            error_body(
                f"Model '{model}' not found. Available models: {', '.join(model_names)}",
                "INPUT_MODEL_NOT_FOUND",
                rid,
            ),
        )
    if len(texts) > MAX_INPUTS:
        raise _too_many_items(rid)
    if late_chunking:
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
