"""Jina's newer models through JinaAPIProvider, as data (issue 24.3, core part).

Each model is checked against a loopback server that validates every request with the
official schema for that model (``EmbeddingsV3Request``, ``...V4Request``, ``...V5Request``
from ``tests/data/spec/jina-openapi.json``) and answers 422 otherwise. What a model cannot do
is refused before any request, with a message naming the model and the option.
"""

from __future__ import annotations

from typing import Any

import pytest

from jv3_integrations.core import (
    JINA_EMBEDDINGS_V3,
    ConfigurationError,
    InputError,
    JinaAPIProvider,
    Task,
)
from jv3_integrations.core._models import MODELS, model_info
from tests.support.jina_schema import properties, validate
from tests.support.rate_limited_api import RateLimitedAPI, answer, rate_limited_api

SCHEMAS = {
    "jina-embeddings-v3": "EmbeddingsV3Request",
    "jina-embeddings-v4": "EmbeddingsV4Request",
    "jina-embeddings-v5-text-small": "EmbeddingsV5Request",
    "jina-embeddings-v5-text-nano": "EmbeddingsV5Request",
}
FACTS = {  # name: (full size, context, late chunking, wire tasks)
    "jina-embeddings-v3": (
        1024,
        8192,
        True,
        {"retrieval.query", "retrieval.passage", "text-matching", "classification", "separation"},
    ),
    "jina-embeddings-v4": (
        2048,
        32768,
        True,
        {"retrieval.query", "retrieval.passage", "text-matching", "code.query", "code.passage"},
    ),
    "jina-embeddings-v5-text-small": (
        1024,
        32768,
        False,
        {"retrieval.query", "retrieval.passage", "text-matching", "clustering", "classification"},
    ),
    "jina-embeddings-v5-text-nano": (
        768,
        8192,
        False,
        {"retrieval.query", "retrieval.passage", "text-matching", "clustering", "classification"},
    ),
}


def schema_server(model: str) -> RateLimitedAPI:
    api = RateLimitedAPI(full_dims=model_info(model).dim)

    def check(body: dict[str, Any]) -> None:
        validate(SCHEMAS[model], body)
        unknown = set(body) - properties(SCHEMAS[model])  # the API refuses undeclared fields
        assert not unknown, f"{model} takes no {sorted(unknown)}"

    api.check = check
    return api


def test_v3_is_the_default_and_the_only_local_model() -> None:
    assert JinaAPIProvider(api_key="k").model == "jina-embeddings-v3"
    assert JinaAPIProvider(api_key="k").model_info is JINA_EMBEDDINGS_V3
    assert [m.name for m in MODELS.values() if m.local] == ["jina-embeddings-v3"]


@pytest.mark.parametrize("model", sorted(FACTS))
def test_model_facts_are_the_official_schemas(model: str) -> None:
    info = model_info(model)
    full, context, late, tasks = FACTS[model]
    assert (info.dim, info.max_tokens, info.late_chunking) == (full, context, late)
    assert {info.wire_task(t) for t in info.tasks} == tasks
    provider = JinaAPIProvider(api_key="k", model=model)
    assert provider.max_dimensions == full and provider.model_info is info


def test_an_unknown_model_is_refused_for_jinas_api_without_io() -> None:
    with pytest.raises(ConfigurationError, match="jina-embeddings-v5-text-small"):
        JinaAPIProvider(api_key="k", model="jina-embeddings-v9")


@pytest.mark.parametrize("model", sorted(FACTS))
def test_each_model_sends_what_its_schema_takes(model: str) -> None:
    api = schema_server(model)
    info = model_info(model)
    texts = ["a query about Berlin", "a passage on Paris"]
    with rate_limited_api(api) as url:
        provider = JinaAPIProvider(api_key="k", base_url=url, model=model, max_dimensions=info.dim)
        for task in info.tasks:
            emb = provider.embed(texts, task=task, dimensions=8)
            assert emb.vectors.shape == (2, 8)
            assert emb.vectors[:, 0].tolist() == pytest.approx([answer(t)[0] for t in texts])
        full = provider.embed(texts)
        assert full.vectors.shape == (2, info.dim)
        if info.late_chunking:
            provider.embed(texts, late_chunking=True)
        provider.close()
    assert [e.status for e in api.log] == [200] * len(api.log)
    sent = {b.get("task") for b in api.bodies} - {None}
    assert sent == FACTS[model][3]
    assert all(b["model"] == model for b in api.bodies)


def test_v5_takes_clustering_by_its_own_name() -> None:
    api = schema_server("jina-embeddings-v5-text-nano")
    with rate_limited_api(api) as url:
        provider = JinaAPIProvider(
            api_key="k", base_url=url, model="jina-embeddings-v5-text-nano", max_dimensions=768
        )
        emb = provider.embed(["x"], task="clustering", dimensions=4)
        provider.close()
    assert emb.task is Task.SEPARATION and api.bodies[-1]["task"] == "clustering"


@pytest.mark.parametrize(
    ("model", "call", "words"),
    [
        ("jina-embeddings-v5-text-small", {"late_chunking": True}, ["v5-text-small", "late"]),
        ("jina-embeddings-v5-text-nano", {"late_chunking": True}, ["v5-text-nano", "late"]),
        ("jina-embeddings-v4", {"normalized": False}, ["v4", "normalized"]),
        ("jina-embeddings-v4", {"task": "separation"}, ["v4", "separation"]),
        ("jina-embeddings-v4", {"task": "classification"}, ["v4", "classification"]),
        ("jina-embeddings-v5-text-small", {"task": "code.query"}, ["v5-text-small", "code.query"]),
        ("jina-embeddings-v5-text-nano", {"dimensions": 1024}, ["768"]),
    ],
)
def test_what_a_model_cannot_do_is_refused_before_any_request(
    model: str, call: dict[str, Any], words: list[str]
) -> None:
    api = schema_server(model)
    with rate_limited_api(api) as url:
        provider = JinaAPIProvider(
            api_key="k", base_url=url, model=model, max_dimensions=model_info(model).dim
        )
        with pytest.raises(InputError) as info:
            provider.embed(["some text", "more"], **call)
        provider.close()
    for word in words:
        assert word in str(info.value)
    assert api.bodies == []
