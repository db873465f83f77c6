"""JinaAPIProvider against a loopback server that misbehaves over real TCP.

Where ``test_api_faults.py`` injects faults as transport exceptions, these are the real
thing: a connection reset by the peer (RST), a server that never answers (read timeout), a
connection closed without a response, an HTML 502 page, a truncated JSON body.
"""

from __future__ import annotations

import asyncio

import pytest

from jv3_integrations.core import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    JinaAPIProvider,
    ServerError,
)
from tests.support.fault_server import answer, fault_server

TEXTS = ["alpha", "beta gamma", "δέλτα"]


def provider(url: str, **kwargs: object) -> JinaAPIProvider:
    options: dict[str, object] = {
        "base_url": url,
        "max_dimensions": 4,
        "timeout": 0.3,
        "backoff_base": 0.001,
        "backoff_max": 0.005,
    }
    options.update(kwargs)
    return JinaAPIProvider(api_key="k", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_network_fault_is_retried_to_the_right_answer(mode: str) -> None:
    script = ["reset", "hang", "close", "html502"]
    with fault_server(script) as (url, server):
        client = provider(url)
        if mode == "sync":
            emb = client.embed(TEXTS)
        else:
            emb = asyncio.run(client.aembed(TEXTS))
        client.close()
    assert emb.vectors.tolist() == [answer(t) for t in TEXTS]
    assert server.actions == [*script, "ok"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("reset", APIConnectionError),
        ("close", APIConnectionError),
        ("hang", APITimeoutError),
        ("html502", ServerError),
    ],
)
def test_persistent_network_fault_ends_in_its_typed_error(fault: str, error: type) -> None:
    with fault_server([fault] * 3) as (url, server), pytest.raises(error) as info:
        provider(url, max_retries=2).embed(TEXTS)
    assert server.actions == [fault] * 3
    if fault == "html502":
        assert info.value.status == 502 and "502 Bad Gateway" in info.value.detail


def test_truncated_body_is_an_error_not_a_loss() -> None:
    with (
        fault_server(["truncated"]) as (url, server),
        pytest.raises(APIResponseError, match="not JSON"),
    ):
        provider(url).embed(TEXTS)
    assert server.actions == ["truncated"]
