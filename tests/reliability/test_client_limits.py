"""``JinaAPIProvider``'s limits under a careless caller and a hostile server.

Concurrency bounded per provider instance (threads and event loops together), a total deadline
per attempt, answers checked against what was asked, model-size probes that never guess, and
credentials kept out of URLs. Everything talks to 127.0.0.1 (our server or the fault server);
``httpx.MockTransport`` only injects faults in front of the real server.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from jv3_integrations import LocalProvider
from jv3_integrations.core import (
    APIError,
    APIResponseError,
    APITimeoutError,
    ConfigurationError,
    Embeddings,
    EmbedRequest,
    JinaAPIProvider,
    load_provider,
)
from tests.conftest import SERVER_API_KEY
from tests.support.fault_server import fault_server
from tests.support.server import running_server

TINY_DIMS = 128
ROOT = Path(__file__).resolve().parents[2]
JV3 = [sys.executable, "-m", "jv3_integrations"]


class SlowModel(LocalProvider):
    """The local model with a pause per forward pass (requests overlap at the server)."""

    def __init__(self, model: str, delay: float) -> None:
        super().__init__(model)
        self.delay = delay

    def _embed(self, request: EmbedRequest) -> Embeddings:
        time.sleep(self.delay)
        return super()._embed(request)


class InFlight:
    """ASGI middleware: counts ``POST /v1/embeddings`` requests in flight, keeps the peak."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.now = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/embeddings":
            await self.app(scope, receive, send)
            return
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


@pytest.fixture(scope="module")
def slow_server(conformance_dir: Path) -> Iterator[tuple[str, InFlight]]:
    model = SlowModel(str(conformance_dir), delay=0.03)
    seen: list[InFlight] = []

    def wrap(app: Any) -> Any:
        seen.append(InFlight(app))
        return seen[0]

    with running_server(model, wrap=wrap, max_wait=0.0) as url:
        yield url, seen[0]
    model.close()


# -- 8. max_concurrency bounds the provider instance ------------------------------------------


def test_max_concurrency_holds_across_threads_and_event_loops(
    slow_server: tuple[str, InFlight],
) -> None:
    url, inflight = slow_server
    inflight.peak = 0
    provider = JinaAPIProvider(
        base_url=url, max_concurrency=2, max_batch_items=64, max_dimensions=TINY_DIMS
    )
    texts = [f"text {i}" for i in range(256)]  # 4 requests per call
    results: list[np.ndarray] = []
    lock = threading.Lock()

    def sync_call() -> None:
        v = provider.embed(texts).vectors
        with lock:
            results.append(v)

    def async_calls() -> None:
        async def two() -> list[Embeddings]:
            return list(await asyncio.gather(provider.aembed(texts), provider.aembed(texts)))

        out = asyncio.run(two())
        with lock:
            results.extend(e.vectors for e in out)

    threads = [threading.Thread(target=sync_call) for _ in range(3)]
    threads += [threading.Thread(target=async_calls) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    provider.close()
    assert len(results) == 9 and all(r.shape == (256, TINY_DIMS) for r in results)
    assert all(np.allclose(r, results[0], atol=1e-5) for r in results)
    assert 1 <= inflight.peak <= 2, inflight.peak


def test_a_cancelled_async_call_gives_its_slots_back(slow_server: tuple[str, InFlight]) -> None:
    url, _ = slow_server
    provider = JinaAPIProvider(
        base_url=url, max_concurrency=1, max_batch_items=64, max_dimensions=TINY_DIMS
    )
    texts = [f"text {i}" for i in range(256)]

    async def run() -> Embeddings:
        call = asyncio.ensure_future(provider.aembed(texts))
        waiter = asyncio.ensure_future(provider.aembed(texts[:3]))  # queued behind the slot
        await asyncio.sleep(0.05)
        call.cancel()
        waiter.cancel()
        await asyncio.gather(call, waiter, return_exceptions=True)
        return await asyncio.wait_for(provider.aembed(["after"]), 30)

    assert asyncio.run(run()).vectors.shape == (1, TINY_DIMS)
    assert provider.embed(["sync after"]).vectors.shape == (1, TINY_DIMS)
    provider.close()


# -- 9. timeout is a deadline per attempt -----------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_dripping_its_answer_cannot_stretch_the_timeout(mode: str) -> None:
    with fault_server(["drip"]) as (url, _):
        provider = JinaAPIProvider(
            base_url=url, timeout=1.0, max_retries=0, max_dimensions=4, max_batch_items=64
        )
        started = time.perf_counter()
        with pytest.raises(APITimeoutError):
            if mode == "sync":
                provider.embed(["a", "b", "c"])
            else:
                asyncio.run(provider.aembed(["a", "b", "c"]))
        took = time.perf_counter() - started
        provider.close()
    assert took < 2.5, took  # the answer takes ~30 s to drip; each read is 0.1 s


def test_async_deadline_holds_even_while_the_headers_drip() -> None:
    with fault_server(["drip_head"]) as (url, _):
        provider = JinaAPIProvider(base_url=url, timeout=1.0, max_retries=0, max_dimensions=4)
        started = time.perf_counter()
        with pytest.raises(APITimeoutError):
            asyncio.run(provider.aembed(["a"]))
        took = time.perf_counter() - started
    assert took < 2.5, took


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_total_timeout_bounds_a_call_with_its_retries(mode: str) -> None:
    with fault_server(["hang"] * 10) as (url, _):
        provider = JinaAPIProvider(
            base_url=url,
            timeout=0.5,
            total_timeout=1.2,
            max_retries=10,
            backoff_base=0.2,
            max_dimensions=4,
        )
        started = time.perf_counter()
        with pytest.raises(APITimeoutError):
            if mode == "sync":
                provider.embed(["a"])
            else:
                asyncio.run(provider.aembed(["a"]))
        took = time.perf_counter() - started
    assert took < 2.5, took  # 10 retries of 0.5 s each would take > 5 s


def test_total_timeout_is_validated() -> None:
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigurationError, match="total_timeout"):
            JinaAPIProvider(base_url="http://127.0.0.1:9", total_timeout=bad)  # type: ignore[arg-type]


