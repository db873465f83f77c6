"""jina-embeddings-v4's code tasks (issue 24.3): ``Task.CODE_QUERY`` / ``Task.CODE_PASSAGE``.

Only v4 through Jina's API takes them (checked against the official ``EmbeddingsV4Request``
schema on loopback); every other model refuses them before any request, the local
jina-embeddings-v3 included, and ``jv3 serve`` (which runs v3) answers 422 as for any task it
does not have.
"""

from __future__ import annotations

import pytest

from jv3_integrations.core import EmbeddingProvider, InputError, JinaAPIProvider, Task
from jv3_integrations.core._models import model_info
from jv3_integrations.server._request import WireError, parse_embeddings_request
from tests.core.test_api_models import schema_server
from tests.support.rate_limited_api import rate_limited_api

V4 = "jina-embeddings-v4"


def test_v4_takes_its_code_tasks_by_member_and_by_name() -> None:
    assert {Task.CODE_QUERY, Task.CODE_PASSAGE} <= set(model_info(V4).tasks)
    api = schema_server(V4)
    with rate_limited_api(api) as url:
        provider = JinaAPIProvider(api_key="k", base_url=url, model=V4)
        query = provider.embed(["sort a list in place"], task=Task.CODE_QUERY, dimensions=8)
        passage = provider.embed(["def f(xs): xs.sort()"], task="code.passage")
        provider.close()
    assert query.task is Task.CODE_QUERY and query.vectors.shape == (1, 8)
    assert passage.task is Task.CODE_PASSAGE and passage.vectors.shape == (1, 2048)
    assert [b["task"] for b in api.bodies] == ["code.query", "code.passage"]
    assert [e.status for e in api.log] == [200, 200]


@pytest.mark.parametrize(
    "model", ["jina-embeddings-v3", "jina-embeddings-v5-text-small", "jina-embeddings-v5-text-nano"]
)
def test_other_models_refuse_code_tasks_before_any_request(model: str) -> None:
    assert Task.CODE_QUERY not in model_info(model).tasks
    api = schema_server(model)
    with rate_limited_api(api) as url:
        provider = JinaAPIProvider(api_key="k", base_url=url, model=model)
        for task in (Task.CODE_QUERY, "code.passage"):
            with pytest.raises(InputError) as err:
                provider.embed(["x"], task=task)
            assert model in str(err.value) and str(task) in str(err.value)
        provider.close()
    assert api.bodies == []


def test_the_local_v3_model_refuses_code_tasks(local_provider: EmbeddingProvider) -> None:
    with pytest.raises(InputError, match="code.query"):
        local_provider.embed(["x"], task=Task.CODE_QUERY)


def test_jv3_serve_answers_422_for_a_code_task() -> None:
    body = {"model": "jina-embeddings-v3", "input": ["x"], "task": "code.query"}
    with pytest.raises(WireError) as err:
        parse_embeddings_request(body, max_dimensions=1024)
    assert err.value.status == 422
    assert "code.query" in str(err.value.body) and "'separation'" in str(err.value.body)
