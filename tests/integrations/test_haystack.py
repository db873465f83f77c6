"""Haystack components: routing, copies, serialization, warm-up, late chunking, pipelines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.components.preprocessors import DocumentSplitter
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.core.errors import SerializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import Secret

from jv3_integrations import (
    AuthenticationError,
    ConfigurationError,
    InputError,
    LocalProvider,
    embed_chunks,
)
from jv3_integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder
from tests.conftest import SERVER_API_KEY

DOCS = [
    "Berlin is the capital of Germany and its largest city.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "東京は日本の首都です。",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
    "Der Himmel ist blau und die Sonne scheint.",
    "Python is a popular programming language for data science.",
]


@pytest.fixture(scope="module")
def spec(conformance_dir: Path) -> str:
    return f"local:{conformance_dir}"


def _close(a: Any, b: Any, atol: float = 1e-5) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), atol=atol))


# -- routing and outputs ---------------------------------------------------------------------


def test_text_and_document_embedders_route_to_query_and_passage(
    local_provider: LocalProvider,
) -> None:
    text = DOCS[0]
    q = JinaV3TextEmbedder(provider=local_provider).run(text)
    d = JinaV3DocumentEmbedder(provider=local_provider, progress_bar=False).run(
        [Document(content=text)]
    )
    q_vec, d_vec = q["embedding"], d["documents"][0].embedding
    assert isinstance(q_vec, list) and isinstance(q_vec[0], float)
    assert _close(q_vec, local_provider.embed_queries([text]).vectors[0])
    assert _close(d_vec, local_provider.embed_documents([text]).vectors[0])
    assert not _close(q_vec, d_vec, 1e-3), "query and passage vectors must differ"
    assert q["meta"]["model"] == local_provider.model_name
    assert q["meta"]["usage"]["total_tokens"] > 0
    assert d["meta"]["usage"]["total_tokens"] > 0


def test_task_dimensions_prefix_suffix(local_provider: LocalProvider) -> None:
    emb = JinaV3TextEmbedder(
        provider=local_provider, task="text-matching", dimensions=32, prefix="Q: ", suffix="?"
    )
    out = emb.run("capital of Germany")["embedding"]
    assert len(out) == 32
    expected = local_provider.embed(["Q: capital of Germany?"], task="text-matching", dimensions=32)
    assert _close(out, expected.vectors[0])
    none_task = JinaV3TextEmbedder(provider=local_provider, task=None).run("x")["embedding"]
    assert _close(none_task, local_provider.embed(["x"], task=None).vectors[0])


def test_document_embedder_returns_copies_in_order_with_meta_fields(
    local_provider: LocalProvider,
) -> None:
    docs = [
        Document(content=DOCS[0], meta={"title": "Berlin"}),
        Document(content=DOCS[1], meta={"title": None}),
        Document(content=None, meta={"title": "empty"}),
        Document(content=DOCS[0], meta={"title": "Berlin"}),  # same id as docs[0]
    ]
    before = [(d.id, d.content, dict(d.meta), d.embedding) for d in docs]
    embedder = JinaV3DocumentEmbedder(
        provider=local_provider,
        meta_fields_to_embed=["title"],
        embedding_separator=" | ",
        batch_size=2,
        progress_bar=False,
    )
    out = embedder.run(docs)["documents"]
    assert [(d.id, d.content, dict(d.meta), d.embedding) for d in docs] == before
    assert len(out) == 4 and all(o is not d for o, d in zip(out, docs, strict=True))
    assert [o.id for o in out] == [d.id for d in docs]
    expected = local_provider.embed_documents(
        [f"Berlin | {DOCS[0]}", DOCS[1], "empty | ", f"Berlin | {DOCS[0]}"]
    ).vectors
    for o, e in zip(out, expected, strict=True):
        assert _close(o.embedding, e)


def test_wrong_input_types_raise_type_error(local_provider: LocalProvider) -> None:
    text_embedder = JinaV3TextEmbedder(provider=local_provider)
    doc_embedder = JinaV3DocumentEmbedder(provider=local_provider, progress_bar=False)
    with pytest.raises(TypeError, match="JinaV3DocumentEmbedder"):
        text_embedder.run([Document(content="x")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JinaV3TextEmbedder"):
        doc_embedder.run("a string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        doc_embedder.run([Document(content="x"), "y"])  # type: ignore[list-item]
    assert doc_embedder.run([])["documents"] == []


def test_bad_construction_arguments() -> None:
    with pytest.raises(ConfigurationError, match="spec"):
        JinaV3TextEmbedder(provider="local:")
    with pytest.raises(ConfigurationError, match="spec"):
        JinaV3TextEmbedder(provider="openai")
    with pytest.raises(ConfigurationError, match="Secret"):
        JinaV3TextEmbedder(api_key="raw-key")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retrieval.query"):
        JinaV3TextEmbedder(task="retrieval")
    with pytest.raises(ValueError, match="dimensions"):
        JinaV3DocumentEmbedder(dimensions=0)
    with pytest.raises(ValueError, match="batch_size"):
        JinaV3DocumentEmbedder(batch_size=0)
    with pytest.raises(ConfigurationError, match="late_chunking"):
        JinaV3DocumentEmbedder(late_chunking=True, meta_fields_to_embed=["title"])


async def test_run_async_matches_run(local_provider: LocalProvider) -> None:
    text_embedder = JinaV3TextEmbedder(provider=local_provider, dimensions=64)
    doc_embedder = JinaV3DocumentEmbedder(provider=local_provider, progress_bar=False)
    a = await text_embedder.run_async(DOCS[2])
    assert _close(a["embedding"], text_embedder.run(DOCS[2])["embedding"])
    docs = [Document(content=t) for t in DOCS[:3]]
    b = await doc_embedder.run_async(docs)
    sync = doc_embedder.run(docs)
    for x, y in zip(b["documents"], sync["documents"], strict=True):
        assert _close(x.embedding, y.embedding)
    assert b["meta"] == sync["meta"]


# -- serialization, warm-up, sharing --------------------------------------------------------


def test_to_dict_exact_and_round_trip(spec: str) -> None:
    embedder = JinaV3DocumentEmbedder(
        provider=spec, dimensions=64, late_chunking=True, batch_size=8, progress_bar=False
    )
    data = embedder.to_dict()
    assert data == {
        "type": "haystack_integrations.components.embedders.jina_v3.embedder.JinaV3DocumentEmbedder",
        "init_parameters": {
            "provider": spec,
            "api_key": {"type": "env_var", "env_vars": ["JINA_API_KEY"], "strict": False},
            "task": "retrieval.passage",
            "dimensions": 64,
            "late_chunking": True,
            "prefix": "",
            "suffix": "",
            "batch_size": 8,
            "progress_bar": False,
            "meta_fields_to_embed": [],
            "embedding_separator": "\n",
        },
    }
    restored = JinaV3DocumentEmbedder.from_dict(data)
    assert restored.to_dict() == data
    text = JinaV3TextEmbedder(provider="http://127.0.0.1:9", task=None, prefix="p")
    assert JinaV3TextEmbedder.from_dict(text.to_dict()).to_dict() == text.to_dict()
    assert text.to_dict()["init_parameters"]["task"] is None


def test_secrets_and_instances_refuse_to_serialize(local_provider: LocalProvider) -> None:
    with pytest.raises(ValueError, match="[Cc]annot serialize token"):
        JinaV3TextEmbedder(api_key=Secret.from_token("sk-very-secret")).to_dict()
    with pytest.raises(SerializationError, match="spec string"):
        JinaV3TextEmbedder(provider=local_provider).to_dict()
    embedder = JinaV3TextEmbedder(api_key=Secret.from_token("sk-very-secret"))
    assert "sk-very-secret" not in repr(embedder) + repr(embedder.__dict__)


def test_construction_does_no_io_and_loads_no_model(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    loads: list[str] = []

    def no_load(self: LocalProvider) -> None:
        loads.append("load")
        raise RuntimeError("model load attempted")

    def no_connect(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access during construction")

    monkeypatch.setattr(LocalProvider, "_load", no_load)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    missing = tmp_path / "no-model-here"
    components = [
        JinaV3TextEmbedder(provider=spec),
        JinaV3DocumentEmbedder(provider=spec, late_chunking=True),
        JinaV3TextEmbedder(provider=f"local:{missing}"),
        JinaV3TextEmbedder(provider="http://127.0.0.1:9"),
        JinaV3DocumentEmbedder(),
    ]
    assert loads == [] and all(c._provider is None for c in components)
    with pytest.raises(RuntimeError, match="model load attempted"):
        components[0].warm_up()  # warm_up is where the model loads
    monkeypatch.undo()
    with pytest.raises(Exception, match="no-model-here"):
        components[2].warm_up()


def test_same_local_settings_share_one_model(spec: str, conformance_dir: Path) -> None:
    a = JinaV3TextEmbedder(provider=spec)
    b = JinaV3DocumentEmbedder(provider=spec, dimensions=32, progress_bar=False)
    c = JinaV3TextEmbedder(provider=f"local:{conformance_dir}/")  # same directory
    for comp in (a, b, c):
        comp.warm_up()
    assert a._provider is b._provider is c._provider
    a.close()  # shared: closing one component keeps the model for the others
    assert len(b.run([Document(content="x")])["documents"][0].embedding) == 32


# -- the API-backed path (our server) ------------------------------------------------------


@pytest.mark.network
def test_api_backed_secret_from_env(
    jina_server_url: str, local_provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_API_KEY", SERVER_API_KEY)
    embedder = JinaV3TextEmbedder(provider=jina_server_url)
    data = embedder.to_dict()
    assert SERVER_API_KEY not in repr(data)
    restored = JinaV3TextEmbedder.from_dict(data)
    vec = restored.run(DOCS[0])["embedding"]
    assert _close(vec, local_provider.embed_queries([DOCS[0]]).vectors[0], 1e-4)
    restored.close()

    bad = JinaV3DocumentEmbedder(
        provider=jina_server_url, api_key=Secret.from_token("wrong-key"), progress_bar=False
    )
    with pytest.raises(AuthenticationError) as info:
        bad.run([Document(content="x")])
    assert "wrong-key" not in str(info.value)
    bad.close()


# -- late chunking ---------------------------------------------------------------------------

LONG_A = (
    "Berlin is the capital of Germany. It has about 3.8 million inhabitants. "
    "The city lies on the river Spree. Its history goes back to the 13th century."
)
LONG_B = "Tokyo is the capital of Japan. It is one of the largest cities in the world."


def _split(*texts: str) -> list[Document]:
    splitter = DocumentSplitter(split_by="word", split_length=6, split_overlap=0)
    return splitter.run([Document(content=t) for t in texts])["documents"]


def test_late_chunking_groups_by_source_and_orders_by_split_id(
    local_provider: LocalProvider,
) -> None:
    chunks = _split(LONG_A, LONG_B)
    loose = Document(content="A document without a source.")
    a_chunks = [c for c in chunks if c.meta["source_id"] == chunks[0].meta["source_id"]]
    b_chunks = [c for c in chunks if c.meta["source_id"] != chunks[0].meta["source_id"]]
    assert len(a_chunks) > 2 and len(b_chunks) > 1
    # Interleave the two sources, reverse one of them, and put a loose document in between.
    shuffled = [b_chunks[1], *a_chunks[::-1], loose, b_chunks[0], *b_chunks[2:]]
    embedder = JinaV3DocumentEmbedder(
        provider=local_provider, late_chunking=True, batch_size=3, progress_bar=False
    )
    out = embedder.run(shuffled)
    docs = out["documents"]
    assert [d.id for d in docs] == [d.id for d in shuffled]

    def late(texts: list[str | None]) -> list[np.ndarray]:
        # The reference: the core's late chunking of one document given as its chunks in order.
        return [c.vector for c in embed_chunks(local_provider, [t or "" for t in texts])]

    expected_a = late([c.content for c in a_chunks])
    expected_b = late([c.content for c in b_chunks])
    by_id = {d.id: d.embedding for d in docs}
    for c, e in zip(a_chunks, expected_a, strict=True):
        assert _close(by_id[c.id], e, 1e-4)
    for c, e in zip(b_chunks, expected_b, strict=True):
        assert _close(by_id[c.id], e, 1e-4)
    assert _close(by_id[loose.id], late([loose.content])[0], 1e-4)
    # Context matters: a chunk's late vector is not its standalone passage vector.
    alone = local_provider.embed_documents([a_chunks[1].content or ""]).vectors[0]
    assert not _close(by_id[a_chunks[1].id], alone, 1e-3)
    assert out["meta"]["usage"]["total_tokens"] > 0
    assert shuffled[0].embedding is None  # inputs untouched


async def test_late_chunking_async_matches_sync(local_provider: LocalProvider) -> None:
    chunks = _split(LONG_A, LONG_B)
    embedder = JinaV3DocumentEmbedder(
        provider=local_provider, late_chunking=True, dimensions=32, progress_bar=False
    )
    sync = embedder.run(chunks)["documents"]
    a = (await embedder.run_async(chunks))["documents"]
    for x, y in zip(a, sync, strict=True):
        assert len(x.embedding) == 32 and _close(x.embedding, y.embedding, 1e-5)


@pytest.mark.network
async def test_late_chunking_through_our_server_matches_local(
    jina_server_url: str, local_provider: LocalProvider
) -> None:
    chunks = _split(LONG_A, LONG_B)
    remote = JinaV3DocumentEmbedder(
        provider=jina_server_url,
        api_key=Secret.from_token(SERVER_API_KEY),
        late_chunking=True,
        progress_bar=False,
    )
    local = JinaV3DocumentEmbedder(provider=local_provider, late_chunking=True, progress_bar=False)
    local_out = local.run(chunks)
    expected = local_out["documents"]
    for out in (remote.run(chunks), await remote.run_async(chunks)):
        # the server's own count of the late-chunking requests, as the API reports it
        usage = out["meta"]["usage"]
        assert usage["total_tokens"] > 0 and usage["prompt_tokens"] == usage["total_tokens"]
        assert usage == local_out["meta"]["usage"]  # same model, same sequences, same tokens
        for got, want in zip(out["documents"], expected, strict=True):
            assert _close(got.embedding, want.embedding, 1e-4)
    await remote.close_async()


def test_late_chunking_rejects_overlap_duplicates_and_empty(local_provider: LocalProvider) -> None:
    embedder = JinaV3DocumentEmbedder(
        provider=local_provider, late_chunking=True, progress_bar=False
    )
    overlapping = DocumentSplitter(split_by="word", split_length=6, split_overlap=2).run(
        [Document(content=LONG_A)]
    )["documents"]
    with pytest.raises(InputError, match="split_overlap=0"):
        embedder.run(overlapping)
    chunks = _split(LONG_A)
    with pytest.raises(InputError, match="split_id"):
        embedder.run([chunks[0], chunks[1], chunks[0]])
    with pytest.raises(InputError, match="no text"):
        embedder.run([chunks[0], Document(content="")])


# -- pipelines ------------------------------------------------------------------------------


def _numpy_ranking(provider: LocalProvider, query: str, docs: list[str]) -> np.ndarray:
    q = provider.embed_queries([query]).vectors[0]
    p = provider.embed_documents(docs).vectors
    return p @ q


def _query(make_retriever: Any, spec: str, query: str, *, task: str) -> list[Document]:
    querying = Pipeline()
    querying.add_component("embedder", JinaV3TextEmbedder(provider=spec, task=task))
    querying.add_component("retriever", make_retriever())
    querying.connect("embedder.embedding", "retriever.query_embedding")
    docs: list[Document] = querying.run({"embedder": {"text": query}})["retriever"]["documents"]
    return docs


def _check_store(
    store: Any,
    make_retriever: Any,
    spec: str,
    provider: LocalProvider,
    to_cosine: Any = lambda score: score,
) -> None:
    indexing = Pipeline()
    indexing.add_component("embedder", JinaV3DocumentEmbedder(provider=spec, progress_bar=False))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("embedder.documents", "writer.documents")
    indexing.run({"embedder": {"documents": [Document(content=t) for t in DOCS]}})
    # By construction: the same task on both sides makes DOCS[3] its own nearest neighbour.
    docs = _query(make_retriever, spec, DOCS[3], task="retrieval.passage")
    assert docs[0].content == DOCS[3]
    # Default routing (query vs passage): the store ranks like numpy's cosine ranking.
    got = _query(make_retriever, spec, DOCS[0], task="retrieval.query")
    scores = _numpy_ranking(provider, DOCS[0], DOCS)
    assert [d.content for d in got] == [DOCS[i] for i in np.argsort(-scores)]
    cosines = [to_cosine(d.score) for d in got]
    assert np.allclose(cosines, np.sort(scores)[::-1], atol=1e-4)


def test_in_memory_pipeline(spec: str, local_provider: LocalProvider) -> None:
    store = InMemoryDocumentStore()
    _check_store(store, lambda: InMemoryEmbeddingRetriever(store, top_k=6), spec, local_provider)


def test_qdrant_pipeline(spec: str, local_provider: LocalProvider) -> None:
    qdrant = pytest.importorskip("haystack_integrations.document_stores.qdrant")
    retrievers = pytest.importorskip("haystack_integrations.components.retrievers.qdrant")
    store = qdrant.QdrantDocumentStore(
        ":memory:", embedding_dim=local_provider.dimensions, recreate_index=True, progress_bar=False
    )
    _check_store(
        store, lambda: retrievers.QdrantEmbeddingRetriever(store, top_k=6), spec, local_provider
    )


@pytest.mark.slow
def test_milvus_pipeline(spec: str, local_provider: LocalProvider, tmp_path: Path) -> None:
    milvus = pytest.importorskip("milvus_haystack")
    store = milvus.MilvusDocumentStore(
        connection_args={"uri": str(tmp_path / "haystack.db")},
        index_params={"index_type": "FLAT", "metric_type": "COSINE", "params": {}},
        drop_old=True,
    )
    # milvus-haystack reports COSINE scores as (1 + cos) / 2.
    _check_store(
        store,
        lambda: milvus.MilvusEmbeddingRetriever(store, top_k=6),
        spec,
        local_provider,
        to_cosine=lambda score: 2 * score - 1,
    )


def test_pipeline_yaml_round_trip(spec: str, local_provider: LocalProvider) -> None:
    store = InMemoryDocumentStore()
    store.write_documents(
        JinaV3DocumentEmbedder(provider=spec, progress_bar=False).run(
            [Document(content=t) for t in DOCS]
        )["documents"]
    )
    pipe = Pipeline()
    pipe.add_component("embedder", JinaV3TextEmbedder(provider=spec, task="retrieval.passage"))
    pipe.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=2))
    pipe.connect("embedder.embedding", "retriever.query_embedding")
    yaml_text = pipe.dumps()
    assert "JinaV3TextEmbedder" in yaml_text and spec in yaml_text
    # Haystack only deserializes classes from trusted modules; ours live in its
    # haystack_integrations namespace, so the default allowlist loads them (no argument).
    loaded = Pipeline.loads(yaml_text)
    assert loaded.dumps() == yaml_text
    embedder = loaded.get_component("embedder")
    assert isinstance(embedder, JinaV3TextEmbedder) and embedder.task is not None
    assert embedder.task.value == "retrieval.passage"
    # The loaded retriever has its own (empty) store: run just the embedder end-to-end.
    vec = embedder.run(DOCS[1])["embedding"]
    assert _close(vec, local_provider.embed_documents([DOCS[1]]).vectors[0])


def test_pipelines_saved_with_the_old_type_path_still_load(spec: str) -> None:
    import jv3_integrations.integrations.haystack as alias
    from haystack_integrations.components.embedders import jina_v3

    assert alias.JinaV3TextEmbedder is jina_v3.JinaV3TextEmbedder is JinaV3TextEmbedder
    pipe = Pipeline()
    pipe.add_component("embedder", JinaV3TextEmbedder(provider=spec))
    old = pipe.dumps().replace(
        "haystack_integrations.components.embedders.jina_v3.embedder.",
        "jv3_integrations.integrations.haystack.",
    )
    assert "jv3_integrations.integrations.haystack.JinaV3TextEmbedder" in old
    loaded = Pipeline.loads(old, allowed_modules=["jv3_integrations.*"])
    assert isinstance(loaded.get_component("embedder"), JinaV3TextEmbedder)


def test_async_pipeline(spec: str) -> None:
    store = InMemoryDocumentStore()
    indexing = Pipeline()
    indexing.add_component("embedder", JinaV3DocumentEmbedder(provider=spec, progress_bar=False))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("embedder.documents", "writer.documents")
    docs = [Document(content=t) for t in DOCS]
    asyncio.run(indexing.run_async({"embedder": {"documents": docs}}))
    assert store.count_documents() == len(DOCS)
    assert all(d.embedding is not None for d in store.filter_documents())


# -- the example --------------------------------------------------------------------------------


def test_example_runs_offline(conformance_dir: Path) -> None:
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "haystack_rag.py"
    args = ["--provider", f"local:{conformance_dir}", "--no-progress", "--top-k", "2"]
    env = {**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False"}
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("query: ") and len(lines) == 3, out.stdout
