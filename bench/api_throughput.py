"""API throughput: our JinaAPIProvider vs jina-haystack, and our server vs in-process.

Part 1 (client). A loopback server that answers like Jina's API: strict validation (our wire
code), ``latency + tokens * per_token`` seconds per request, at most ``--max-concurrent``
requests at once (5: the free tier), a tokens-per-minute and a requests-per-minute budget, and
429 with the official body (``RATE_CONCURRENCY_LIMIT_EXCEEDED`` / ``RATE_TOKEN_LIMIT_EXCEEDED``
/ ``RATE_REQUEST_LIMIT_EXCEEDED``, no Retry-After, as the real API) past any of them. Each vector
carries a marker of its text, so a lost or misplaced vector is detected. In the same run, with
both clients at their defaults, ``--texts`` texts go through:

- ours: ``JinaAPIProvider.embed_documents`` (defaults: 4 concurrent, balanced batches), and
  again with ``wire_format="base64"`` (the same vectors in a third of the bytes);
- the peer: jina-haystack's ``JinaDocumentEmbedder`` (defaults: 32 texts per request, one at a
  time). Without jina-haystack installed the peer is reported as unavailable.

Part 2 (server). Our server (``create_app`` over ``LocalProvider``) on loopback under
``--clients`` concurrent clients sending 32-text requests, vs the same texts embedded in one
process with ``LocalProvider.embed``: the cost of HTTP + dynamic batching.

Prints one JSON object. Usage::

    python bench/api_throughput.py                                   # 10,000 texts
    python bench/api_throughput.py --texts 1000 --server-texts 500 --no-progress   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from jv3_integrations import JinaAPIProvider, LocalProvider  # noqa: E402
from jv3_integrations.core._progress import progress  # noqa: E402
from jv3_integrations.core._wire import estimate_tokens  # noqa: E402
from jv3_integrations.server._request import (  # noqa: E402
    WireError,
    error_body,
    parse_embeddings_request,
)

DEFAULT_MODEL = ROOT.parent / "shared" / "conformance" / "tiny-v3"
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "one",
    "all",
    "we",
    "can",
    "their",
    "has",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "embedding",
    "vector",
    "search",
    "query",
    "passage",
    "document",
    "retrieval",
    "model",
    "Berlin",
    "Germany",
    "capital",
    "river",
    "city",
    "history",
    "science",
    "language",
    "network",
    "data",
    "memory",
    "index",
    "Zugspitze",
    "Himmel",
    "blau",
    "Wasser",
    "Stadt",
    "Haus",
    "schnell",
    "langsam",
    "Zeit",
    "Welt",
    "Leben",
    "Arbeit",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of 8 to 60 words."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 60, size=n)
    return [
        f"Text {i}: " + " ".join(rng.choice(WORDS, size=int(k))) + "."
        for i, k in enumerate(lengths)
    ]


def marker(text: str) -> float:
    """The value the fake API puts in component 0 of ``text``'s vector (exact in float32)."""
    return int(hashlib.blake2b(text.encode(), digest_size=2).hexdigest(), 16) / 65536.0


# -- a loopback server that answers like Jina's API ---------------------------------------


