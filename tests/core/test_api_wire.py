"""The I/O-free wire code: request bodies, every encoding, every error-body shape."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from jv3_integrations.core import (
    APIResponseError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    RateLimitError,
    ServerError,
    Task,
)
from jv3_integrations.core._wire import (
    build_request,
    decode_embedding,
    encode_embedding,
    error_from_response,
    estimate_tokens,
    parse_embeddings_response,
    parse_rate_limit_remaining,
    parse_retry_after,
)
from jv3_integrations.server._request import WireError, parse_embeddings_request
from tests.support.jina_schema import validate

# -- request bodies ---------------------------------------------------------------------------


def test_request_sends_only_set_fields_under_official_names() -> None:
    body = build_request(["a", "b"])
    assert body == {"model": "jina-embeddings-v3", "input": ["a", "b"]}
    validate("EmbeddingsV3Request", body)
    full = build_request(
        ["a"],
        task=Task.RETRIEVAL_QUERY,
        dimensions=256,
        normalized=False,
        late_chunking=True,
        embedding_type="base64",
        truncate=True,
    )
    assert full == {
        "model": "jina-embeddings-v3",
        "input": ["a"],
        "task": "retrieval.query",
        "dimensions": 256,
        "normalized": False,
        "late_chunking": True,
        "embedding_type": "base64",
        "truncate": True,
    }
    validate("EmbeddingsV3Request", full)
    assert "encoding_type" not in full


# -- encodings --------------------------------------------------------------------------------


def test_decode_every_encoding_by_hand() -> None:
    # components > 0 -> bit set, MSB first: [+,-,+,+,-,-,-,+] = 0b10110001 = 177; int8 = 49
    vec = [0.5, -0.1, 0.2, 0.3, -0.4, 0.0, -0.6, 0.7]
    signs = [1, -1, 1, 1, -1, -1, -1, 1]
    assert decode_embedding(vec, "float", 8).tolist() == pytest.approx(vec)
    b64 = base64.b64encode(struct.pack("<8f", *vec)).decode()
    assert decode_embedding(b64, "base64", 8).tolist() == pytest.approx(vec)
    assert decode_embedding([177], "ubinary", 8).tolist() == signs
    assert decode_embedding([49], "binary", 8).tolist() == signs
    # a multi-type object: whichever types it holds, the requested one wins
    multi = {"ubinary": [177], "float": vec}
    assert decode_embedding(multi, "float", 8).tolist() == pytest.approx(vec)
    assert decode_embedding({"binary": [49]}, "float", 8).tolist() == signs
    # base64 where floats were asked for still decodes
    assert decode_embedding(b64, "float", 8).tolist() == pytest.approx(vec)


def test_encode_is_the_inverse_of_decode() -> None:
    vec = np.array([0.5, -0.1, 0.2, 0.3, -0.4, 0.0, -0.6, 0.7, 0.9, -0.9], dtype=np.float32)
    assert encode_embedding(vec, "ubinary") == [177, 0b10000000]
    assert encode_embedding(vec, "binary") == [49, 0]
    for kind in ("float", "base64"):
        assert np.array_equal(decode_embedding(encode_embedding(vec, kind), kind, 10), vec)


@pytest.mark.parametrize(
    ("value", "kind", "dims"),
    [
        ([0.1, 0.2], "float", 3),
        ([0.1, "x", 0.3], "float", 3),
        ([[0.1], [0.2], [0.3]], "float", 3),
        ([None, 0.2, 0.3], "float", 3),
        ([300], "ubinary", 8),
        ([1, 2], "ubinary", 8),
        ([-129], "binary", 8),
        ("not base64!", "base64", 2),
        (None, "float", 2),
        ({"other": [1.0]}, "float", 1),
    ],
)
def test_decode_rejects_bad_vectors(value: object, kind: str, dims: int) -> None:
    with pytest.raises(ValueError):
        decode_embedding(value, kind, dims)


def _response(rows: list[tuple[int, list[float]]], tokens: int = 7) -> dict[str, object]:
    return {
        "model": "jina-embeddings-v3",
        "object": "list",
        "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in rows],
    }


def test_response_rows_are_placed_by_index() -> None:
    body = _response([(2, [3.0, 3.0]), (0, [1.0, 1.0]), (1, [2.0, 2.0])])
    validate("EmbeddingResponse", body)
    vectors, tokens = parse_embeddings_response(body, n_items=3, dimensions=2)
    assert vectors[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert tokens == 7


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_response([(0, [1.0, 1.0])]), "1 embeddings for 2 inputs"),
        (_response([(0, [1.0, 1.0]), (0, [2.0, 2.0])]), "two embeddings for input 0"),
        (_response([(0, [1.0, 1.0]), (5, [2.0, 2.0])]), "index is 5"),
        (_response([(0, [1.0, 1.0]), (1, [2.0])]), "1 components, expected 2"),
        ({"detail": "ok?"}, "without a 'data' list"),
        ([1, 2], "without a 'data' list"),
    ],
)
def test_response_that_would_lose_or_misplace_a_vector_is_refused(body: object, match: str) -> None:
    with pytest.raises(APIResponseError, match=match):
        parse_embeddings_response(body, n_items=2, dimensions=2)


# -- error bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content", "cls", "detail", "code", "request_id"),
    [
        (
            401,
            b'{"detail": "Invalid API key.", "code": "AUTH_INVALID_API_KEY", "request_id": "r1"}',
            AuthenticationError,
            "Invalid API key.",
            "AUTH_INVALID_API_KEY",
            "r1",
        ),
        (
            422,
            b'{"detail": [{"loc": ["body", "dimensions"], "msg": "too big", "type": "x"}]}',
            BadRequestError,
            "body.dimensions: too big",
            None,
            None,
        ),
        (
            400,
            b'{"detail": "extra fields not permitted: [\'user\']"}',
            BadRequestError,
            "extra fields not permitted: ['user']",
            None,
            None,
        ),
        (
            422,
            b'{"detail": "[RID: ab] Validation errors in 1 fields", "errors": [{"field": '
            b'"task", "message": "bad task", "type": "literal_error", "input": "x"}]}',
            BadRequestError,
            "[RID: ab] Validation errors in 1 fields: task: bad task",
            None,
            None,
        ),
        (
            500,
            b'{"detail": {"message": "boom", "code": "INTERNAL_ERROR"}}',
            ServerError,
            "boom",
            "INTERNAL_ERROR",
            None,
        ),
        (
            502,
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway"
            b"</h1><hr>nginx</body></html>",
            ServerError,
            "502 Bad Gateway",
            None,
            None,
        ),
        (
            403,
            b'{"detail": "no balance", "code": "AUTHZ_INSUFFICIENT_BALANCE"}',
            InsufficientBalanceError,
            "no balance",
            "AUTHZ_INSUFFICIENT_BALANCE",
            None,
        ),
        (402, b"quota exhausted", InsufficientBalanceError, "quota exhausted", None, None),
        (
            429,
            b'{"detail": "slow down", "code": "RATE_TOKEN_LIMIT_EXCEEDED"}',
            RateLimitError,
            "slow down",
            "RATE_TOKEN_LIMIT_EXCEEDED",
            None,
        ),
        (503, b"", ServerError, "HTTP 503 with an empty body", None, None),
    ],
)
def test_every_error_body_becomes_a_typed_error_with_its_message(
    status: int,
    content: bytes,
    cls: type,
    detail: str,
    code: str | None,
    request_id: str | None,
) -> None:
    err = error_from_response(status, {}, content)
    assert type(err) is cls
    assert err.status == status
    assert detail in err.detail
    assert detail in str(err)
    assert err.code == code
    assert err.request_id == request_id


def test_request_id_from_header_and_secret_redacted() -> None:
    err = error_from_response(
        401,
        {"X-Request-Id": "hdr-1"},
        b'{"detail": "key jina_SECRET is invalid"}',
        redact=["jina_SECRET"],
    )
    assert err.request_id == "hdr-1"
    assert "jina_SECRET" not in str(err) and "jina_SECRET" not in err.detail


def test_retry_after_and_rate_limit_headers() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    headers = {"X-RateLimit-Remaining-Requests": "0", "x-ratelimit-remaining-tokens": "1500"}
    assert parse_rate_limit_remaining(headers) == (0, 1500)
    assert parse_rate_limit_remaining({}) == (None, None)


# -- server-side validation -------------------------------------------------------------------


def test_server_validation_collects_every_field_error() -> None:
    with pytest.raises(WireError) as info:
        parse_embeddings_request(
            {
                "model": "jina-embeddings-v3",
                "input": "x",
                "usr": "u",
                "task": "retrieval",
                "dimensions": 0,
                "normalized": "yes",
            },
            max_dimensions=1024,
            request_id="rid",
        )
    assert info.value.status == 422
    body = info.value.body
    validate("HTTPValidationError", body)
    assert body["detail"] == "[RID: rid] Validation errors in 4 fields"
    assert {e["field"] for e in body["errors"]} == {"usr", "task", "dimensions", "normalized"}


def test_server_validation_accepts_every_official_input_form() -> None:
    req = parse_embeddings_request(
        {
            "model": "jina-embeddings-v3",
            "input": ["a", {"text": "b"}],
            "encoding_type": "ubinary",
            "task": None,
            "dimensions": None,
            "late_chunking": None,
            "truncate": None,
        },
        max_dimensions=64,
    )
    assert req.texts == ["a", "b"] and req.embedding_types == ("ubinary",) and not req.multi_type
    single = parse_embeddings_request(
        {"model": "jina-embeddings-v3", "input": {"text": "c"}, "embedding_type": ["float"]},
        max_dimensions=64,
    )
    assert single.texts == ["c"] and single.multi_type


def test_server_validation_model_and_input_count() -> None:
    with pytest.raises(WireError) as info:
        parse_embeddings_request({"model": "jina-embeddings-v9", "input": ["a"]}, max_dimensions=8)
    assert info.value.status == 400 and info.value.body["code"] == "INPUT_MODEL_NOT_FOUND"
    with pytest.raises(WireError) as info:
        parse_embeddings_request(
            {"model": "jina-embeddings-v3", "input": ["a"] * 2049}, max_dimensions=8
        )
    assert info.value.status == 400
    assert "larger than the largest allowed size 2048" in info.value.body["detail"]


# -- token estimate ----------------------------------------------------------------------------


def test_token_estimate_counts_specials_instruction_and_dense_scripts() -> None:
    assert estimate_tokens("") == 2
    assert estimate_tokens("a", task=Task.RETRIEVAL_QUERY) > estimate_tokens("a") + 5
    assert estimate_tokens("東京は日本の首都です。") >= 11 + 2
    assert estimate_tokens("1234567890") >= 12
    long_word = "x" * 300
    assert estimate_tokens(long_word) >= 100
