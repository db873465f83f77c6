"""The rate budget JinaAPIProvider learns from its server (issue 24.1 and 24.4).

Against a loopback API with per-key limits over a one-second window (the server's setting;
the client learns the window from the 429 message, as it learns Jina's "per minute"):
a token 429 that names the limit is the last request above it; the
``X-RateLimit-Remaining-Tokens`` headers steer pacing; a concurrency 429 lowers the
concurrency and it grows back; threads and an event loop sharing one provider share one
budget; explicit options win over what is learned.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from jv3_integrations.core import InputError, JinaAPIProvider
from jv3_integrations.core._budget import parse_request_limit, parse_token_limit
from tests.support.rate_limited_api import (
    RateLimitedAPI,
    answer,
    rate_limited_api,
    server_tokens,
)

KEY = "budget-test-key"


def texts_of(n: int, words: int = 20, tag: str = "t") -> list[str]:
    return [f"{tag}{i} " + " ".join(f"w{i}x{j}" for j in range(words)) for i in range(n)]


def provider(url: str, **options: object) -> JinaAPIProvider:
    settings: dict[str, object] = {
        "api_key": KEY,
        "base_url": url,
        "max_dimensions": 4,
        "backoff_base": 0.02,
        "backoff_max": 0.1,
        "timeout": 5,
    }
    settings.update(options)
    return JinaAPIProvider(**settings)  # type: ignore[arg-type]


def check(vectors: object, texts: list[str]) -> None:
    got = [[round(x, 5) for x in row] for row in vectors.tolist()]  # type: ignore[attr-defined]
    assert got == [[round(x, 5) for x in answer(t)] for t in texts]


def test_messages_name_the_limits() -> None:
    jina = "Token rate limit exceeded: 107,113/100,000 tokens per minute. Reduce batch sizes."
    assert parse_token_limit(jina) == (107_113, 100_000, 60.0)
    assert parse_token_limit("1,800/1,000 tokens per 2 s.") == (1800, 1000, 2.0)
    assert parse_token_limit("Token rate limit exceeded.") is None
    assert parse_request_limit("Request rate limit exceeded: 5/4 requests per 1 s.") == (4, 1.0)
    assert parse_request_limit("101/100 requests per minute") == (100, 60.0)


def test_nothing_is_learned_before_the_server_speaks() -> None:
    limits = JinaAPIProvider(api_key=KEY).rate_limits
    assert (limits.tokens_per_minute, limits.requests_per_minute) == (None, None)
    assert limits.window_s == 60.0
    assert (limits.concurrency, limits.max_concurrency) == (4, 8)  # the defaults, pinned


def test_a_token_429_naming_the_limit_is_the_last_request_above_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = RateLimitedAPI(tokens=1000, window=1.0)
    texts = texts_of(60)  # 22 tokens each: 1,320 in all, more than the key's whole window
    with rate_limited_api(api) as url, caplog.at_level(logging.INFO):
        client = provider(url)
        check(client.embed(texts).vectors, texts)
        first_call = len(api.log)
        check(client.embed(texts).vectors, texts)  # a second call plans with what was learned
        client.close()
    assert api.log[0].tokens > 1000 and api.log[0].status == 429  # nothing known yet
    assert all(e.tokens <= 1000 for e in api.log[1:]), "a request above the named limit"
    assert sum(e.tokens for e in api.accepted()) == 2 * 60 * server_tokens(texts[0])
    assert len(api.refused()) <= 3, [(e.code, e.tokens) for e in api.refused()]
    assert len(api.log) - first_call >= 2  # split into requests under the limit
    limits = client.rate_limits
    assert (limits.tokens_per_window, limits.window_s, limits.tokens_per_minute) == (
        1000,
        1.0,
        60_000,
    )
    learned = [r.getMessage() for r in caplog.records if "learned" in r.getMessage()]
    assert len(learned) == 1 and "1000 tokens" in learned[0]
    assert KEY not in caplog.text


def test_one_text_larger_than_the_budget_is_refused_before_it_is_sent_again() -> None:
    api = RateLimitedAPI(tokens=200, window=1.0)
    huge = "word " * 400  # 402 tokens: no window of this key can ever hold it
    with rate_limited_api(api) as url:
        client = provider(url, truncate=False)
        with pytest.raises(InputError, match=r"200 tokens") as info:
            client.embed(["short text", huge])
        client.close()
    assert "per 1 s" in str(info.value) and "split" in str(info.value)
    assert len(api.log) == 1 and api.log[0].status == 429  # the one that taught the limit


def test_remaining_tokens_headers_steer_pacing() -> None:
    """No 429 body names a limit here: the headers alone make the client wait, not spend."""
    api = RateLimitedAPI(tokens=1000, window=60.0, say_limits=False)
    texts = texts_of(40)  # 880 tokens

    class Waited(Exception):
        pass

    waits: list[float] = []

    def no_sleep(seconds: float) -> None:
        waits.append(seconds)
        raise Waited

    with rate_limited_api(api) as url:
        client = provider(url, max_batch_items=10)  # four requests of 220 tokens
        client.embed(texts)
        assert client.rate_limits.tokens_per_window == 1000  # left + spent
        client._sleep = no_sleep
        with pytest.raises(Waited):
            client.embed(texts[:10])  # 220 more would overdraw the 120 left: it waits
        client.close()
    # it waits (at most rate_limit_pause, then one request may find out) instead of sending;
    # how long depends on how much of the window the first requests took on a loaded machine
    assert len(waits) == 1 and 0 < waits[0] <= 1.0, waits
    assert api.refused() == [] and len(api.log) == 4, "it sent into a spent budget"


def test_a_concurrency_429_lowers_the_concurrency_and_it_grows_back() -> None:
    api = RateLimitedAPI(max_concurrent=2, latency=0.05)
    texts = texts_of(48, words=2)
    with rate_limited_api(api) as url:
        client = provider(url, max_concurrency=6, max_batch_items=1)
        check(client.embed(texts).vectors, texts)
        lowered = client.rate_limits.concurrency
        refusals = len(api.refused("RATE_CONCURRENCY_LIMIT_EXCEEDED"))
        api.max_concurrent = 6  # the key's limit grew
        api.peak_in_flight = 0
        for _ in range(6):
            check(client.embed(texts).vectors, texts)
        grown = client.rate_limits.concurrency
        client.close()
    assert lowered <= 3 and 1 <= refusals <= len(texts) // 4  # backs off, then probes
    assert grown >= 4 and grown <= 6, grown
    assert api.peak_in_flight <= 6


def test_threads_and_an_event_loop_share_one_learned_budget() -> None:
    api = RateLimitedAPI(tokens=2000, window=1.0, latency=0.005)
    batches = {name: texts_of(120, words=10, tag=name) for name in ("a", "b", "c")}
    results: dict[str, object] = {}
    with rate_limited_api(api) as url:
        client = provider(url, max_batch_items=8)
        client.embed(texts_of(30, words=100, tag="probe"))  # one 429 teaches the limit
        learned_at = len(api.log)

        def sync(name: str) -> None:
            results[name] = client.embed(batches[name]).vectors

        def loop(name: str) -> None:
            results[name] = asyncio.run(client.aembed(batches[name])).vectors

        threads = [
            threading.Thread(target=sync, args=("a",)),
            threading.Thread(target=sync, args=("b",)),
            threading.Thread(target=loop, args=("c",)),
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - started
        client.close()
    for name, texts in batches.items():
        check(results[name], texts)
    later = api.log[learned_at:]
    spent = sum(e.tokens for e in later if e.status == 200)
    assert spent == sum(server_tokens(t) for texts in batches.values() for t in texts)
    refused = [e for e in later if e.status == 429]
    assert len(refused) <= 1, f"the three callers overdrew the budget: {refused}"  # 1: timing
    # 4,680 tokens at 2,000 per second: paced over about two seconds, not refused
    assert elapsed >= 1.0


def test_explicit_options_win_over_what_is_learned() -> None:
    api = RateLimitedAPI(tokens=1000, window=1.0)
    texts = texts_of(30)
    per_text = JinaAPIProvider(api_key=KEY).estimate_tokens(texts[0])
    sizes: dict[str, list[int]] = {}
    with rate_limited_api(api) as url:
        for name, options in (
            ("explicit", {"max_batch_tokens": 3 * per_text, "max_concurrency": 1}),
            ("learned", {}),
        ):
            client = provider(url, **options)
            check(client.embed(texts).vectors, texts)  # learns the budget
            time.sleep(1.0)  # a fresh window
            before = len(api.log)
            check(client.embed(texts).vectors, texts)
            sizes[name] = [e.texts for e in api.log[before:] if e.status == 200]
            if name == "explicit":
                assert client.rate_limits.concurrency == 1 and client.max_concurrency == 1
            client.close()
    assert max(sizes["explicit"]) == 3  # max_batch_tokens, as given
    assert max(sizes["learned"]) > 3  # what the learned budget alone would send
