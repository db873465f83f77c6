"""The Jina embeddings wire protocol, I/O-free: shared by the API client and our server.

Everything here is pure: building and validating request bodies, encoding and decoding
embeddings in every ``embedding_type``, turning any error body (JSON in its several shapes, or
an HTML page) into a typed :class:`APIError`, and reading the rate-limit headers. The HTTP
client (``_api.py``) and the ASGI server (``server/``) are thin shells around it.

Spec: ``spec/API.md`` and the official OpenAPI document (``EmbeddingsV3Request``,
``EmbeddingResponse``, ``ErrorResponse``, ``HTTPValidationError``).
"""

from __future__ import annotations

import email.utils
import html
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._errors import (
    APIError,
    APIResponseError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    RateLimitError,
    ServerError,
)
from ._types import Task
from ._vecmath import (
    b64_decode_f32,
    b64_encode_f32,
    binary_to_ubinary,
    quantize_binary,
    quantize_ubinary,
    unpack_bits,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "EMBEDDINGS_PATH",
    "EMBEDDING_TYPES",
    "MAX_INPUTS",
    "MAX_TOKENS",
    "MODELS_PATH",
    "MODEL_NAME",
    "REQUEST_FIELDS",
    "RETRYABLE_STATUS",
    "TASK_INSTRUCTIONS",
    "EmbeddingsRequest",
    "WireError",
    "build_request",
    "decode_embedding",
    "describe_error_body",
    "encode_embedding",
    "error_body",
    "error_from_response",
    "estimate_tokens",
    "parse_embeddings_request",
    "parse_embeddings_response",
    "parse_rate_limit_remaining",
    "parse_retry_after",
]

DEFAULT_BASE_URL: Final = "https://api.jina.ai"
EMBEDDINGS_PATH: Final = "/v1/embeddings"
MODELS_PATH: Final = "/v1/models"
MODEL_NAME: Final = "jina-embeddings-v3"
MAX_INPUTS: Final = 2048
MAX_TOKENS: Final = 8192
EMBEDDING_TYPES: Final = ("float", "base64", "binary", "ubinary")
REQUEST_FIELDS: Final = frozenset(
    {
        "model",
        "input",
        "task",
        "dimensions",
        "normalized",
        "late_chunking",
        "embedding_type",
        "truncate",
    }
)
# ``encoding_type``: the older schema's name for ``embedding_type`` (LlamaIndex still sends it).
ENCODING_TYPE_ALIAS: Final = "encoding_type"
RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})
TASK_INSTRUCTIONS: Final[Mapping[Task, str]] = {
    Task.RETRIEVAL_QUERY: "Represent the query for retrieving evidence documents: ",
    Task.RETRIEVAL_PASSAGE: "Represent the document for retrieval: ",
    Task.SEPARATION: "",
    Task.CLASSIFICATION: "",
    Task.TEXT_MATCHING: "",
}

# -- token estimate -----------------------------------------------------------------------

# Scripts written without spaces (CJK, kana, Hangul, Thai, Lao, Tibetan, Myanmar, Khmer): the
# XLM-R tokenizer gives about one token per character or more, so each counts as one token.
_DENSE = (
    "\u0e00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff"
)
# Letters of space-separated scripts (Latin, Cyrillic, Greek, Arabic, Devanagari ...).
_WORD = re.compile(f"[^\\W\\d_{_DENSE}]+")


def estimate_tokens(text: str, *, task: Task | None = None) -> int:
    """A conservative estimate of the XLM-R token count of ``text`` (no tokenizer, no I/O).

    Counts ``<s>``/``</s>``, the task instruction, one token per digit, punctuation mark and
    character of a script written without spaces, and one token per three letters of each
    word (rounded up).
    Real tokenizations of natural text in any language come out lower; adversarial strings
    (random letters) may come out higher, which the server then reports with its own 400.

    Args:
        text: The text to estimate.
        task: The task whose instruction prefix is prepended (counted too).

    Returns:
        The estimated number of tokens, including the two special tokens.
    """
    if task is not None:
        text = TASK_INSTRUCTIONS[task] + text
    words = _WORD.findall(text)
    word_chars = sum(map(len, words))
    visible = len("".join(text.split()))  # every character but whitespace
    # ceil(len / 3) per word, summed (rounded up as a whole: never below the per-word sum);
    # every other visible character (digit, punctuation, dense script) is one token.
    return 2 + (word_chars + 2 * len(words)) // 3 + (visible - word_chars)


