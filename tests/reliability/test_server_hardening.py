"""Our server against hostile and sloppy clients.

- schemathesis drives ``POST /v1/embeddings`` from the official schema (a reduced copy whose
  request body is just ``EmbeddingsV3Request``), valid and invalid bodies: never a 5xx, every
  answer conforms to the schema (status code, content type, body);
- huge, deep, malformed bodies get a 4xx quickly without the server's memory blowing up;
- requests without a valid key never reach the model (the model's calls are counted);
- clients that hang up mid-request give their queue slots back.
"""

from __future__ import annotations

import copy
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jv3_integrations import LocalProvider
from jv3_integrations.core import Embeddings, EmbedRequest
from jv3_integrations.core._types import TaskLike
from tests.conftest import SERVER_API_KEY, SPEC_DIR
from tests.support.server import running_server

MODEL = "jina-embeddings-v3"
TINY_DIMS = 128  # the conformance checkpoint's full size


class CountingModel(LocalProvider):
    """The local model, counting every forward pass and token count; optionally slow."""

    def __init__(self, model: str, *, delay: float = 0.0) -> None:
        super().__init__(model)
        self.delay = delay
        self.embed_calls = 0
        self.count_calls = 0
        self.lock = threading.Lock()

    def _embed(self, request: EmbedRequest) -> Embeddings:
        with self.lock:
            self.embed_calls += 1
        time.sleep(self.delay)
        return super()._embed(request)

    def count_tokens(
        self, texts: Any, *, task: TaskLike = None, late_chunking: bool = False
    ) -> Any:
        with self.lock:
            self.count_calls += 1
        return super().count_tokens(texts, task=task, late_chunking=late_chunking)


@pytest.fixture(scope="module")
def counting(conformance_dir: Path) -> Iterator[CountingModel]:
    model = CountingModel(str(conformance_dir))
    yield model
    model.close()


@pytest.fixture(scope="module")
def counted_server(counting: CountingModel) -> Iterator[str]:
    with running_server(counting, api_key=SERVER_API_KEY, max_body_bytes=4 * 1024 * 1024) as url:
        yield url


AUTH = {"Authorization": f"Bearer {SERVER_API_KEY}"}


# -- schemathesis against the official schema ----------------------------------------------


def reduced_schema() -> dict[str, Any]:
    """The official OpenAPI document cut down to ``POST /v1/embeddings`` for jina-embeddings-v3.

    The request body is just ``EmbeddingsV3Request`` (the official one is a oneOf over every
    model); ``dimensions`` is capped at the served checkpoint's size (128, not 1024) since the
    tiny test model has no more; a multi-type ``embedding`` object is allowed (see below).
    Everything else — responses, error schemas — is as published.
    """
    doc = json.loads((SPEC_DIR / "jina-openapi.json").read_text(encoding="utf-8"))
    op = copy.deepcopy(doc["paths"]["/v1/embeddings"]["post"])
    op["requestBody"]["content"] = {
        "application/json": {"schema": {"$ref": "#/components/schemas/EmbeddingsV3Request"}}
    }
    op["security"] = [{"HTTPBearer": []}]
    dims = doc["components"]["schemas"]["EmbeddingsV3Request"]["properties"]["dimensions"]
    dims["anyOf"][0]["maximum"] = TINY_DIMS
    # A list of embedding types makes ``embedding`` an object keyed by type whose values are
    # base64 strings or number arrays (spec/API.md); the published schema only allows an
    # object of numbers there (sparse embeddings), so this one shape is added.
    embedding = doc["components"]["schemas"]["SingleEmbeddingData"]["properties"]["embedding"]
    embedding["anyOf"].append(
        {
            "type": "object",
            "additionalProperties": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}]
            },
        }
    )
    return {
        "openapi": doc["openapi"],
        "info": doc["info"],
        "paths": {"/v1/embeddings": {"post": op}},
        "components": doc["components"],
    }


@pytest.fixture(scope="module")
def embeddings_operation() -> Any:
    import schemathesis

    schema = schemathesis.openapi.from_dict(reduced_schema())
    return schema["/v1/embeddings"]["POST"]


