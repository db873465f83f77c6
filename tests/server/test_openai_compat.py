"""``jv3 serve`` speaks OpenAI's embeddings API: real OpenAI-compatible clients pointed at it.

Each client gets the local model's vectors (``LocalProvider`` on ``tests/data/tiny-v3``):
- the ``openai`` SDK: ``encoding_format`` float and base64 (its default, which it decodes
  itself), ``dimensions``, a Jina task through ``extra_body``;
- LangChain's ``OpenAIEmbeddings`` (``langchain-openai``) with ``base_url=``;
- jina-haystack through its ``base_url=`` option.
A misspelled field is still a 422 that names it; ``user`` is accepted and never logged.
"""

from __future__ import annotations

import base64
import logging
import re

import httpx
import numpy as np
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from jv3_integrations.core import LocalProvider
from jv3_integrations.server._request import parse_embeddings_request
from tests.conftest import SERVER_API_KEY

MODEL = "jina-embeddings-v3"
DOCS = ["Berlin is the capital of Germany.", "Der Himmel ist blau.", "東京は日本の首都です。"]

pytestmark = pytest.mark.network


@pytest.fixture
def client(jina_server_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=SERVER_API_KEY, base_url=f"{jina_server_url}/v1", max_retries=0)


def _rows(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    assert all(d.object == "embedding" for d in response.data)
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_openai_sdk_float_matches_the_local_model(
    client: openai.OpenAI, local_provider: LocalProvider
) -> None:
    response = client.embeddings.create(model=MODEL, input=DOCS, encoding_format="float")
    assert response.object == "list" and response.model == MODEL
    want = local_provider.embed(DOCS).vectors
    assert np.allclose(_rows(response), want, atol=1e-5)
    tokens = sum(local_provider.count_tokens(DOCS).counts)
    assert response.usage.prompt_tokens == tokens and response.usage.total_tokens == tokens


def test_openai_sdk_default_base64_is_decoded_by_the_sdk(
    client: openai.OpenAI, local_provider: LocalProvider
) -> None:
    # the SDK asks for base64 when no encoding_format is given and decodes it to floats itself
    implicit = client.embeddings.create(model=MODEL, input=DOCS[:2])
    want = local_provider.embed(DOCS[:2]).vectors
    assert np.allclose(_rows(implicit), want, atol=1e-5)
    explicit = client.embeddings.create(model=MODEL, input=DOCS[0], encoding_format="base64")
    raw = explicit.data[0].embedding
    assert isinstance(raw, str)  # asked for explicitly: handed back as the base64 string
    got = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert np.allclose(got, want[0], atol=1e-5)


def test_openai_sdk_dimensions_and_a_task_through_extra_body(
    client: openai.OpenAI, local_provider: LocalProvider
) -> None:
    response = client.embeddings.create(
        model=MODEL,
        input=DOCS,
        dimensions=32,
        encoding_format="float",
        user="end-user-42",
        extra_body={"task": "retrieval.query", "truncate": True},
    )
    got = _rows(response)
    assert got.shape == (3, 32)
    want = local_provider.embed(DOCS, task="retrieval.query", dimensions=32).vectors
    assert np.allclose(got, want, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    late = client.embeddings.create(
        model=MODEL,
        input=DOCS,
        encoding_format="float",
        extra_body={"task": "retrieval.passage", "late_chunking": True},
    )
    want = local_provider.embed(DOCS, task="retrieval.passage", late_chunking=True).vectors
    assert np.allclose(_rows(late), want, atol=1e-5)


def test_openai_sdk_misspelled_field_is_a_422_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.embeddings.create(
            model=MODEL, input=DOCS, encoding_format="float", extra_body={"dimension": 8}
        )
    errors = info.value.body["errors"] if isinstance(info.value.body, dict) else None
    assert errors is not None and [e["field"] for e in errors] == ["dimension"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="wrong", base_url=client.base_url, max_retries=0).embeddings.create(
            model=MODEL, input="x"
        )


def test_user_is_accepted_and_never_logged(
    jina_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret_user = "user-7f3a9c-never-logged"
    with caplog.at_level(logging.DEBUG):
        response = httpx.post(
            f"{jina_server_url}/v1/embeddings",
            json={"model": MODEL, "input": ["x"], "user": secret_user},
            headers={"Authorization": f"Bearer {SERVER_API_KEY}"},
        )
        assert response.status_code == 200
        # a request that fails validation does not echo it either
        bad = httpx.post(
            f"{jina_server_url}/v1/embeddings",
            json={"model": MODEL, "input": ["x"], "user": secret_user, "dimension": 3},
            headers={"Authorization": f"Bearer {SERVER_API_KEY}"},
        )
    assert bad.status_code == 422 and secret_user not in bad.text
    assert secret_user not in caplog.text


def test_openai_and_jina_encoding_names_agree_or_are_refused() -> None:
    req = parse_embeddings_request(
        {"model": MODEL, "input": ["a"], "encoding_format": "base64", "embedding_type": "base64"},
        max_dimensions=64,
    )
    assert req.embedding_types == ("base64",) and not req.multi_type
    default = parse_embeddings_request({"model": MODEL, "input": ["a"]}, max_dimensions=64)
    assert default.embedding_types == ("float",)
    # OpenAI's field takes only OpenAI's two values, even when Jina's agrees
    from jv3_integrations.server._request import WireError

    with pytest.raises(WireError) as info:
        parse_embeddings_request(
            {
                "model": MODEL,
                "input": ["a"],
                "encoding_format": "binary",
                "embedding_type": "binary",
            },
            max_dimensions=64,
        )
    assert [e["field"] for e in info.value.body["errors"]] == ["encoding_format"]


def test_token_id_input_gets_a_message_that_says_what_to_do() -> None:
    from jv3_integrations.server._request import WireError

    with pytest.raises(WireError) as info:
        parse_embeddings_request({"model": MODEL, "input": [[101, 2023]]}, max_dimensions=64)
    (error,) = info.value.body["errors"]
    assert error["field"] == "input.0"
    assert "check_embedding_ctx_length=False" in error["message"]


def test_langchain_openai_embeddings(jina_server_url: str, local_provider: LocalProvider) -> None:
    embeddings = OpenAIEmbeddings(
        model=MODEL,
        base_url=f"{jina_server_url}/v1",
        api_key=SERVER_API_KEY,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,  # send text, not tiktoken ids (see docs)
        dimensions=48,
        max_retries=0,
    )
    docs = embeddings.embed_documents(DOCS)
    want = local_provider.embed(DOCS, dimensions=48).vectors
    assert np.allclose(np.array(docs, dtype=np.float32), want, atol=1e-5)
    query = embeddings.embed_query("Wo liegt Berlin?")
    assert np.allclose(
        query, local_provider.embed(["Wo liegt Berlin?"], dimensions=48).vectors[0], atol=1e-5
    )


def test_jina_haystack_through_base_url(
    jina_server_url: str, local_provider: LocalProvider
) -> None:
    from haystack.utils import Secret
    from haystack_integrations.components.embedders.jina import JinaTextEmbedder

    embedder = JinaTextEmbedder(
        api_key=Secret.from_token(SERVER_API_KEY),
        base_url=f"{jina_server_url}/v1/embeddings",
        task="retrieval.query",
        dimensions=64,
    )
    got = np.array(embedder.run("Wo liegt Berlin?")["embedding"], dtype=np.float32)
    want = local_provider.embed(["Wo liegt Berlin?"], task="retrieval.query", dimensions=64)
    assert np.allclose(got, want.vectors[0], atol=1e-5)


# -- docs/openai-compatible.md: its blocks marked "needs a running jv3 serve" run here ---------


def _docs_blocks() -> list[tuple[int, str]]:
    from tests.conftest import ROOT
    from tests.test_readme import readme_blocks

    page = (ROOT / "docs" / "openai-compatible.md").read_text(encoding="utf-8")
    return [
        (b.line, b.code)
        for b in readme_blocks(page)
        if b.lang == "python" and (b.skip or "").startswith("needs a running jv3 serve")
    ]


def test_docs_page_has_server_blocks() -> None:
    assert len(_docs_blocks()) == 2  # the openai SDK and LangChain


@pytest.mark.parametrize(("line", "code"), _docs_blocks(), ids=lambda v: str(v)[:12])
def test_docs_block_runs_against_the_server(
    line: int,
    code: str,
    jina_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JV3_SERVER_API_KEY", SERVER_API_KEY)
    # the docs' server on the test machine: ours, on the small checkpoint (128 dimensions at
    # most, so every size is divided by 8, as for the README's blocks)
    code = code.replace("http://localhost:8080", jina_server_url)
    code = re.sub(r"\b(dimensions=)(\d+)", lambda m: f"{m[1]}{int(m[2]) // 8}", code)
    code = code.replace("== 256", "== 32")
    exec(compile(code, f"docs/openai-compatible.md:{line}", "exec"), {"__name__": "__docs__"})
    capsys.readouterr()
