"""Our Jina-compatible server, over real HTTP on 127.0.0.1, against the conformance model.

Every response is validated against the official schema (``EmbeddingResponse`` for 200,
``HTTPValidationError`` for 422, ``ErrorResponse`` otherwise) and vectors are compared with the
local model embedding the same texts in-process.
"""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations.core import (
    ConfigurationError,
    Embeddings,
    EmbedRequest,
    JinaAPIProvider,
    LocalProvider,
)
from jv3_integrations.server import create_app, serve
from tests.conftest import SERVER_API_KEY
from tests.support.jina_schema import validate
from tests.support.server import running_server

AUTH = {"Authorization": f"Bearer {SERVER_API_KEY}"}
MODEL = "jina-embeddings-v3"
TEXTS = ["Berlin is the capital of Germany.", "Der Himmel ist blau.", "東京は日本の首都です。"]


def checked(response: httpx.Response) -> httpx.Response:
    """Validate any response of ours against the official schema; every body is JSON."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code == 200 and "data" in body and "usage" in body:
        multi = [d for d in body["data"] if isinstance(d.get("embedding"), dict)]
        if not multi:
            validate("EmbeddingResponse", body)
        # A list of embedding types makes each embedding an object keyed by type (API.md);
        # the official schema has no shape for that, so each type is checked on its own.
        for kind in multi[0]["embedding"] if multi else []:
            data = [{**d, "embedding": d["embedding"][kind]} for d in body["data"]]
            validate("EmbeddingResponse", {**body, "data": data})
    elif response.status_code == 422:
        validate("HTTPValidationError", body)
        validate("ErrorResponse", body)
    elif response.status_code >= 400:
        validate("ErrorResponse", body)
    return response


def post(url: str, body: Any, headers: dict[str, str] | None = AUTH) -> httpx.Response:
    return checked(httpx.post(f"{url}/v1/embeddings", json=body, headers=headers, timeout=60))


def vectors(response: httpx.Response) -> np.ndarray:
    data = sorted(response.json()["data"], key=lambda d: d["index"])
    return np.array([d["embedding"] for d in data], dtype=np.float32)


# -- embeddings are the local model's ---------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "dimensions", "normalized"),
    [
        (None, None, True),
        ("retrieval.query", None, True),
        ("retrieval.passage", 32, True),
        ("text-matching", 7, False),
        ("classification", None, False),
        ("separation", 128, True),
    ],
)
def test_vectors_and_usage_match_the_local_model(
    jina_server_url: str,
    local_provider: LocalProvider,
    task: str | None,
    dimensions: int | None,
    normalized: bool,
) -> None:
    body: dict[str, Any] = {"model": MODEL, "input": TEXTS, "task": task, "normalized": normalized}
    if dimensions is not None:
        body["dimensions"] = dimensions
    response = post(jina_server_url, body)
    assert response.status_code == 200
    local = local_provider.embed(TEXTS, task=task, dimensions=dimensions, normalized=normalized)
    got = vectors(response)
    assert got.shape == local.vectors.shape
    assert np.allclose(got, local.vectors, atol=1e-5)
    usage = response.json()["usage"]
    assert usage["total_tokens"] == sum(local_provider.count_tokens(TEXTS, task=task).counts)
    assert usage["prompt_tokens"] == usage["total_tokens"]
    assert response.json()["model"] == MODEL
    assert [d["index"] for d in response.json()["data"]] == [0, 1, 2]


def test_every_embedding_type(jina_server_url: str) -> None:
    base = {"model": MODEL, "input": TEXTS, "task": "retrieval.query", "dimensions": 20}
    floats = vectors(post(jina_server_url, base))
    b64 = post(jina_server_url, {**base, "embedding_type": "base64"}).json()["data"]
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64]
    assert np.array_equal(np.stack(decoded), floats)
    bits = np.packbits(floats > 0, axis=1)  # MSB first, bit set where > 0; 20 dims -> 3 bytes
    ubinary = post(jina_server_url, {**base, "embedding_type": "ubinary"}).json()["data"]
    assert [d["embedding"] for d in ubinary] == bits.tolist()
    binary = post(jina_server_url, {**base, "embedding_type": "binary"}).json()["data"]
    assert [d["embedding"] for d in binary] == (bits.astype(int) - 128).tolist()
    multi = post(jina_server_url, {**base, "embedding_type": ["ubinary", "float"]}).json()
    for i, item in enumerate(multi["data"]):
        assert set(item["embedding"]) == {"ubinary", "float"}
        assert item["embedding"]["ubinary"] == bits[i].tolist()
        assert np.allclose(item["embedding"]["float"], floats[i])


def test_encoding_type_alias_and_textdoc_inputs(jina_server_url: str) -> None:
    base = {"model": MODEL, "task": "separation"}
    a = post(jina_server_url, {**base, "input": TEXTS, "embedding_type": "ubinary"})
    b = post(
        jina_server_url,
        {**base, "input": [{"text": t} for t in TEXTS], "encoding_type": "ubinary"},
    )
    assert a.status_code == b.status_code == 200
    assert a.json()["data"] == b.json()["data"]
    single = post(jina_server_url, {**base, "input": TEXTS[1]})
    assert single.status_code == 200 and len(single.json()["data"]) == 1


def test_late_chunking_matches_local(jina_server_url: str, local_provider: LocalProvider) -> None:
    chunks = ["Berlin is a city.", " It is the capital.", " It has 3.8 million people."]
    body = {"model": MODEL, "input": chunks, "late_chunking": True, "task": "retrieval.passage"}
    response = post(jina_server_url, body)
    assert response.status_code == 200
    local = local_provider.embed(chunks, task="retrieval.passage", late_chunking=True)
    assert np.allclose(vectors(response), local.vectors, atol=1e-5)
    counts = local_provider.count_tokens(
        chunks, task="retrieval.passage", late_chunking=True
    ).counts
    assert response.json()["usage"]["total_tokens"] == sum(counts)
    separate = local_provider.embed(chunks, task="retrieval.passage")
    assert not np.allclose(vectors(response), separate.vectors, atol=1e-3)


def test_long_input_needs_truncate(jina_server_url: str, local_provider: LocalProvider) -> None:
    long_text = "word " * 9000
    assert local_provider.count_tokens([long_text]).counts[0] > 8192
    refused = post(jina_server_url, {"model": MODEL, "input": ["ok", long_text]})
    assert refused.status_code == 400 and "input[1]" in refused.json()["detail"]
    late = post(
        jina_server_url,
        {"model": MODEL, "input": ["word " * 5000, "word " * 5000], "late_chunking": True},
    )
    assert late.status_code == 400 and "late_chunking" in late.json()["detail"]


def test_truncate_clips_at_the_model_limit(conformance_dir: Path) -> None:
    # a model with a 64-token limit keeps this fast; the rule is the same at 8192
    short = LocalProvider(str(conformance_dir), max_length=64)
    long_text = "word " * 100
    assert short.count_tokens([long_text]).counts[0] > 64
    with running_server(short) as url:
        refused = post(url, {"model": MODEL, "input": ["ok", long_text]}, headers=None)
        assert refused.status_code == 400
        body = {"model": MODEL, "input": ["ok", long_text], "truncate": True}
        clipped = post(url, body, headers=None)
    assert clipped.status_code == 200
    assert np.allclose(vectors(clipped), short.embed(["ok", long_text]).vectors, atol=1e-5)
    assert clipped.json()["usage"]["total_tokens"] == short.count_tokens(["ok"]).counts[0] + 64
    short.close()


# -- strict validation, official error bodies ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"encoding_format": "binary"}, "encoding_format"),
        ({"encoding_format": "float", "embedding_type": "base64"}, "encoding_format"),
        ({"user": 7}, "user"),
        ({"encoding": "float"}, "encoding"),
        ({"dimension": 8}, "dimension"),
        ({"task_type": "retrieval.query"}, "task_type"),
        ({"task": "retrieval"}, "task"),
        ({"task": 3}, "task"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": 129}, "dimensions"),
        ({"dimensions": "8"}, "dimensions"),
        ({"dimensions": True}, "dimensions"),
        ({"normalized": "false"}, "normalized"),
        ({"embedding_type": "int8"}, "embedding_type"),
        ({"embedding_type": "ubinary", "encoding_type": "float"}, "encoding_type"),
        ({"input": [1, 2]}, "input.0"),
        ({"input": []}, "input"),
    ],
)
def test_422_for_invalid_fields(jina_server_url: str, extra: dict[str, Any], field: str) -> None:
    response = post(jina_server_url, {"model": MODEL, "input": ["x"], **extra})
    assert response.status_code == 422
    body = response.json()
    assert "Validation errors in" in body["detail"] and body["detail"].startswith("[RID: ")
    assert field in [e["field"] for e in body["errors"]]


def test_400_for_unknown_model_and_too_many_inputs(jina_server_url: str) -> None:
    unknown = post(jina_server_url, {"model": "jina-embeddings-v2-base-en", "input": ["x"]})
    assert unknown.status_code == 400 and unknown.json()["code"] == "INPUT_MODEL_NOT_FOUND"
    many = post(jina_server_url, {"model": MODEL, "input": ["x"] * 2049})
    assert many.status_code == 400
    assert "larger than the largest allowed size 2048" in many.json()["detail"]
    missing = post(jina_server_url, {"input": ["x"]})
    assert missing.status_code == 422


def test_json_errors_on_every_path(jina_server_url: str) -> None:
    bad_json = checked(
        httpx.post(f"{jina_server_url}/v1/embeddings", content=b"{not json", headers=AUTH)
    )
    assert bad_json.status_code == 422
    not_found = checked(httpx.get(f"{jina_server_url}/v1/nothing"))
    assert not_found.status_code == 404
    wrong_method = checked(httpx.get(f"{jina_server_url}/v1/embeddings", headers=AUTH))
    assert wrong_method.status_code == 405


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "AUTH_MISSING_API_KEY"),
        ({"Authorization": f"Basic {SERVER_API_KEY}"}, "AUTH_INVALID_FORMAT"),
        ({"Authorization": "Bearer"}, "AUTH_INVALID_FORMAT"),
        ({"Authorization": "Bearer None"}, "AUTH_INVALID_API_KEY"),
        ({"Authorization": f"Bearer {SERVER_API_KEY}x"}, "AUTH_INVALID_API_KEY"),
    ],
)
def test_401_without_a_valid_bearer_key(
    jina_server_url: str, headers: dict[str, str], code: str
) -> None:
    response = post(jina_server_url, {"model": MODEL, "input": ["x"]}, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == code
    assert SERVER_API_KEY not in response.text


def test_models_and_health_are_public(jina_server_url: str) -> None:
    models = checked(httpx.get(f"{jina_server_url}/v1/models"))
    assert models.status_code == 200
    validate("ModelListResponse", models.json())
    entry = models.json()["data"][0]
    assert entry["id"] == "jina-ai/jina-embeddings-v3"
    assert entry["max_output_length"] == 128 and entry["context_length"] == 8192
    health = checked(httpx.get(f"{jina_server_url}/health"))
    assert health.status_code == 200 and health.json()["status"] == "ok"


# -- batching, queue, body cap, drain --------------------------------------------------------------


class Spy(LocalProvider):
    """The local model, recording each forward pass and optionally slowed down."""

    def __init__(self, model: str, *, delay: float = 0.0) -> None:
        super().__init__(model)
        self.delay = delay
        self.passes: list[tuple[str | None, int]] = []

    def _embed(self, request: EmbedRequest) -> Embeddings:
        self.passes.append((request.task.value if request.task else None, len(request.texts)))
        time.sleep(self.delay)
        return super()._embed(request)


def test_concurrent_requests_share_forward_passes(
    conformance_dir: Path, local_provider: LocalProvider
) -> None:
    spy = Spy(str(conformance_dir), delay=0.05)
    tasks = ["retrieval.query", "retrieval.passage"]
    with running_server(spy, max_wait=0.05) as url:

        def one(i: int) -> tuple[int, httpx.Response]:
            body = {"model": MODEL, "input": [f"text {i}", f"more {i}"], "task": tasks[i % 2]}
            return i, post(url, body, headers=None)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(8)))
    for i, response in results:
        assert response.status_code == 200
        local = local_provider.embed([f"text {i}", f"more {i}"], task=tasks[i % 2])
        assert np.allclose(vectors(response), local.vectors, atol=1e-5)
    assert sum(n for _, n in spy.passes) == 16
    assert len(spy.passes) < 8, f"no batching: {spy.passes}"
    assert {t for t, _ in spy.passes} == set(tasks)


def test_full_queue_answers_429_and_our_client_retries(conformance_dir: Path) -> None:
    spy = Spy(str(conformance_dir), delay=0.2)
    with running_server(spy, api_key="k", max_queue_requests=1, max_wait=0) as url:
        headers = {"Authorization": "Bearer k"}

        def one(i: int) -> httpx.Response:
            return post(url, {"model": MODEL, "input": [f"t{i}"]}, headers=headers)

        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(one, range(4)))
        refused = [r for r in responses if r.status_code == 429]
        assert refused and any(r.status_code == 200 for r in responses)
        for r in refused:
            assert r.json()["code"].startswith("RATE_")
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["X-RateLimit-Remaining-Requests"] == "0"
            assert "X-RateLimit-Remaining-Tokens" in r.headers
        client = JinaAPIProvider(api_key="k", base_url=url, max_batch_items=1, max_concurrency=2)
        texts = ["t0", "t1"]
        emb = client.embed(texts)
        assert np.allclose(emb.vectors, spy.embed(texts).vectors, atol=1e-5)
        client.close()


def test_body_size_is_capped(local_provider: LocalProvider) -> None:
    with running_server(local_provider, max_body_bytes=2000) as url:
        big = post(url, {"model": MODEL, "input": ["x" * 3000]}, headers=None)
        assert big.status_code == 413
        small = post(url, {"model": MODEL, "input": ["x" * 300]}, headers=None)
        assert small.status_code == 200


def test_shutdown_drains_in_flight_requests(conformance_dir: Path) -> None:
    spy = Spy(str(conformance_dir), delay=0.6)
    result: dict[str, httpx.Response] = {}
    with running_server(spy) as url:
        worker = threading.Thread(
            target=lambda: result.update(r=post(url, {"model": MODEL, "input": ["x"]}, None))
        )
        worker.start()
        time.sleep(0.3)  # the request is in the model now; leaving the block stops the server
    worker.join(timeout=10)
    assert result["r"].status_code == 200 and len(result["r"].json()["data"]) == 1


# -- serve() -----------------------------------------------------------------------------------


def test_serve_refuses_public_bind_without_key(
    monkeypatch: pytest.MonkeyPatch, conformance_dir: Path
) -> None:
    import uvicorn

    def started(*args: Any, **kwargs: Any) -> None:  # a broken guard fails here, never hangs
        pytest.fail(f"serve() started an unauthenticated server on {kwargs.get('host')}")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.delenv("JV3_SERVER_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="--insecure-no-auth"):
        serve(str(conformance_dir), host="0.0.0.0")
    with pytest.raises(ConfigurationError, match="without an API key"):
        serve(str(conformance_dir), host="10.1.2.3")


def test_serve_key_from_env_and_insecure_flag(
    monkeypatch: pytest.MonkeyPatch, conformance_dir: Path
) -> None:
    import uvicorn

    runs: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append((app, kw)))
    monkeypatch.setenv("JV3_SERVER_API_KEY", "from-env")
    serve(str(conformance_dir), host="0.0.0.0", port=9999)
    app, kwargs = runs[-1]
    assert kwargs["host"] == "0.0.0.0" and kwargs["port"] == 9999
    assert app.state.jv3.api_key == b"from-env"
    monkeypatch.delenv("JV3_SERVER_API_KEY")
    serve(str(conformance_dir), host="10.1.2.3", insecure_no_auth=True)
    assert runs[-1][0].state.jv3.api_key is None
    serve(str(conformance_dir), host="::1")
    assert runs[-1][1]["host"] == "::1"


def test_create_app_rejects_unknown_options(local_provider: LocalProvider) -> None:
    with pytest.raises(ConfigurationError, match="max_qeue"):
        create_app(local_provider, max_qeue=3)


class Broken(LocalProvider):
    """The model fails on every forward pass."""

    def _embed(self, request: EmbedRequest) -> Embeddings:
        raise RuntimeError("CUDA error: out of memory (secret text: Berlin)")


def test_model_failure_is_a_json_500_without_details(conformance_dir: Path) -> None:
    with running_server(Broken(str(conformance_dir))) as url:
        response = post(url, {"model": MODEL, "input": ["Berlin"]}, headers=None)
        assert response.status_code == 500 and response.json()["code"] == "INTERNAL_ERROR"
        assert "Berlin" not in response.text
        # the server keeps serving after a failed pass
        assert checked(httpx.get(f"{url}/health")).status_code == 200
        again = post(url, {"model": MODEL, "input": ["x"]}, headers=None)
        assert again.status_code == 500