def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    embeddings_operation: Any, jina_server_url: str
) -> None:
    from schemathesis import checks
    from schemathesis.generation.modes import GenerationMode

    chosen = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.negative_data_rejection,  # invalid bodies are refused with a 4xx
    ]
    cases = st.one_of(
        embeddings_operation.as_strategy(GenerationMode.POSITIVE),
        embeddings_operation.as_strategy(GenerationMode.NEGATIVE),
    )
    seen: dict[int, int] = {}
    session = requests.Session()

    @settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=cases)
    def run(case: Any) -> None:
        response = case.call_and_validate(
            base_url=jina_server_url, session=session, headers=AUTH, checks=chosen
        )
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    run()
    session.close()
    assert seen.get(200, 0) > 5, seen  # valid bodies were embedded, not all refused
    assert sum(v for k, v in seen.items() if 400 <= k < 500) > 5, seen


# -- hostile bodies: 4xx, quickly, memory bounded --------------------------------------------


def _peak_rss_mib(*, reset: bool = False) -> float:
    """This process's peak RSS (MiB); ``reset``: restart the peak from the current RSS first.

    Resetting (Linux ``clear_refs`` 5) makes each check measure its own request, whatever
    earlier tests in the process allocated.
    """
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status: peak RSS cannot be checked here")