class FakeJina:
    """Jina's embeddings endpoint: latency, per-token cost, concurrency/TPM/RPM limits."""

    def __init__(
        self,
        *,
        latency: float,
        per_token: float,
        max_concurrent: int,
        tpm: int,
        rpm: int,
        dims: int = 1024,
    ) -> None:
        self.latency = latency
        self.per_token = per_token
        self.max_concurrent = max_concurrent
        self.tpm = tpm
        self.rpm = rpm
        self.dims = dims
        rng = np.random.default_rng(1)
        self.tail: dict[int, str] = {}
        base = rng.normal(size=dims)
        base /= np.linalg.norm(base)
        self.base = base
        self.reset()

    def reset(self) -> None:
        self.in_flight = 0
        self.window: collections.deque[tuple[float, int]] = collections.deque()
        self.statuses: collections.Counter[int] = collections.Counter()

    def _tail(self, dims: int) -> str:
        if dims not in self.tail:
            rest = json.dumps([round(float(x), 7) for x in self.base[1:dims]])
            self.tail[dims] = "," + rest[1:] if dims > 1 else "]"
        return self.tail[dims]

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        def reply(
            status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> Response:
            self.statuses[status] += 1
            return Response(json.dumps(body), status, headers, media_type="application/json")

        async def embeddings(request: Request) -> Response:
            rid = os.urandom(8).hex()
            if not request.headers.get("authorization", "").startswith("Bearer "):
                return reply(401, error_body("No API key provided.", "AUTH_MISSING_API_KEY", rid))
            try:
                req = parse_embeddings_request(
                    json.loads(await request.body()), max_dimensions=self.dims, request_id=rid
                )
            except WireError as exc:
                return reply(exc.status, exc.body)
            tokens = sum(estimate_tokens(t, task=req.task) for t in req.texts)
            now = time.monotonic()
            while self.window and self.window[0][0] < now - 60:
                self.window.popleft()
            used = sum(t for _, t in self.window)
            if self.in_flight >= self.max_concurrent:
                return reply(
                    429,
                    error_body(
                        f"Concurrency limit exceeded: {self.in_flight + 1}/{self.max_concurrent} "
                        "concurrent requests. Wait for pending requests to complete before "
                        "sending new ones.",
                        "RATE_CONCURRENCY_LIMIT_EXCEEDED",
                        rid,
                    ),
                )
            if len(self.window) >= self.rpm:
                return reply(
                    429,
                    error_body(
                        f"Request rate limit exceeded: {len(self.window) + 1}/{self.rpm} requests "
                        "per minute.",
                        "RATE_REQUEST_LIMIT_EXCEEDED",
                        rid,
                    ),
                    {"X-RateLimit-Remaining-Requests": "0"},
                )
            if used + tokens > self.tpm:
                return reply(
                    429,
                    error_body(
                        f"Token rate limit exceeded: {used + tokens:,}/{self.tpm:,} tokens per "
                        "minute. Reduce batch sizes or upgrade your plan.",
                        "RATE_TOKEN_LIMIT_EXCEEDED",
                        rid,
                    ),
                    {"X-RateLimit-Remaining-Tokens": "0"},
                )
            self.window.append((now, tokens))
            self.in_flight += 1
            try:
                await asyncio.sleep(self.latency + self.per_token * tokens)
            finally:
                self.in_flight -= 1
            dims = req.dimensions or self.dims
            if req.embedding_types[0] == "base64":
                vec = self.base[:dims].astype("<f4")
                encoded = []
                for t in req.texts:
                    vec[0] = marker(t)
                    encoded.append(base64.b64encode(vec.tobytes()).decode("ascii"))
                items = ",".join(
                    f'{{"object":"embedding","index":{i},"embedding":"{e}"}}'
                    for i, e in enumerate(encoded)
                )
            else:
                tail = self._tail(dims)
                items = ",".join(
                    f'{{"object":"embedding","index":{i},"embedding":[{marker(t)!r}{tail}}}'
                    for i, t in enumerate(req.texts)
                )
            content = (
                f'{{"model":"jina-embeddings-v3","object":"list","usage":{{"total_tokens":'
                f'{tokens},"prompt_tokens":{tokens}}},"data":[{items}]}}'
            )
            self.statuses[200] += 1
            headers = {
                "X-RateLimit-Remaining-Requests": str(max(0, self.rpm - len(self.window))),
                "X-RateLimit-Remaining-Tokens": str(max(0, self.tpm - used - tokens)),
            }
            return Response(content, 200, headers, media_type="application/json")

        async def stats(request: Request) -> Response:
            return Response(json.dumps({str(k): v for k, v in self.statuses.items()}))

        async def reset(request: Request) -> Response:
            self.reset()
            return Response("{}", media_type="application/json")

        return Starlette(
            routes=[
                Route("/v1/embeddings", embeddings, methods=["POST"]),
                Route("/stats", stats, methods=["GET"]),
                Route("/reset", reset, methods=["POST"]),
            ]
        )


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port; yield its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def fake_api_process(args: argparse.Namespace) -> Iterator[str]:
    """The fake API in its own process (its CPU is not ours, as with the real remote API)."""
    import subprocess

    import httpx

    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    options = ["--latency", str(args.latency), "--per-token", str(args.per_token)]
    options += ["--max-concurrent", str(args.max_concurrent)]
    options += ["--tpm", str(args.tpm), "--rpm", str(args.rpm)]
    proc = subprocess.Popen([sys.executable, __file__, "--fake-api-port", str(port), *options])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/stats", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fake API did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def stats(url: str) -> collections.Counter[int]:
    import httpx

    counts = httpx.get(f"{url}/stats").json()
    return collections.Counter({int(k): v for k, v in counts.items()})


def reset(url: str) -> None:
    import httpx

    httpx.post(f"{url}/reset")


def check(vectors: list[Any], texts: list[str]) -> int:
    """Texts whose vector is missing or is not theirs."""
    lost = max(0, len(texts) - len(vectors))
    for text, vec in zip(texts, vectors, strict=False):
        if abs(float(vec[0]) - marker(text)) > 1e-6:
            lost += 1
    return lost


def run_ours(url: str, texts: list[str], **options: Any) -> dict[str, Any]:
    provider = JinaAPIProvider("bench-key", base_url=url, **options)  # defaults unless given
    start = time.perf_counter()
    emb = provider.embed_documents(texts)
    seconds = time.perf_counter() - start
    provider.close()
    return {"seconds": seconds, "lost": check(list(emb.vectors), texts)}


def run_haystack(url: str, texts: list[str], show: bool) -> dict[str, Any]:
    try:
        from haystack import Document
        from haystack.utils import Secret
        from haystack_integrations.components.embedders.jina import JinaDocumentEmbedder
    except ImportError:
        return {"available": False, "reason": "jina-haystack is not installed"}
    embedder = JinaDocumentEmbedder(  # defaults, pointed at the loopback API
        api_key=Secret.from_token("bench-key"),
        base_url=f"{url}/v1/embeddings",
        task="retrieval.passage",
        progress_bar=show,
    )
    start = time.perf_counter()
    try:
        docs = embedder.run([Document(content=t) for t in texts])["documents"]
    except Exception as exc:  # it does not retry: a 429 or timeout ends the run
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "lost": len(texts), "failed": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lost": check([d.embedding for d in docs], texts)}


def client_part(args: argparse.Namespace, show: bool) -> dict[str, Any]:
    texts = make_texts(args.texts)
    out: dict[str, Any] = {
        "texts": len(texts),
        "api": {
            "latency_s": args.latency,
            "per_token_s": args.per_token,
            "max_concurrent": args.max_concurrent,
            "tpm": args.tpm,
            "rpm": args.rpm,
        },
    }
    with fake_api_process(args) as url, progress(3, "client bench", enabled=show) as bar:
        reset(url)  # a fresh budget for each client
        ours = run_ours(url, texts)
        counts = stats(url)
        ours["requests"] = sum(counts.values())
        ours["answered_429"] = counts[429]
        bar.update()
        reset(url)
        ours_b64 = run_ours(url, texts, wire_format="base64")
        counts = stats(url)
        ours_b64["requests"] = sum(counts.values())
        ours_b64["answered_429"] = counts[429]
        reset(url)
        peer = run_haystack(url, texts, show)
        if "seconds" in peer:
            counts = stats(url)
            peer["requests"] = sum(counts.values())
            peer["answered_429"] = counts[429]
        bar.update()
    for result in (ours, ours_b64, peer):
        if "seconds" in result:
            result["texts_per_s"] = round(len(texts) / result["seconds"], 1)
            result["seconds"] = round(result["seconds"], 3)
    out["ours"] = ours
    out["ours_wire_format_base64"] = ours_b64
    out["jina_haystack"] = peer
    if "texts_per_s" in peer and not peer.get("failed"):
        out["speedup"] = round(ours["texts_per_s"] / peer["texts_per_s"], 2)
    ratio_429 = ours["answered_429"] / max(1, ours["requests"])
    out["targets"] = {
        "speedup_ge_4.5": out.get("speedup", 0) >= 4.5,
        "zero_lost": ours["lost"] == 0,
        "our_429_rate_lt_1pct": ratio_429 < 0.01,
    }
    return out


def server_part(args: argparse.Namespace, show: bool) -> dict[str, Any]:
    from jv3_integrations.server import create_app

    texts = make_texts(args.server_texts, seed=1)
    local = LocalProvider(args.model)
    local.embed(texts[:8])  # load weights, warm up
    start = time.perf_counter()
    reference = local.embed(texts, task="retrieval.passage")
    in_process = time.perf_counter() - start

    chunks = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    results: list[Any] = [None] * len(chunks)
    app = create_app(local)
    with serve_in_thread(app) as url, progress(len(chunks), "server bench", enabled=show) as bar:
        clients = [
            JinaAPIProvider(base_url=url, max_batch_items=32, max_concurrency=1)
            for _ in range(args.clients)
        ]
        clients[0].embed(["warm up"])
        lock = threading.Lock()
        next_chunk = iter(range(len(chunks)))

        def worker(client: JinaAPIProvider) -> None:
            while True:
                with lock:
                    i = next(next_chunk, None)
                if i is None:
                    return
                results[i] = client.embed_documents(chunks[i]).vectors
                with lock:
                    bar.update()

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(worker, clients))
        served = time.perf_counter() - start
        for c in clients:
            c.close()
        passes = app.state.jv3.batcher.passes
    got = np.concatenate(results)
    return {
        "model": str(args.model),
        "texts": len(texts),
        "clients": args.clients,
        "request_texts": 32,
        "requests": len(chunks),
        "forward_passes": passes,
        "in_process_s": round(in_process, 3),
        "in_process_texts_per_s": round(len(texts) / in_process, 1),
        "server_s": round(served, 3),
        "server_texts_per_s": round(len(texts) / served, 1),
        "server_vs_in_process": round(in_process / served, 3),
        "max_abs_diff": float(np.abs(got - reference.vectors).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per request")
    parser.add_argument("--per-token", type=float, default=1e-5, help="seconds per token")
    parser.add_argument("--max-concurrent", type=int, default=5)
    parser.add_argument("--tpm", type=int, default=1_000_000, help="tokens per minute")
    parser.add_argument("--rpm", type=int, default=500, help="requests per minute")
    parser.add_argument("--server-texts", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="model dir or Hub id")
    parser.add_argument("--skip-client", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--fake-api-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_api_port is not None:  # the child process of fake_api_process()
        import uvicorn

        fake = FakeJina(
            latency=args.latency,
            per_token=args.per_token,
            max_concurrent=args.max_concurrent,
            tpm=args.tpm,
            rpm=args.rpm,
        )
        uvicorn.run(fake.app(), host="127.0.0.1", port=args.fake_api_port, log_level="error")
        return
    show = not args.no_progress
    report: dict[str, Any] = {"cpu_count": os.cpu_count()}
    if not args.skip_client:
        report["client"] = client_part(args, show)
    if not args.skip_server:
        report["server"] = server_part(args, show)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
