"""The API client's transport pieces on their own: slots, retry delays, discovery helpers."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from jv3_integrations.core import APIError, ConfigurationError
from jv3_integrations.core._discovery import find_tokenizer, parse_models
from jv3_integrations.core._transport import Slots, retry_delay


def test_slots_bound_threads_and_a_loop_together_and_follow_a_moving_limit() -> None:
    slots = Slots(2)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def busy() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1

    def thread_work() -> None:
        for _ in range(5):
            with slots.hold():
                busy()

    async def loop_work() -> None:
        for _ in range(5):
            await slots.acquire()
            try:
                await asyncio.to_thread(busy)
            finally:
                slots.release()

    threads = [threading.Thread(target=thread_work) for _ in range(3)]
    threads.append(threading.Thread(target=lambda: asyncio.run(loop_work())))
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert state["peak"] == 2 and slots.busy == 0

    slots.set_limit(0)  # never below one
    assert slots.limit == 1
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with slots.hold():
            held.set()
            release.wait(5)

    first = threading.Thread(target=holder)
    first.start()
    held.wait(5)
    got = threading.Event()

    def waiter() -> None:
        with slots.hold():
            got.set()
            release.wait(5)

    second = threading.Thread(target=waiter)
    second.start()
    time.sleep(0.05)
    assert not got.is_set()  # limit 1, one in flight: waits
    slots.set_limit(2)  # a grown limit lets the waiter go at once
    assert got.wait(2)
    release.set()
    first.join(5)
    second.join(5)


def test_retry_delays_grow_with_jitter_and_honour_retry_after() -> None:
    for attempt in range(5):
        delay = retry_delay(attempt, base=1.0, cap=10.0, retry_after=None)
        assert 0.5 * min(10.0, 2.0**attempt) <= delay <= min(10.0, 2.0**attempt)
    slow = retry_delay(0, base=0.5, cap=30.0, retry_after=None, slow=True)
    assert 2.5 <= slow <= 5.0  # a spent per-minute budget: seconds, not fractions
    assert retry_delay(3, base=1.0, cap=10.0, retry_after=7.0) == 7.0
    assert retry_delay(3, base=1.0, cap=10.0, retry_after=9999.0) == 120.0  # clipped


def _models(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "body", "size"),
    [
        (404, {"detail": "Not Found"}, 1024),
        (405, {"detail": "Method Not Allowed"}, 1024),
        (200, {"data": [{"id": "jina-ai/m", "max_output_length": 64}]}, 64),
        (200, {"data": [{"id": "other", "max_output_length": 64}]}, 1024),
    ],
)
def test_models_answers_give_the_size_or_the_full_one(status: int, body: object, size: int) -> None:
    response = _models(status, body)
    assert parse_models(response, model="m", default=1024, where="u", redact=()) == size


def test_a_models_answer_that_is_no_answer_raises() -> None:
    with pytest.raises(APIError):
        parse_models(_models(500, {"detail": "x"}), model="m", default=1, where="u", redact=())
    with pytest.raises(APIError, match="max_dimensions="):
        bad = httpx.Response(200, content=b"<html>")
        parse_models(bad, model="m", default=1, where="u", redact=())


def test_tokenizer_lookup_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JV3_TOKENIZER", raising=False)
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigurationError, match="huggingface-cli download") as info:
        find_tokenizer(missing, model="m", hub_id="jinaai/none")
    assert str(missing) in str(info.value)
    real = tmp_path / "tokenizer.json"
    real.write_text("{}")
    monkeypatch.setenv("JV3_TOKENIZER", str(real))
    assert find_tokenizer(None, model="m", hub_id="jinaai/none") == real