# -- requests (client side) ---------------------------------------------------------------


def build_request(
    texts: Sequence[str],
    *,
    model: str = MODEL_NAME,
    task: Task | None = None,
    dimensions: int | None = None,
    normalized: bool | None = None,
    late_chunking: bool | None = None,
    embedding_type: str | None = None,
    truncate: bool | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/embeddings``: only the fields that are set, official names.

    ``None`` (and the API's own defaults ``normalized=True``, ``late_chunking=False``,
    ``embedding_type="float"``, ``truncate=False``) are left out; ``encoding_type`` is never sent.
    """
    body: dict[str, Any] = {"model": model, "input": list(texts)}
    if task is not None:
        body["task"] = task.value
    if dimensions is not None:
        body["dimensions"] = int(dimensions)
    if normalized is False:
        body["normalized"] = False
    if late_chunking:
        body["late_chunking"] = True
    if embedding_type is not None and embedding_type != "float":
        body["embedding_type"] = embedding_type
    if truncate:
        body["truncate"] = True
    return body


# -- embeddings encode/decode ---------------------------------------------------------------


def encode_embedding(vector: npt.NDArray[np.float32], embedding_type: str) -> Any:
    """One vector in the wire encoding ``embedding_type`` (float, base64, binary, ubinary)."""
    if embedding_type == "float":
        return [float(x) for x in vector]
    if embedding_type == "base64":
        return b64_encode_f32(vector)
    if embedding_type == "ubinary":
        return [int(x) for x in quantize_ubinary(vector[None, :])[0]]
    if embedding_type == "binary":
        return [int(x) for x in quantize_binary(vector[None, :])[0]]
    raise ValueError(f"unknown embedding_type {embedding_type!r}")


def _int_list(value: list[Any], lo: int, hi: int, what: str) -> list[int]:
    out: list[int] = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
            raise ValueError(f"{what} embedding holds {x!r}, not an int in {lo}..{hi}")
        out.append(x)
    return out


def decode_embedding(value: Any, embedding_type: str, dimensions: int) -> npt.NDArray[np.float32]:
    """Decode one ``embedding`` value to a float32 vector of ``dimensions`` components.

    Handles every encoding wherever it appears: a list of floats, a base64 string, packed
    ``ubinary`` (0..255) or ``binary`` (-128..127) bytes (decoded to ±1 per component), and a
    multi-type object keyed by type (the requested type is preferred, then float, base64).

    Raises:
        ValueError: the value is not a valid embedding of ``dimensions`` components.
    """
    if isinstance(value, dict):
        for key in (embedding_type, "float", "base64", "ubinary", "binary"):
            if key in value:
                return decode_embedding(value[key], key, dimensions)
        raise ValueError(f"embedding object has none of the types {EMBEDDING_TYPES}")
    if isinstance(value, str):
        vec = b64_decode_f32(value)
    elif isinstance(value, list):
        if embedding_type in ("ubinary", "binary"):
            n_bytes = (dimensions + 7) // 8
            if len(value) != n_bytes:
                raise ValueError(
                    f"{embedding_type} embedding has {len(value)} bytes; "
                    f"{dimensions} dimensions need {n_bytes}"
                )
            if embedding_type == "ubinary":
                packed = np.asarray(_int_list(value, 0, 255, "ubinary"), dtype=np.uint8)
            else:
                packed = binary_to_ubinary(_int_list(value, -128, 127, "binary"))
            return unpack_bits(packed, dimensions)
        try:
            raw = np.array(value)
        except (TypeError, ValueError):
            raw = np.array([], dtype=object)
        if raw.dtype.kind not in "fiu" or raw.ndim != 1:
            raise ValueError("embedding is not a flat list of numbers")
        vec = raw.astype(np.float32)
    else:
        raise ValueError(f"embedding is a {type(value).__name__}, not a list or base64 string")
    if vec.ndim != 1 or vec.shape[0] != dimensions:
        raise ValueError(f"embedding has {vec.shape[0]} components, expected {dimensions}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("embedding holds non-finite values")
    return vec


def parse_embeddings_response(
    payload: Any, *, n_items: int, dimensions: int, embedding_type: str = "float"
) -> tuple[npt.NDArray[np.float32], int]:
    """Check and decode a 200 body of ``POST /v1/embeddings``.

    Rows are placed by ``data[i].index`` (any order is accepted); the count, the index range,
    duplicates and every vector's size are checked.

    Returns:
        ``(vectors of shape (n_items, dimensions), usage.total_tokens)``.

    Raises:
        APIResponseError: anything that would silently lose, duplicate or misplace a vector.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise APIResponseError("the server answered 200 without a 'data' list of embeddings")
    data: list[Any] = payload["data"]
    if len(data) != n_items:
        raise APIResponseError(
            f"the server returned {len(data)} embeddings for {n_items} inputs; refusing to guess "
            "which input each belongs to"
        )
    out = np.empty((n_items, dimensions), dtype=np.float32)
    seen = [False] * n_items
    for pos, item in enumerate(data):
        if not isinstance(item, dict):
            raise APIResponseError(f"data[{pos}] is not an object")
        index = item.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_items:
            raise APIResponseError(
                f"data[{pos}].index is {index!r}, not an input position in 0..{n_items - 1}"
            )
        if seen[index]:
            raise APIResponseError(f"the server returned two embeddings for input {index}")
        seen[index] = True
        value = item.get("embedding", item.get("embeddings"))
        try:
            out[index] = decode_embedding(value, embedding_type, dimensions)
        except ValueError as exc:
            raise APIResponseError(f"data[{pos}] (input {index}): {exc}") from None
    usage = payload.get("usage")
    total = usage.get("total_tokens", 0) if isinstance(usage, dict) else 0
    total_tokens = total if isinstance(total, int) and not isinstance(total, bool) else 0
    return out, total_tokens


# -- errors -----------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SCRIPT = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)
_MAX_DETAIL = 500


def _shorten(text: str, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("message", "msg", "detail", "error"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return json.dumps(value, ensure_ascii=False, default=str)


def _loc_msg(item: Any) -> str:
    if isinstance(item, dict):
        loc = item.get("loc", item.get("field"))
        msg = item.get("msg", item.get("message", ""))
        if isinstance(loc, list):
            loc = ".".join(str(p) for p in loc)
        return f"{loc}: {msg}" if loc else str(msg)
    return str(item)


def describe_error_body(
    content: bytes, headers: Mapping[str, str] | None = None
) -> tuple[str, str | None, str | None]:
    """Read ``(detail, code, request_id)`` from any error body the API is known to send.

    Shapes: ``{"detail", "code", "request_id"}``; FastAPI ``{"detail": [{"loc", "msg"}]}``;
    ``{"detail": {"message", "code"}}``; the 422 ``{"detail", "errors": [{"field", "message"}]}``;
    ``{"detail": "extra fields not permitted: [...]"}``; and non-JSON (an HTML error page).
    """
    headers = headers or {}
    code: str | None = None
    request_id: str | None = None
    text = content.decode("utf-8", errors="replace")
    try:
        body: Any = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
        stripped = text.strip()
        if "<" in stripped and ">" in stripped:
            title = _TITLE.search(stripped)
            page = html.unescape(_TAG.sub(" ", _SCRIPT.sub(" ", stripped)))
            detail = _shorten(title.group(1)) if title else ""
            rest = _shorten(page)
            if detail and rest.startswith(detail):
                rest = rest[len(detail) :].strip()
            detail = f"{detail}: {rest}" if detail and rest else detail or rest
        else:
            detail = _shorten(stripped)
    else:
        if isinstance(body, dict):
            raw = body.get("detail", body.get("message", body.get("error")))
            if isinstance(raw, list):
                detail = "; ".join(_loc_msg(i) for i in raw)
            elif isinstance(raw, dict):
                detail = _text_of(raw)
                inner = raw.get("code")
                code = inner if isinstance(inner, str) else None
            elif raw is None:
                detail = _text_of(body)
            else:
                detail = str(raw)
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                detail = f"{detail}: " + "; ".join(_loc_msg(e) for e in errors)
            if isinstance(body.get("code"), str):
                code = body["code"]
            if isinstance(body.get("request_id"), str):
                request_id = body["request_id"]
            detail = _shorten(detail, 2000)
        elif body is None:
            detail = ""
        else:
            detail = _shorten(_text_of(body))
    if request_id is None:
        for name in ("x-request-id", "request-id", "x-jina-request-id"):
            value = _header(headers, name)
            if value:
                request_id = value
                break
    return detail, code, request_id


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, val in headers.items():
            if key.lower() == name:
                return val
    return value


_HINTS: Final[Mapping[type[APIError], str]] = {
    AuthenticationError: "check the API key (api_key= or the JINA_API_KEY environment variable)",
    InsufficientBalanceError: "top up the key's balance or raise its limits at jina.ai",
    RateLimitError: "still rate-limited after every retry; lower max_concurrency or wait",
    ServerError: "the server kept failing after every retry; try again later",
}


def error_class(status: int) -> type[APIError]:
    """The typed error for an HTTP status."""
    if status == 401:
        return AuthenticationError
    if status in (402, 403):
        return InsufficientBalanceError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return BadRequestError
    return APIResponseError


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    redact: Sequence[str] = (),
) -> APIError:
    """The typed :class:`APIError` for a non-2xx response, with the server's message kept.

    Args:
        status: The HTTP status.
        headers: The response headers (``X-Request-Id`` is used when the body has no id).
        content: The raw body (any shape, JSON or not).
        redact: Secrets (the API key) to blank out should the server echo them.
    """
    detail, code, request_id = describe_error_body(content, headers)
    for secret in redact:
        if secret:
            detail = detail.replace(secret, "***")
    if not detail:
        detail = f"HTTP {status} with an empty body"
    cls = error_class(status)
    message = f"the embeddings API answered {status}: {detail}"
    hint = _HINTS.get(cls)
    if hint:
        message = f"{message} ({hint})"
    return cls(message, status=status, code=code, detail=detail, request_id=request_id)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def parse_rate_limit_remaining(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``(remaining requests, remaining tokens)`` from ``X-RateLimit-Remaining-*`` headers."""

    def get(name: str) -> int | None:
        raw = _header(headers, name)
        if raw is None:
            return None
        try:
            return int(float(raw.strip()))
        except ValueError:
            return None

    return get("x-ratelimit-remaining-requests"), get("x-ratelimit-remaining-tokens")


# -- requests (server side) -------------------------------------------------------------------


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


def _brief(value: Any) -> Any:
    """A short, JSON-safe echo of an offending input value for a 422 body."""
    if isinstance(value, str) and len(value) > 100:
        return value[:100] + "…"
    if isinstance(value, (list, dict)):
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (RecursionError, ValueError):
            return "<too deeply nested to show>"
        return value if len(text) <= 200 else text[:200] + "…"
    return value


def _bool_field(
    body: Mapping[str, Any], name: str, default: bool, errors: list[dict[str, Any]]
) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.append(
            {
                "field": name,
                "message": "Input should be a valid boolean",
                "type": "bool_type",
                "input": _brief(value),
            }
        )
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
    errors: list[dict[str, Any]] = []

    def fail(field_name: str, message: str, kind: str, value: Any) -> None:
        errors.append(
            {"field": field_name, "message": message, "type": kind, "input": _brief(value)}
        )

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
        raise WireError(
            400,
            error_body(
                f"input length is larger than the largest allowed size {MAX_INPUTS}",
                "INPUT_TOO_MANY_ITEMS",
                rid,
            ),
        )
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


def _validation_body(errors: list[dict[str, Any]], request_id: str | None) -> dict[str, Any]:
    n = len(errors)
    prefix = f"[RID: {request_id}] " if request_id else ""
    body: dict[str, Any] = {
        "detail": f"{prefix}Validation errors in {n} field{'s' if n != 1 else ''}",
        "errors": errors,
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body
