"""API throughput under a rate limit: our JinaAPIProvider vs jina-haystack; our server's cost.

Part 1 (client). A loopback server, in its own process, that behaves like a rate-limited Jina
API: strict validation (our wire code); per-key limits from a tier preset (``--tier``, values
from Jina's published rate limits; ``--rpm/--tpm/--max-concurrent`` override) over a sliding budget
window (``--window``, 60 s like the real per-minute budgets; a shorter window scales the budget
to the same rate, for quick runs); tokens counted by the server's own tokenizer (``--server-
tokenizer``), not our estimator; service time ``latency`` plus the request's tokens at
``--capacity`` tokens/s shared by every request in flight (so parallel requests are not free);
429 with the official body and no Retry-After (as the real API; ``--retry-after`` adds it).
Each vector carries a marker of its text, so a lost or misplaced vector is detected. Every
contender gets a fresh key:

- burst (labelled so): texts that fit in 90 % of one window's budget, the key's full budget
  available at once: ours at defaults (and with ``wire_format="base64"``), jina-haystack's
  ``JinaDocumentEmbedder`` at its defaults (32 texts per request, one at a time) and at each of
  ``--peer-batch-sizes``; the fastest peer that did not fail is its best batch size;
- steady state: texts for ``--steady-windows`` + 1.25 budget windows; figures over everything
  after the first window (where the budget binds): texts/s, fraction of the key's TPM used
  (the physical limit), 429s by code, lost texts; ours at defaults (and with ``--ours-options``),
  the peer at its defaults and at its best batch size, and whether each survives a 429.

Part 2 (server). Our server (``create_app`` over ``LocalProvider``) on loopback under
``--clients`` concurrent clients sending 32-text requests, vs the same texts embedded in one
process with ``LocalProvider.embed``: the cost of HTTP + dynamic batching.

Prints one JSON object. Usage::

    python bench/api_throughput.py --skip-server              # free tier, 60 s windows (~6 min)
    python bench/api_throughput.py --tier official-free --skip-server
    python bench/api_throughput.py --tpm 12000000 --rpm 60000 --window 1 --steady-windows 2 \
        --capacity 2000000 --latency 0.01 --dimensions 16 --peer-batch-sizes 256 \
        --server-texts 64 --clients 2 --no-progress                # smoke (tests/test_benches.py)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import math
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

from jv3_integrations import JinaAPIProvider, LocalProvider, Task  # noqa: E402
from jv3_integrations.core._progress import progress  # noqa: E402
from jv3_integrations.core._wire import TASK_INSTRUCTIONS, estimate_tokens  # noqa: E402
from jv3_integrations.server._request import (  # noqa: E402
    WireError,
    error_body,
    parse_embeddings_request,
)

DEFAULT_MODEL = ROOT / "tests" / "data" / "tiny-v3"
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
    return int(hashlib.blake2b(text.encode(), digest_size=2).hexdigest(), 16) / 131072.0


def filler(text: str, rest: float) -> float:
    """Component 1 of ``text``'s vector: what makes the whole vector unit-norm.

    Our client checks that vectors asked for normalized have unit norm, as the real API's do;
    ``rest`` is the squared norm of components 2.. (a small fixed tail)."""
    return math.sqrt(1.0 - rest - marker(text) ** 2)


# -- a loopback server that behaves like a rate-limited Jina API ----------------------------

# Per-key limits (requests/min, tokens/min, concurrent requests) from Jina's published rate limits (https://jina.ai/api-dashboard/rate-limit).
# Two published tables disagree; "free", "paid" and "premium" are the listing that names them
# so (the tightest free tier: the default), "official-*" the official 2026 table.
TIERS: dict[str, dict[str, int]] = {
    "free": {"rpm": 100, "tpm": 100_000, "max_concurrent": 2},
    "paid": {"rpm": 500, "tpm": 2_000_000, "max_concurrent": 50},
    "premium": {"rpm": 5000, "tpm": 50_000_000, "max_concurrent": 500},
    "official-free": {"rpm": 500, "tpm": 1_000_000, "max_concurrent": 5},
    "official-tier1": {"rpm": 500, "tpm": 10_000_000, "max_concurrent": 50},
    "official-tier2": {"rpm": 5000, "tpm": 100_000_000, "max_concurrent": 500},
}
DEFAULT_TOKENIZER = DEFAULT_MODEL / "tokenizer.json"


class ServerTokenizer:
    """The server's own token count: its tokenizer over instruction + text, with <s> and </s>."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))

    def counts(self, texts: list[str], task: Any = None) -> list[int]:
        prefix = TASK_INSTRUCTIONS[task] if task is not None else ""
        encoded = self.tokenizer.encode_batch([prefix + t for t in texts])
        return [len(e.ids) for e in encoded]


