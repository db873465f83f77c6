"""How much of a learned token budget one request may carry (issue 24: fill the key's budget).

The window is paced by whole requests, so about half a request's share of it idles: with a
quarter per request the official-free and tier-1 presets used 85-87 % of the budget at steady
state, with an eighth 99-100 % (``bench/api_throughput.py``). Where the key allows few requests
per window (the free tier: 10 per 6 s window in the bench), requests grow back to a quarter so
that the requests a window needs stay within half of the request budget.
"""

from __future__ import annotations

import time

from jv3_integrations.core._budget import FILL, REQUEST_CODE, TOKEN_CODE, RateBudget


def budget_told_8000_tokens() -> RateBudget:
    budget = RateBudget(max_concurrency=8, start_concurrency=4, pause=0.0)
    assert budget.request_cap() is None  # nothing learned: the provider's own defaults apply
    budget.refused(TOKEN_CODE, "Token rate limit exceeded: 9,000/8,000 tokens per 1 s.", None)
    return budget


def answer_with(budget: RateBudget, requests_left: int) -> None:
    wait, entry = budget.reserve(100)
    while entry is None:  # the 429's tokens are held for a tenth of the 1 s window
        assert wait <= 0.2
        time.sleep(wait)
        wait, entry = budget.reserve(100)
    budget.settle(entry, 100, 100)
    headers = {
        "x-ratelimit-remaining-requests": str(requests_left),
        "x-ratelimit-remaining-tokens": "7900",
    }
    budget.observe(headers, entry)


def test_a_request_carries_an_eighth_of_the_learned_budget() -> None:
    budget = budget_told_8000_tokens()
    assert budget.request_cap() == int(8000 * FILL / 8)
    answer_with(budget, requests_left=49)  # 50 requests per window: plenty
    assert budget.request_cap() == int(8000 * FILL / 8)


def test_few_requests_per_window_make_requests_larger_up_to_a_quarter() -> None:
    budget = budget_told_8000_tokens()
    answer_with(budget, requests_left=9)  # the headers say about 10 per window
    assert budget.request_cap() == int(8000 * FILL / 5)
    # a guess from the headers sizes requests; it does not pace them (a 429 must name it)
    assert budget.limits().requests_per_window is None
    answer_with(budget, requests_left=3)
    assert budget.request_cap() == int(8000 * FILL / 5)  # the largest seen is kept


def test_a_request_limit_named_by_a_429_sizes_requests_too() -> None:
    budget = budget_told_8000_tokens()
    budget.refused(REQUEST_CODE, "Request rate limit exceeded: 7/6 requests per 1 s.", None)
    assert budget.limits().requests_per_window == 6
    assert budget.request_cap() == int(8000 * FILL / 4)