def _post_raw(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    h = {**AUTH, "Content-Type": "application/json", **(headers or {})}
    return httpx.post(url + "/v1/embeddings", content=body, headers=h, timeout=60)


DEEP_OBJECT = b'{"model":"m","input":["a"],"task":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"
MILLION = json.dumps({"model": MODEL, "input": ["ab " * 333_334]}).encode()  # 1,000,002 chars
HOSTILE: dict[str, tuple[bytes, int]] = {
    "10,000 inputs": (json.dumps({"model": MODEL, "input": ["x"] * 10_000}).encode(), 400),
    "nested 100,000 deep": (b'{"model":"m","input":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422),
    "nested objects": (DEEP_OBJECT, 422),
    "invalid UTF-8": (b'{"model":"jina-embeddings-v3","input":["a\xff\xfe\xc3(b"]}', 422),
    "raw NUL byte": (b'{"model":"jina-embeddings-v3","input":["a\x00b"]}', 422),
    "NUL in the body head": (b"\x00" * 64, 422),
    "not JSON": (b"input=hello", 422),
    "JSON null": (b"null", 422),
    "escaped lone surrogate": (b'{"model":"jina-embeddings-v3","input":["\\udbff"]}', 422),
    "1,000,000-char string": (MILLION, 400),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_get_a_4xx_quickly_without_touching_the_model(
    name: str, counted_server: str, counting: CountingModel
) -> None:
    body, status = HOSTILE[name]
    before_calls, before_peak = counting.embed_calls, _peak_rss_mib(reset=True)
    started = time.perf_counter()
    r = _post_raw(counted_server, body)
    elapsed = time.perf_counter() - started
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["detail"]
    assert counting.embed_calls == before_calls  # refused before any forward pass
    # "quickly": the 1M-char string is tokenized once to count it (a few seconds on 2 cores)
    assert elapsed < (20.0 if name.startswith("1,000,000") else 2.0), elapsed
    assert _peak_rss_mib() - before_peak < 600, "one request raised peak RSS by > 600 MiB"


def test_escaped_nul_is_text_and_embedded(counted_server: str) -> None:
    r = _post_raw(counted_server, b'{"model":"jina-embeddings-v3","input":["a\\u0000b"]}')
    assert r.status_code == 200 and len(r.json()["data"]) == 1


def _raw_request(url: str, head: bytes, body: bytes = b"", hang_up_after: float = -1) -> bytes:
    """Send a raw request; read the answer, or (``hang_up_after`` >= 0) vanish after that long."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        if hang_up_after >= 0:
            time.sleep(hang_up_after)
            return b""
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_declared_oversized_body_is_refused_before_it_is_sent(counted_server: str) -> None:
    # Content-Length of 10 GB and not one byte of body: the server must not wait for it
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + SERVER_API_KEY.encode() + b"\r\n"
        b"Content-Length: 10000000000\r\nConnection: close\r\n\r\n"
    )
    started = time.perf_counter()
    answer = _raw_request(counted_server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.perf_counter() - started < 2.0


def test_streamed_oversized_body_is_cut_off_at_the_limit(counted_server: str) -> None:
    """A chunked upload without Content-Length: the server answers 413 once it has read
    max_body_bytes (4 MiB here) and stops reading, long before the 64 MiB offered are sent."""
    host, port = counted_server.removeprefix("http://").split(":")
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + SERVER_API_KEY.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"a" * (1024 * 1024)
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    before = _peak_rss_mib(reset=True)
    sent_mib = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        start = b'{"model":"jina-embeddings-v3","input":["'
        sock.sendall(head + b"%x\r\n" % len(start) + start + b"\r\n")
        for _ in range(64):  # 64 MiB offered
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered (and stopped reading)
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent_mib += 1
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # 4 MiB allowed; what the kernel's socket buffers took on top of it is the only excess
    assert sent_mib < 24, f"the server kept reading: {sent_mib} MiB sent of 64"
    assert _peak_rss_mib() - before < 200


# -- authentication happens before anything else ----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {SERVER_API_KEY}"},
        {"Authorization": f"Bearer {SERVER_API_KEY.upper()}"},
        {"Authorization": f"Bearer {SERVER_API_KEY}x"},
        {"Authorization": f"Bearer {SERVER_API_KEY[:-1]}"},
        {"Authorization": f"Token {SERVER_API_KEY}"},
        {"X-Api-Key": SERVER_API_KEY},
    ],
    ids=lambda h: repr(h)[:40],
)
def test_unauthenticated_requests_never_reach_the_model(
    headers: dict[str, str], counted_server: str, counting: CountingModel
) -> None:
    before = (counting.embed_calls, counting.count_calls)
    for body in (
        json.dumps({"model": MODEL, "input": ["secret text"]}).encode(),
        b"{not json",
        json.dumps({"model": MODEL, "input": ["x" * 100_000]}).encode(),
    ):
        r = httpx.post(
            counted_server + "/v1/embeddings",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )
        assert r.status_code == 401, r.text
        assert r.json()["code"].startswith("AUTH_")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    # neither a forward pass nor even the tokenizer ran for them
    assert (counting.embed_calls, counting.count_calls) == before


def test_authenticated_request_does_reach_the_model(
    counted_server: str, counting: CountingModel
) -> None:
    before = (counting.embed_calls, counting.count_calls)
    r = httpx.post(
        counted_server + "/v1/embeddings", json={"model": MODEL, "input": ["x"]}, headers=AUTH
    )
    assert r.status_code == 200
    assert counting.embed_calls == before[0] + 1 and counting.count_calls == before[1] + 1


# -- disconnects do not leak queue slots --------------------------------------------------------


def test_clients_hanging_up_mid_request_give_their_queue_slots_back(conformance_dir: Path) -> None:
    slow = CountingModel(str(conformance_dir), delay=0.15)
    limit = 6
    with running_server(slow, max_queue_requests=limit, max_queue_tokens=100_000) as url:
        body = json.dumps({"model": MODEL, "input": ["hang up on me", "twice"]}).encode()
        head = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )

        # 30 clients, 10 at a time: some hang up mid-body, the others once their request is
        # queued or in the model (each pass takes 0.15 s), none reads its answer
        def vanish(i: int) -> bytes:
            if i % 5 == 0:
                return _raw_request(url, head, body[: len(body) // 2], hang_up_after=0.0)
            return _raw_request(url, head, body, hang_up_after=0.05 * (i % 6))

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(vanish, range(30)))
        assert slow.embed_calls > 0  # some of them did reach the model before hanging up

        def queue_state() -> tuple[str, str]:
            r = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": ["probe"]})
            assert r.status_code in (200, 429), r.text
            return (
                r.headers["X-RateLimit-Remaining-Requests"],
                r.headers["X-RateLimit-Remaining-Tokens"],
            )

        deadline = time.monotonic() + 20
        while (state := queue_state()) != (str(limit), "100000"):
            assert time.monotonic() < deadline, f"queue never drained: {state}"
            time.sleep(0.2)
        # and the whole queue is usable again: `limit` concurrent requests, none refused
        with ThreadPoolExecutor(limit) as pool:
            statuses = list(
                pool.map(
                    lambda i: (
                        httpx.post(
                            url + "/v1/embeddings", json={"model": MODEL, "input": [f"after {i}"]}
                        ).status_code
                    ),
                    range(limit),
                )
            )
        assert statuses == [200] * limit
    slow.close()