class Capacity:
    """Processor sharing: ``rate`` tokens/s of compute, split evenly over requests in flight."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.active = 0

    async def serve(self, tokens: int) -> None:
        self.active += 1
        left = float(tokens)
        last = time.monotonic()
        try:
            while left > 0:
                await asyncio.sleep(min(0.02, max(0.001, left * self.active / self.rate)))
                now = time.monotonic()
                left -= (now - last) * self.rate / self.active
                last = now
        finally:
            self.active -= 1


class KeyState:
    """One API key's budget windows, requests in flight and request log."""

    def __init__(self) -> None:
        self.tokens: collections.deque[tuple[float, int]] = collections.deque()
        self.requests: collections.deque[float] = collections.deque()
        self.in_flight = 0
        self.log: list[dict[str, Any]] = []


class FakeJina:
    """Jina's embeddings endpoint with per-key limits over a sliding budget window.

    Each key may send ``rpm`` requests and ``tpm`` tokens per minute (scaled to ``window``
    seconds: ``tpm * window / 60`` tokens per window), at most ``max_concurrent`` at once;
    past any of them it answers 429 with the official body (no Retry-After unless
    ``retry_after``, as the real API). Tokens are counted by the server's tokenizer. A request
    takes ``latency`` seconds plus its tokens at ``capacity`` tokens/s shared by every request
    in flight (all keys), so parallel requests are not free.
    """

    def __init__(
        self,
        *,
        latency: float,
        capacity: float,
        max_concurrent: int,
        tpm: int,
        rpm: int,
        window: float,
        tokenizer: str | Path,
        retry_after: bool = False,
        dims: int = 1024,
    ) -> None:
        self.latency = latency
        self.capacity = Capacity(capacity)
        self.max_concurrent = max_concurrent
        self.window = window
        self.window_tokens = max(1, round(tpm * window / 60))
        self.window_requests = max(1, round(rpm * window / 60))
        self.retry_after = retry_after
        self.counter = ServerTokenizer(tokenizer)
        self.dims = dims
        self.keys: dict[str, KeyState] = collections.defaultdict(KeyState)
        self.tail: dict[int, str] = {}
        base = np.random.default_rng(1).normal(size=dims)
        self.base = 0.1 * base / np.linalg.norm(base)  # components 2..: a small fixed tail
        self.rest: dict[int, float] = {}

    def _tail(self, dims: int) -> str:
        if dims not in self.tail:
            values = [round(float(x), 7) for x in self.base[2:dims]]
            self.rest[dims] = float(np.sum(np.square(np.asarray(values, dtype=np.float64))))
            self.tail[dims] = "," + json.dumps(values)[1:] if dims > 2 else "]"
        return self.tail[dims]

    def _body(self, texts: list[str], dims: int, encoding: str, tokens: int) -> str:
        tail = self._tail(dims)  # also measures the tail's squared norm
        rest = self.rest[dims]
        if encoding == "base64":
            vec = self.base[:dims].astype("<f4")
            encoded = []
            for t in texts:
                vec[0], vec[1] = marker(t), filler(t, rest)
                encoded.append(base64.b64encode(vec.tobytes()).decode("ascii"))
            items = ",".join(
                f'{{"object":"embedding","index":{i},"embedding":"{e}"}}'
                for i, e in enumerate(encoded)
            )
        else:
            items = ",".join(
                f'{{"object":"embedding","index":{i},"embedding":[{marker(t)!r},'
                f"{filler(t, rest)!r}{tail}}}"
                for i, t in enumerate(texts)
            )
        return (
            f'{{"model":"jina-embeddings-v3","object":"list","usage":{{"total_tokens":'
            f'{tokens},"prompt_tokens":{tokens}}},"data":[{items}]}}'
        )

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        def reply(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
            return Response(json.dumps(body), status, headers, media_type="application/json")

        async def embeddings(request: Request) -> Response:
            arrived = time.monotonic()
            rid = os.urandom(8).hex()
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer "):
                return reply(
                    401, error_body("No API key provided.", "AUTH_MISSING_API_KEY", rid), {}
                )
            state = self.keys[auth[7:]]
            try:
                req = parse_embeddings_request(
                    json.loads(await request.body()), max_dimensions=self.dims, request_id=rid
                )
            except WireError as exc:
                return reply(exc.status, exc.body, {})
            tokens = sum(self.counter.counts(req.texts, req.task))
            now = time.monotonic()
            while state.tokens and state.tokens[0][0] <= now - self.window:
                state.tokens.popleft()
            while state.requests and state.requests[0] <= now - self.window:
                state.requests.popleft()
            used = sum(t for _, t in state.tokens)
            entry: dict[str, Any] = {"t": arrived, "texts": len(req.texts), "tokens": tokens}
            failure: tuple[str, str, float] | None = None
            if state.in_flight >= self.max_concurrent:
                failure = (
                    "RATE_CONCURRENCY_LIMIT_EXCEEDED",
                    f"Concurrency limit exceeded: {state.in_flight + 1}/{self.max_concurrent} "
                    "concurrent requests. Wait for pending requests to complete before sending "
                    "new ones.",
                    0.0,
                )
            elif len(state.requests) >= self.window_requests:
                failure = (
                    "RATE_REQUEST_LIMIT_EXCEEDED",
                    f"Request rate limit exceeded: {len(state.requests) + 1}/"
                    f"{self.window_requests} requests per {self.window:g} s.",
                    state.requests[0] + self.window - now,
                )
            elif used + tokens > self.window_tokens:
                free_at = now
                freed = self.window_tokens - used
                for t, n in state.tokens:
                    if freed >= tokens:
                        break
                    freed += n
                    free_at = t + self.window
                failure = (
                    "RATE_TOKEN_LIMIT_EXCEEDED",
                    f"Token rate limit exceeded: {used + tokens:,}/{self.window_tokens:,} tokens "
                    f"per {self.window:g} s. Reduce batch sizes or upgrade your plan.",
                    free_at - now if tokens <= self.window_tokens else self.window,
                )
            remaining = {
                "X-RateLimit-Remaining-Requests": str(
                    max(0, self.window_requests - len(state.requests))
                ),
                "X-RateLimit-Remaining-Tokens": str(max(0, self.window_tokens - used)),
            }
            if failure is not None:
                code, detail, wait = failure
                entry.update(status=429, code=code, done=time.monotonic())
                state.log.append(entry)
                if self.retry_after:
                    remaining["Retry-After"] = str(max(1, math.ceil(wait)))
                return reply(429, error_body(detail, code, rid), remaining)
            state.tokens.append((now, tokens))
            state.requests.append(now)
            state.in_flight += 1
            entry["accepted"] = now
            try:
                await asyncio.gather(asyncio.sleep(self.latency), self.capacity.serve(tokens))
            finally:
                state.in_flight -= 1
            content = self._body(
                req.texts, req.dimensions or self.dims, req.embedding_types[0], tokens
            )
            entry.update(status=200, done=time.monotonic())
            state.log.append(entry)
            remaining["X-RateLimit-Remaining-Requests"] = str(
                max(0, self.window_requests - len(state.requests))
            )
            remaining["X-RateLimit-Remaining-Tokens"] = str(
                max(0, self.window_tokens - used - tokens)
            )
            return Response(content, 200, remaining, media_type="application/json")

        async def log(request: Request) -> Response:
            key = request.query_params.get("key", "")
            return Response(json.dumps(self.keys[key].log), media_type="application/json")

        return Starlette(
            routes=[
                Route("/v1/embeddings", embeddings, methods=["POST"]),
                Route("/log", log, methods=["GET"]),
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


def limits(args: argparse.Namespace) -> dict[str, Any]:
    """The tier's preset, with any of --rpm/--tpm/--max-concurrent overriding it."""
    tier = dict(TIERS[args.tier])
    for name in ("rpm", "tpm", "max_concurrent"):
        if getattr(args, name) is not None:
            tier[name] = getattr(args, name)
    return tier


@contextmanager
def fake_api_process(args: argparse.Namespace) -> Iterator[str]:
    """The fake API in its own process (its CPU is not ours, as with the real remote API)."""
    import subprocess

    import httpx

    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    tier = limits(args)
    options = ["--tier", args.tier, "--latency", str(args.latency)]
    options += ["--capacity", str(args.capacity), "--window", str(args.window)]
    options += ["--rpm", str(tier["rpm"]), "--tpm", str(tier["tpm"])]
    options += ["--max-concurrent", str(tier["max_concurrent"])]
    options += ["--server-tokenizer", str(args.server_tokenizer)]
    if args.retry_after:
        options.append("--retry-after")
    proc = subprocess.Popen([sys.executable, __file__, "--fake-api-port", str(port), *options])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/log", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fake API did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def server_log(url: str, key: str) -> list[dict[str, Any]]:
    import httpx

    return list(httpx.get(f"{url}/log", params={"key": key}, timeout=30).json())


def check(vectors: list[Any], texts: list[str]) -> int:
    """Texts whose vector is missing or is not theirs."""
    lost = max(0, len(texts) - len(vectors))
    for text, vec in zip(texts, vectors, strict=False):
        if abs(float(vec[0]) - marker(text)) > 1e-6:
            lost += 1
    return lost


def run_ours(url: str, key: str, texts: list[str], **options: Any) -> dict[str, Any]:
    provider = JinaAPIProvider(api_key=key, base_url=url, **options)  # defaults unless given
    start = time.perf_counter()
    try:
        emb = provider.embed_documents(texts)
    except Exception as exc:
        return {
            "seconds": time.perf_counter() - start,
            "lost": len(texts),
            "failed": f"{type(exc).__name__}: {exc}"[:300],
        }
    finally:
        provider.close()
    return {"seconds": time.perf_counter() - start, "lost": check(list(emb.vectors), texts)}


def run_haystack(
    url: str, key: str, texts: list[str], batch_size: int | None, dimensions: int | None
) -> dict[str, Any]:
    try:
        from haystack import Document
        from haystack.utils import Secret
        from haystack_integrations.components.embedders.jina import JinaDocumentEmbedder
    except ImportError:
        return {
            "unavailable": "jina-haystack is not installed (pip install -r bench/requirements.txt)"
        }
    options: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if dimensions is not None:
        options["dimensions"] = dimensions
    embedder = JinaDocumentEmbedder(  # defaults but the batch size, pointed at the loopback API
        api_key=Secret.from_token(key),
        base_url=f"{url}/v1/embeddings",
        task="retrieval.passage",
        progress_bar=False,
        **options,
    )
    start = time.perf_counter()
    try:
        docs = embedder.run([Document(content=t) for t in texts])["documents"]
    except Exception as exc:  # it does not retry: a 429 or timeout ends the run
        return {
            "seconds": time.perf_counter() - start,
            "lost": len(texts),  # run() raised: the caller gets none of the vectors
            "failed": f"{type(exc).__name__}: {exc}"[:300],
        }
    return {
        "seconds": time.perf_counter() - start,
        "lost": check([d.embedding for d in docs], texts),
    }


def summarise(
    result: dict[str, Any], log: list[dict[str, Any]], n: int, window: float, rate: float
) -> dict[str, Any]:
    """Add request counts, 429s and, past the first window, the steady-state figures."""
    out = dict(result)
    out["texts"] = n
    out["seconds"] = round(result["seconds"], 2)
    out["texts_per_s"] = round(n / result["seconds"], 1) if not result.get("failed") else None
    ok = [e for e in log if e["status"] == 200]
    out["requests"] = len(log)
    out["answered_429"] = dict(collections.Counter(e["code"] for e in log if e["status"] == 429))
    out["texts_embedded_by_server"] = sum(e["texts"] for e in ok)
    out["server_tokens"] = sum(e["tokens"] for e in ok)  # what the server charged the key
    out["survived_429"] = bool(out["answered_429"]) and not result.get("failed")
    if not ok:
        return out
    t0 = min(e["t"] for e in log)
    end = max(e["done"] for e in ok)
    steady_from = t0 + window
    if end > steady_from:
        span = end - steady_from
        late = [e for e in ok if e["accepted"] >= steady_from]
        tokens = sum(e["tokens"] for e in late)
        out["steady"] = {
            "seconds": round(span, 1),
            "budget_windows": round(span / window, 2),
            "texts_per_s": round(sum(e["texts"] for e in late) / span, 1),
            "tokens_per_s": round(tokens / span, 1),
            "fraction_of_tpm": round(tokens / (rate * span), 3),
        }
    return out


def client_part(args: argparse.Namespace, show: bool) -> dict[str, Any]:
    tier = limits(args)
    rate = tier["tpm"] / 60  # tokens/s the key may spend
    window_tokens = rate * args.window
    counter = ServerTokenizer(args.server_tokenizer)
    task = Task.RETRIEVAL_PASSAGE
    sample = counter.counts(make_texts(500, seed=7), task)
    needed = (args.steady_windows + 1.25) * window_tokens
    size = max(args.burst_texts or 0, args.steady_texts or 0)
    size = size or math.ceil(1.1 * needed / float(np.mean(sample))) + 50
    pool = make_texts(size)
    counts = counter.counts(pool, task)
    cumulative = np.cumsum(counts)
    estimated = sum(estimate_tokens(t, task=task) for t in pool[:1000])
    per_text = float(np.mean(counts))

    def texts_for(tokens: float) -> int:
        return max(1, min(len(pool), int(np.searchsorted(cumulative, tokens))))

    n_burst = args.burst_texts or texts_for(0.9 * window_tokens)
    n_steady = args.steady_texts or texts_for(needed)
    out: dict[str, Any] = {
        "api": {
            "tier": args.tier,
            **tier,
            "budget_window_s": args.window,
            "tokens_per_window": round(window_tokens),
            "latency_s": args.latency,
            "capacity_tokens_per_s": args.capacity,
            "retry_after_header": args.retry_after,
            "server_tokenizer": str(args.server_tokenizer),
            "server_tokens_per_text": round(per_text, 1),
            "our_estimate_tokens_per_text": round(estimated / min(1000, len(pool)), 1),
            "server_tokens_vs_our_estimate": round(float(sum(counts[:1000])) / estimated, 3),
        },
        "method": (
            "each contender gets a fresh key (its own budget) on the same simulated API; burst: "
            f"{n_burst} texts that fit in 90 % of one window's budget; steady: {n_steady} texts, "
            "figures over everything after the first budget window (the budget binds there)"
        ),
    }
    sizes = [int(s) for s in args.peer_batch_sizes.split(",") if s.strip()]
    tuned = json.loads(args.ours_options) if args.ours_options else {}
    jobs = 3 + len(sizes) + 3 + bool(tuned)
    with fake_api_process(args) as url, progress(jobs, "client bench", enabled=show) as bar:

        def one(kind: str, texts: list[str], **kw: Any) -> dict[str, Any]:
            key = f"jina_{kind}_{os.urandom(6).hex()}"
            if kind == "ours":
                if args.dimensions is not None:
                    kw["dimensions"] = args.dimensions
                res = run_ours(url, key, texts, **kw)
            else:
                res = run_haystack(url, key, texts, kw.get("batch_size"), args.dimensions)
            bar.update()
            if "unavailable" in res:
                return res
            return summarise(res, server_log(url, key), len(texts), args.window, rate)

        burst = {
            "ours": one("ours", pool[:n_burst]),
            "ours_wire_format_base64": one("ours", pool[:n_burst], wire_format="base64"),
            "jina_haystack_default": one("peer", pool[:n_burst]),
        }
        for size in sizes:
            burst[f"jina_haystack_batch_{size}"] = one("peer", pool[:n_burst], batch_size=size)
        for result in burst.values():
            result.pop("steady", None)  # a burst never reaches a second window
        peers = {
            k: v for k, v in burst.items() if k.startswith("jina_haystack") and v.get("texts_per_s")
        }
        best_name = max(peers, key=lambda k: peers[k]["texts_per_s"]) if peers else None
        best_size = (
            None
            if best_name in (None, "jina_haystack_default")
            else int(str(best_name).rsplit("_", 1)[1])
        )
        if burst["ours"].get("texts_per_s") and best_name:
            burst["ours_vs_best_peer"] = round(
                burst["ours"]["texts_per_s"] / peers[best_name]["texts_per_s"], 2
            )
        out["burst"] = burst
        out["peer_best_batch_size_in_burst"] = best_size or 32

        steady: dict[str, Any] = {"ours": one("ours", pool[:n_steady])}
        if tuned:
            steady["ours_configured"] = one("ours", pool[:n_steady], **tuned)
            steady["ours_configured"]["options"] = tuned
        steady["jina_haystack_default"] = one("peer", pool[:n_steady])
        if best_size is not None:
            steady[f"jina_haystack_batch_{best_size}"] = one(
                "peer", pool[:n_steady], batch_size=best_size
            )
        else:
            bar.update()
        out["steady_state"] = steady
    ours = steady["ours"]
    best_ours = max(
        (
            v
            for k, v in steady.items()
            if k.startswith("ours") and "steady" in v and not v.get("failed")
        ),
        key=lambda v: v["steady"]["texts_per_s"],
        default=ours,
    )
    if "steady" in best_ours:
        peer_rates = [
            v["steady"]["texts_per_s"]
            for k, v in steady.items()
            if k.startswith("jina_haystack") and "steady" in v and not v.get("failed")
        ]
        if peer_rates:
            out["steady_state"]["ours_vs_best_surviving_peer"] = round(
                best_ours["steady"]["texts_per_s"] / max(peer_rates), 2
            )
    out["targets"] = {
        name: {
            "steady_windows_measured": v.get("steady", {}).get("budget_windows"),
            "steady_windows_ge_requested": v.get("steady", {}).get("budget_windows", 0)
            >= args.steady_windows,
            "fraction_of_tpm_ge_0.9": v.get("steady", {}).get("fraction_of_tpm", 0) >= 0.9,
            "zero_lost": v["lost"] == 0,
        }
        for name, v in steady.items()
        if name.startswith("ours") and isinstance(v, dict)
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
    parser.add_argument("--tier", choices=sorted(TIERS), default="free", help="limits preset")
    parser.add_argument("--rpm", type=int, help="requests per minute (overrides the tier)")
    parser.add_argument("--tpm", type=int, help="tokens per minute (overrides the tier)")
    parser.add_argument("--max-concurrent", type=int, help="requests in flight per key")
    parser.add_argument(
        "--window", type=float, default=60.0, help="budget window in seconds (rpm/tpm scale)"
    )
    parser.add_argument("--steady-windows", type=float, default=3.0, help="windows of steady state")
    parser.add_argument("--latency", type=float, default=0.15, help="fixed seconds per request")
    parser.add_argument(
        "--capacity", type=float, default=100_000, help="server tokens/s shared by all requests"
    )
    parser.add_argument("--retry-after", action="store_true", help="send Retry-After on 429")
    parser.add_argument("--server-tokenizer", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--peer-batch-sizes", default="128,512,1024,2048")
    parser.add_argument("--dimensions", type=int, help="Matryoshka size both clients ask for")
    parser.add_argument(
        "--ours-options",
        help="JSON JinaAPIProvider options for a second, configured run of ours in steady state, "
        'e.g. \'{"max_batch_tokens": 20000, "max_concurrency": 2}\'',
    )
    parser.add_argument("--burst-texts", type=int, help="default: 90 %% of one window's budget")
    parser.add_argument("--steady-texts", type=int, help="default: steady windows + 1.25 budgets")
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

        tier = limits(args)
        fake = FakeJina(
            latency=args.latency,
            capacity=args.capacity,
            max_concurrent=tier["max_concurrent"],
            tpm=tier["tpm"],
            rpm=tier["rpm"],
            window=args.window,
            tokenizer=args.server_tokenizer,
            retry_after=args.retry_after,
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
