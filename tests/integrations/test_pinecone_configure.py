"""configure_index (``PATCH /indexes/{index_name}``) on the loopback Pinecone, through the real
SDK: tags are merged, ``""`` removes one, and what the server does not implement is refused
with a 400 naming it, never ignored (``tests/support/pinecone_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pinecone import NotFoundError, Pinecone, PineconeApiException, ServerlessSpec

from tests.support.pinecone_server import API_VERSION, running_pinecone


@pytest.fixture(scope="module")
def srv() -> Iterator[Any]:
    with running_pinecone() as server:
        yield server
        assert server.schema_errors == [], "responses broke the Pinecone OpenAPI schemas"


@pytest.fixture
def pc(srv: Any) -> Iterator[Pinecone]:
    client = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
    srv.state.indexes.pop("tagged", None)  # each test starts from the same tags
    client.create_index(
        "tagged",
        dimension=8,
        metric="cosine",
        spec=ServerlessSpec(cloud="aws", region="us-east-1"),
        tags={"jv3_model": "tiny", "env": "dev"},
    )
    yield client
    client.close()


def _patch(srv: Any, name: str, body: Any) -> httpx.Response:
    headers = {"Api-Key": srv.state.api_key, "X-Pinecone-Api-Version": API_VERSION}
    return httpx.patch(f"{srv.base_url}/indexes/{name}", json=body, headers=headers)


def test_tags_are_merged_and_an_empty_value_removes_one(srv: Any, pc: Pinecone) -> None:
    model = pc.configure_index("tagged", tags={"jv3generation": "1", "env": "prod"})
    assert model.name == "tagged"
    assert model.tags == {"jv3_model": "tiny", "env": "prod", "jv3generation": "1"}
    assert pc.describe_index("tagged").tags == model.tags
    model = pc.configure_index("tagged", tags={"env": "", "absent": ""})
    assert model.tags == {"jv3_model": "tiny", "jv3generation": "1"}
    pc.configure_index("tagged", tags={"jv3_model": "", "jv3generation": ""})
    assert pc.describe_index("tagged").tags is None  # no tags: omitted, as the schema allows
    assert srv.state.indexes["tagged"].tags is None


def test_an_unknown_index_is_404(pc: Pinecone) -> None:
    with pytest.raises(NotFoundError):
        pc.configure_index("missing", tags={"a": "b"})


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"deletion_protection": "enabled"}, 400, "does not implement configuring"),
        ({"deployment": {"replicas": 2}, "tags": {"a": "b"}}, 400, "deployment"),
        ({"read_capacity": {"mode": "OnDemand"}}, 400, "read_capacity"),
        ({"tags": {"a": "b"}, "spec": {}}, 422, "unknown field `spec`"),
        ({"tags": {"bad key": "x"}}, 400, "tag key"),
        ({"tags": {"a": "\n"}}, 400, "printable ASCII"),
        ({"tags": {f"k{i}": "v" for i in range(19)}}, 400, "at most 20 tags"),
        ([], 400, "ConfigureIndexRequest"),
    ],
)
def test_what_is_not_implemented_or_invalid_is_refused_and_changes_nothing(
    srv: Any, pc: Pinecone, body: Any, status: int, says: str
) -> None:
    response = _patch(srv, "tagged", body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
    assert srv.state.indexes["tagged"].tags == {"jv3_model": "tiny", "env": "dev"}


def test_the_sdk_surfaces_a_refused_field(pc: Pinecone) -> None:
    with pytest.raises(PineconeApiException, match="deletion_protection"):
        pc.configure_index("tagged", deletion_protection="enabled")
