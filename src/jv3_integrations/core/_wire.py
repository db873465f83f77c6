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
    "build_request",
    "decode_embedding",
    "describe_error_body",
    "encode_embedding",
    "error_from_response",
    "estimate_tokens",
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
    Task.CODE_QUERY: "",  # jina-embeddings-v4 through Jina's API: the server adds its own
    Task.CODE_PASSAGE: "",
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
            return _decode_packed(value, embedding_type, dimensions)
        vec = _float_list(value)
    else:
        raise ValueError(f"embedding is a {type(value).__name__}, not a list or base64 string")
    if vec.ndim != 1 or vec.shape[0] != dimensions:
        raise ValueError(f"embedding has {vec.shape[0]} components, expected {dimensions}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("embedding holds non-finite values")
    return vec


def _decode_packed(
    value: list[Any], embedding_type: str, dimensions: int
) -> npt.NDArray[np.float32]:
    """Packed ``ubinary`` (0..255) or ``binary`` (-128..127) bytes, unpacked to ±1."""
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


def _float_list(value: list[Any]) -> npt.NDArray[np.float32]:
    """A flat list of numbers as float32 (its length and finiteness are checked by the caller)."""
    try:
        raw = np.array(value)
    except (TypeError, ValueError):
        raw = np.array([], dtype=object)
    if raw.dtype.kind not in "fiu" or raw.ndim != 1:
        raise ValueError("embedding is not a flat list of numbers")
    return raw.astype(np.float32)


NORM_TOLERANCE: Final = 1e-3  # |norm - 1| allowed for a vector asked for normalized


def _wire_shape_error(value: Any, embedding_type: str) -> str | None:
    """Why ``value`` is not in the wire encoding ``embedding_type`` (None: it is)."""
    if isinstance(value, dict):
        if embedding_type in value:
            return _wire_shape_error(value[embedding_type], embedding_type)
        return f"is an object of {sorted(map(str, value))[:4]}, not the {embedding_type} asked for"
    if embedding_type == "base64" and not isinstance(value, str):
        return f"is a {type(value).__name__}, not the base64 string asked for"
    if embedding_type == "float" and not isinstance(value, list):
        return f"is a {type(value).__name__}, not the list of floats asked for"
    return None


def parse_embeddings_response(
    payload: Any,
    *,
    n_items: int,
    dimensions: int,
    embedding_type: str = "float",
    normalized: bool = False,
) -> tuple[npt.NDArray[np.float32], int]:
    """Check and decode a 200 body of ``POST /v1/embeddings``.

    Rows are placed by ``data[i].index`` (any order is accepted); the count, the index range,
    duplicates and every vector's size are checked, each embedding must be in the encoding
    that was asked for (``float`` or ``base64``; a ``{"ubinary": ...}`` object is refused) and,
    with ``normalized``, of unit norm within ``NORM_TOLERANCE``.

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
        index = _item_index(item, pos, n_items)
        if seen[index]:
            raise APIResponseError(f"the server returned two embeddings for input {index}")
        seen[index] = True
        out[index] = _item_vector(item, pos, index, embedding_type, dimensions)
    if normalized and n_items:
        _check_unit_norms(out)
    usage = payload.get("usage")
    total = usage.get("total_tokens", 0) if isinstance(usage, dict) else 0
    total_tokens = total if isinstance(total, int) and not isinstance(total, bool) else 0
    return out, total_tokens


def _item_index(item: Any, pos: int, n_items: int) -> int:
    """The input position ``data[pos]`` names, checked to be in range."""
    if not isinstance(item, dict):
        raise APIResponseError(f"data[{pos}] is not an object")
    index = item.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_items:
        raise APIResponseError(
            f"data[{pos}].index is {index!r}, not an input position in 0..{n_items - 1}"
        )
    return index


def _item_vector(
    item: dict[str, Any], pos: int, index: int, embedding_type: str, dimensions: int
) -> npt.NDArray[np.float32]:
    """``data[pos]``'s embedding, in the encoding asked for, decoded."""
    value = item.get("embedding", item.get("embeddings"))
    if embedding_type in ("float", "base64"):
        mismatch = _wire_shape_error(value, embedding_type)
        if mismatch is not None:
            raise APIResponseError(f"data[{pos}] (input {index}): the embedding {mismatch}")
        if isinstance(value, dict):
            value = value[embedding_type]
    try:
        return decode_embedding(value, embedding_type, dimensions)
    except ValueError as exc:
        raise APIResponseError(f"data[{pos}] (input {index}): {exc}") from None


def _check_unit_norms(out: npt.NDArray[np.float32]) -> None:
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise APIResponseError(
            f"the server returned {bad.size} embedding(s) that are not unit vectors though "
            f"normalized ones were asked for (input {i} has norm {norms[i]:.4g}); refusing "
            "them"
        )


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
    text = content.decode("utf-8", errors="replace")
    code: str | None = None
    request_id: str | None = None
    try:
        body: Any = json.loads(text) if text.strip() else None
    except ValueError:
        detail = _describe_text(text.strip())
    else:
        if isinstance(body, dict):
            detail, code, request_id = _describe_json(body)
        elif body is None:
            detail = ""
        else:
            detail = _shorten(_text_of(body))
    if request_id is None:
        request_id = _request_id_header(headers or {})
    return detail, code, request_id


def _describe_text(stripped: str) -> str:
    """The detail of a body that is not JSON: an HTML page's title and text, or the text."""
    if "<" in stripped and ">" in stripped:
        title = _TITLE.search(stripped)
        page = html.unescape(_TAG.sub(" ", _SCRIPT.sub(" ", stripped)))
        detail = _shorten(title.group(1)) if title else ""
        rest = _shorten(page)
        if detail and rest.startswith(detail):
            rest = rest[len(detail) :].strip()
        return f"{detail}: {rest}" if detail and rest else detail or rest
    return _shorten(stripped)


def _describe_json(body: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """``(detail, code, request_id)`` of a JSON object error body."""
    code: str | None = None
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
    request_id = body["request_id"] if isinstance(body.get("request_id"), str) else None
    return _shorten(detail, 2000), code, request_id


def _request_id_header(headers: Mapping[str, str]) -> str | None:
    for name in ("x-request-id", "request-id", "x-jina-request-id"):
        value = _header(headers, name)
        if value:
            return value
    return None


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