# -- 10. answers it did not ask for are refused -----------------------------------------------


def _answering(rows: list[Any]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(rows)]
        body = {"model": "jina-embeddings-v3", "object": "list", "data": data, "usage": {}}
        return httpx.Response(200, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


UNIT = [0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("rows", "normalized", "wire", "match"),
    [
        ([{"ubinary": [177]}], True, "float", "ubinary"),
        ([{"binary": [49]}], True, "base64", "binary"),
        ([[177]], True, "base64", "base64"),
        ([[7.0, 0, 0, 0, 0, 0, 0, 0]], True, "float", "unit"),
        ([[0.0] * 8], True, "float", "unit"),
        ([UNIT, [0.5] * 8], True, "float", "unit"),
    ],
    ids=["ubinary-for-float", "binary-for-base64", "list-for-base64", "norm-7", "zero", "one-of-2"],
)
def test_answers_not_matching_the_request_are_api_response_errors(
    rows: list[Any], normalized: bool, wire: str, match: str
) -> None:
    provider = JinaAPIProvider(
        api_key="k",
        base_url="http://127.0.0.1:9",
        max_dimensions=8,
        wire_format=wire,
        http_client=_answering(rows),
        max_retries=0,
    )
    with pytest.raises(APIResponseError, match=match):
        provider.embed([f"t{i}" for i in range(len(rows))], normalized=normalized)


def test_unnormalized_answers_are_accepted_when_unnormalized_was_asked() -> None:
    provider = JinaAPIProvider(
        api_key="k",
        base_url="http://127.0.0.1:9",
        max_dimensions=8,
        http_client=_answering([[7.0] * 8]),
    )
    assert provider.embed(["t"], normalized=False).vectors[0, 0] == pytest.approx(7.0)
    provider2 = JinaAPIProvider(
        api_key="k", base_url="http://127.0.0.1:9", max_dimensions=8, http_client=_answering([UNIT])
    )
    assert provider2.embed(["t"]).vectors[0].tolist() == pytest.approx(UNIT)


# -- 11. a failed model-size probe is never cached as a guess ---------------------------------


class FlakyModels(httpx.BaseTransport):
    """Forwards to the real server, but answers ``GET /v1/models`` 503 while ``failures``."""

    def __init__(self, failures: int) -> None:
        self.real = httpx.HTTPTransport()
        self.failures = failures
        self.probes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            self.probes += 1
            if self.failures > 0:
                self.failures -= 1
                return httpx.Response(503, json={"detail": "warming up"})
        return self.real.handle_request(request)


def test_one_failed_probe_is_retried_not_replaced_by_1024(jina_server_url: str) -> None:
    flaky = FlakyModels(failures=1)
    provider = JinaAPIProvider(
        api_key=SERVER_API_KEY,
        base_url=jina_server_url,
        http_client=httpx.Client(transport=flaky),
        backoff_base=0.01,
        max_retries=2,
    )
    provider._sleep = lambda s: None
    assert provider.max_dimensions == TINY_DIMS
    assert provider.embed(["x"]).vectors.shape == (1, TINY_DIMS)
    assert flaky.probes == 2


def test_a_probe_that_keeps_failing_raises_and_is_asked_again_later(
    jina_server_url: str,
) -> None:
    flaky = FlakyModels(failures=4)  # two probes per call (max_retries=1)
    provider = JinaAPIProvider(
        api_key=SERVER_API_KEY,
        base_url=jina_server_url,
        http_client=httpx.Client(transport=flaky),
        backoff_base=0.01,
        max_retries=1,
    )
    provider._sleep = lambda s: None
    with pytest.raises(APIError, match="max_dimensions="):
        _ = provider.dimensions
    with pytest.raises(APIError):
        provider.embed(["x"])
    # the server recovered: the next call asks again and gets the truth, not a cached 1024
    assert provider.dimensions == TINY_DIMS
    assert provider.embed(["x"]).vectors.shape == (1, TINY_DIMS)


def test_async_probe_failures_are_not_cached_either(jina_server_url: str) -> None:
    class AsyncFlaky(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.real = httpx.AsyncHTTPTransport()
            self.failures = 1

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/models" and self.failures > 0:
                self.failures -= 1
                return httpx.Response(502, text="<html>bad gateway</html>")
            return await self.real.handle_async_request(request)

    async def run() -> tuple[str, int]:
        async with httpx.AsyncClient(transport=AsyncFlaky()) as client:
            provider = JinaAPIProvider(
                api_key=SERVER_API_KEY,
                base_url=jina_server_url,
                async_http_client=client,
                max_retries=0,
            )
            try:
                await provider.aembed(["x"])
                first = "no error"
            except APIError as exc:
                first = type(exc).__name__
            second = (await provider.aembed(["x"])).vectors.shape[1]
            return first, second

    first, second = asyncio.run(run())
    assert first == "ServerError" and second == TINY_DIMS


def test_jv3_index_never_writes_a_guessed_size_into_the_state(
    jina_server_url: str, tmp_path: Path
) -> None:
    from jv3_integrations._cli.indexer import IndexOptions, run_index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Berlin is the capital of Germany.")
    store = f"qdrant:{tmp_path / 'store'}"
    broken = JinaAPIProvider(
        api_key=SERVER_API_KEY,
        base_url=jina_server_url,
        http_client=httpx.Client(transport=FlakyModels(failures=100)),
        max_retries=0,
    )
    with pytest.raises(APIError):
        run_index(IndexOptions([str(docs)], store, progress=False, provider_instance=broken), print)
    healthy = JinaAPIProvider(api_key=SERVER_API_KEY, base_url=jina_server_url)
    report = run_index(
        IndexOptions([str(docs)], store, progress=False, provider_instance=healthy), print
    )
    assert report.settings["dimensions"] == TINY_DIMS and report.new == 1


# -- 12. credentials never ride in the URL ------------------------------------------------------

SECRET = "hunter2-canary-7731"


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@127.0.0.1:9",
        f"http://{SECRET}@127.0.0.1:9/",
        f"http://127.0.0.1:9/?api_key={SECRET}",
        f"http://127.0.0.1:9/v1#{SECRET}",
    ],
)
def test_credentials_in_the_url_are_refused_without_being_shown(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for make in (lambda: JinaAPIProvider(base_url=url), lambda: load_provider(url)):
        with pytest.raises(ConfigurationError) as info:
            make()
        text = f"{info.value}{info.value!r}{info.getrepr()}"
        assert SECRET not in text
        assert "api_key" in str(info.value) and "127.0.0.1" in str(info.value)
    assert SECRET not in caplog.text


def test_plain_urls_still_work_and_pickle_without_secrets(jina_server_url: str) -> None:
    provider = JinaAPIProvider(api_key=SECRET, base_url=jina_server_url + "/v1/embeddings/")
    assert provider.base_url == jina_server_url
    assert SECRET not in repr(provider) and SECRET.encode() not in pickle.dumps(provider)


def test_cli_with_a_credential_url_says_so_in_one_line_without_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [*JV3, "embed", "hello", "--provider", f"http://me:{SECRET}@127.0.0.1:9/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert SECRET not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1 and "api_key" in out.stderr, out.stderr
