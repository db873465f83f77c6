"""Ray Data scale-out on a real local Ray (one session for the whole file: Ray starts slowly).

Every pipeline is tiny; each test checks what a user would see: vectors by id equal to the
in-process provider, exactly the expected ids in real stores (Milvus Lite, Qdrant local mode,
the loopback Pinecone), retries that leave the store exact, clear errors before any write.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import ray.data
from pinecone import Pinecone
from qdrant_client import QdrantClient

from jv3_integrations import (
    ConfigurationError,
    EmbeddingProvider,
    InputError,
    InputTypeError,
    embed_chunks_many,
)
from jv3_integrations.integrations._store import chunk_point_id, point_id
from jv3_integrations.milvus import MilvusStore
from jv3_integrations.pinecone import PineconeStore
from jv3_integrations.qdrant import QdrantStore
from jv3_integrations.ray import embed_dataset, write_store
from tests.conftest import SERVER_API_KEY
from tests.support.fault_server import answer, fault_server
from tests.support.pinecone_server import running_pinecone

pytestmark = pytest.mark.slow

# Ray's workers do not import the tests package: ship this module's functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

DIMS = 32
TEXTS = [
    f"passage {i}: " + " ".join(["river", "stone", "tide", "hill"][: 1 + i % 4]) for i in range(24)
]
TEXTS[5] = "a much longer passage " + "with many repeated words " * 30  # costs what it costs
DOCS = [
    [
        "Berlin is the capital of Germany.",
        "It has 3.8 million people.",
        "The Spree runs through it.",
    ],
    ["Tides are caused by the Moon."],
    ["Paella comes from Valencia.", "It is made with rice.", "Saffron colours it.", "Eat it hot."],
]


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray for the file (module scope: other Ray files start their own after it); workers inherit this environment (the API key included)."""
    saved = os.environ.get("JINA_API_KEY")
    os.environ["JINA_API_KEY"] = SERVER_API_KEY  # the cluster's environment, not an argument
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if saved is None:
            os.environ.pop("JINA_API_KEY", None)
        else:
            os.environ["JINA_API_KEY"] = saved
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(conformance_dir: Path) -> str:
    return f"local:{conformance_dir}"


@pytest.fixture(scope="module")
def embedded(ray_session: None, spec: str) -> Any:
    """The passages embedded once on Ray (materialized; reused by the store tests)."""
    ds = ray.data.from_items(
        [{"id": f"p{i}", "text": t, "n": i} for i, t in enumerate(TEXTS)], override_num_blocks=3
    )
    return embed_dataset(ds, spec, dimensions=DIMS, batch_tokens=256).materialize()


def _by_id(rows: list[dict[str, Any]], key: str = "id") -> dict[str, np.ndarray]:
    return {r[key]: np.asarray(r["embedding"]) for r in rows}


def test_workers_import_this_tree(ray_session: None) -> None:
    import jv3_integrations

    @ray.remote
    def where() -> str:
        import jv3_integrations as pkg

        return str(pkg.__file__)

    assert ray.get(where.remote()) == jv3_integrations.__file__


def test_vectors_by_id_equal_the_in_process_provider(
    embedded: Any, local_provider: EmbeddingProvider
) -> None:
    rows = embedded.take_all()
    assert sorted(rows[0]) == ["embedding", "id", "n", "text"]  # every column kept
    got = _by_id(rows)
    assert sorted(got) == sorted(f"p{i}" for i in range(len(TEXTS)))
    want = local_provider.embed_documents(TEXTS, dimensions=DIMS).vectors
    for i in range(len(TEXTS)):
        assert got[f"p{i}"].dtype == np.float32 and got[f"p{i}"].shape == (DIMS,)
        np.testing.assert_allclose(got[f"p{i}"], want[i], atol=1e-5)


def test_late_chunking_equals_embed_chunks_many(
    ray_session: None, spec: str, local_provider: EmbeddingProvider, tmp_path: Path
) -> None:
    rows = [
        {"doc": f"d{d}", "pos": j, "text": c, "lang": "en"}
        for d, chunks in enumerate(DOCS)
        for j, c in enumerate(chunks)
    ]
    ds = ray.data.from_items(rows[::-1], override_num_blocks=4)  # chunks out of order, split
    out = embed_dataset(
        ds,
        spec,
        late_chunking=True,
        document_column="doc",
        order_column="pos",
        shuffle_partitions=2,
    ).materialize()
    want = embed_chunks_many(local_provider, DOCS, task="retrieval.passage")
    got = out.take_all()
    assert len(got) == len(rows)
    for r in got:
        np.testing.assert_allclose(
            r["embedding"], want[int(r["doc"][1:])][r["pos"]].vector, atol=1e-5
        )

    # chunk rows written to Milvus Lite: the ids add_documents gives, doc_id/chunk_index set
    store = MilvusStore(spec, uri=str(tmp_path / "late.db"), collection="late")
    try:
        result = write_store(out, store, document_column="doc", chunk_column="pos")
        assert result.written == len(rows)
        assert result.chunks == {f"d{d}": len(c) for d, c in enumerate(DOCS)}
        expected = {chunk_point_id(f"d{d}", j) for d, c in enumerate(DOCS) for j in range(len(c))}
        got_rows = store.client.query(
            "late", filter="", output_fields=["id", "metadata"], limit=100
        )
        assert {r["id"] for r in got_rows} == expected and store.count() == len(expected)
        for r in got_rows:
            meta = r["metadata"]
            assert r["id"] == chunk_point_id(meta["doc_id"], meta["chunk_index"])
            assert meta["lang"] == "en"
    finally:
        store.client.close()


def test_writes_milvus_lite_and_qdrant_local_with_exact_ids_and_vectors(
    embedded: Any, spec: str, tmp_path: Path, local_provider: EmbeddingProvider
) -> None:
    want_ids = {point_id(f"p{i}") for i in range(len(TEXTS))}
    ref = local_provider.embed_documents(TEXTS, dimensions=DIMS).vectors

    qdrant = QdrantStore(spec, client=QdrantClient(path=str(tmp_path / "q")), dimensions=DIMS)
    try:
        for _ in range(2):  # a re-run rewrites the same points
            assert write_store(embedded, qdrant, id_column="id").written == len(TEXTS)
        points, _ = qdrant.client.scroll("jv3", limit=100, with_vectors=True, with_payload=True)
        assert {str(p.id) for p in points} == want_ids and qdrant.count() == len(TEXTS)
        for p in points:
            i = int(p.payload["n"])
            assert p.payload["text"] == TEXTS[i] and "id" not in p.payload  # the point's id
            np.testing.assert_allclose(p.vector, ref[i], atol=1e-5)
    finally:
        qdrant.client.close()

    milvus = MilvusStore(spec, uri=str(tmp_path / "m.db"), dimensions=DIMS)
    try:
        assert write_store(embedded, milvus, id_column="id").written == len(TEXTS)
        rows = milvus.client.query(
            "jv3", filter="", output_fields=["id", "text", "vector"], limit=100
        )
        assert {r["id"] for r in rows} == want_ids and milvus.count() == len(TEXTS)
        for r in rows:
            np.testing.assert_allclose(r["vector"], ref[TEXTS.index(r["text"])], atol=1e-5)
    finally:
        milvus.client.close()


def _pinecone_store(host: str, key: str, spec: str, kill_flag: str | None = None) -> PineconeStore:
    """The write tasks' factory: a PineconeStore on the loopback server (the key from env in
    real use). With ``kill_flag`` the first process to upsert dies right after its write."""

    class Dying(PineconeStore):
        def _upsert(self, records: Any, full: Any, small: Any) -> None:
            super()._upsert(records, full, small)
            if kill_flag is not None:
                try:
                    fd = os.open(kill_flag, os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    return
                os.close(fd)
                os._exit(1)  # the worker dies mid-task: Ray retries the task

    return Dying(spec, client=Pinecone(api_key=key, host=host), collection="ray", dimensions=DIMS)


def test_parallel_writers_to_pinecone_survive_a_killed_worker(
    embedded: Any, spec: str, tmp_path: Path
) -> None:
    flag = str(tmp_path / "killed")
    with running_pinecone() as srv:
        factory = functools.partial(_pinecone_store, srv.base_url, srv.state.api_key, spec, flag)
        result = write_store(
            embedded.repartition(4), factory, id_column="id", writers=2, batch_size=4
        )
        assert os.path.exists(flag), "the injected crash never happened"
        assert result.written >= len(TEXTS)  # the retried task wrote its rows again
        stored = srv.state.indexes["ray"].namespaces[""]
        assert set(stored) == {point_id(f"p{i}") for i in range(len(TEXTS))}
        rows = {r["id"]: np.asarray(r["embedding"]) for r in embedded.take_all()}
        for i in range(len(TEXTS)):
            vector, meta = stored[point_id(f"p{i}")]
            assert meta["n"] == i and meta["text"] == TEXTS[i]
            np.testing.assert_allclose(vector, rows[f"p{i}"], atol=1e-6)


def test_api_provider_through_our_server(
    ray_session: None, jina_server_url: str, local_provider: EmbeddingProvider
) -> None:
    ds = ray.data.from_items([{"id": f"p{i}", "text": t} for i, t in enumerate(TEXTS[:8])])
    out = embed_dataset(
        ds, jina_server_url, dimensions=DIMS, concurrency=1, provider_options={"max_concurrency": 2}
    )
    got = _by_id(out.take_all())
    want = local_provider.embed_documents(TEXTS[:8], dimensions=DIMS).vectors
    for i in range(8):
        np.testing.assert_allclose(got[f"p{i}"], want[i], atol=1e-5)


def _kill_embedding_actor() -> int:
    """SIGKILL this session's embedding actor (a grandchild of this process: driver > raylet)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            grandparent = int(
                (Path("/proc") / str(ppid) / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
        except (OSError, ValueError, IndexError):
            continue
        if b"_Embedder" in cmdline and grandparent == os.getpid():
            os.kill(int(entry.name), signal.SIGKILL)
            return int(entry.name)
    raise AssertionError("no embedding actor found to kill")


def test_a_failed_batch_and_a_killed_actor_are_retried_by_ray_and_the_store_ends_exact(
    ray_session: None,
) -> None:
    texts = [f"text number {i}" for i in range(12)]
    # request 1 is the provider check, 2 the first call of the batch, 3 fails (502): Ray
    # retries the batch; its first call then hangs and the test kills the actor: Ray
    # restarts it and runs the batch a third time
    with fault_server(["ok", "ok", "html502", "hang"]) as (url, server):
        ds = ray.data.from_items([{"text": t} for t in texts])
        out = embed_dataset(
            ds,
            url,
            task=None,
            batch_tokens=24,  # several requests per batch (the provider's max_batch_tokens)
            provider_options={"max_retries": 0, "max_dimensions": 4, "max_concurrency": 1},
        )
        store = QdrantStore("api", client=QdrantClient(":memory:"), dimensions=4)
        killed: list[int] = []

        def killer() -> None:
            deadline = time.monotonic() + 120
            while "hang" not in server.actions and time.monotonic() < deadline:
                time.sleep(0.05)
            killed.append(_kill_embedding_actor())

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        assert write_store(out, store).written == len(texts)
        thread.join(timeout=5)
        assert killed and server.actions[:4] == ["ok", "ok", "html502", "hang"]
    points, _ = store.client.scroll("jv3", limit=100, with_vectors=True, with_payload=True)
    assert sorted(str(p.id) for p in points) == sorted(point_id(t) for t in texts)
    for p in points:
        v = np.asarray(answer(p.payload["text"]), dtype=np.float32)
        np.testing.assert_allclose(p.vector, v / np.linalg.norm(v), atol=1e-5)


# -- bad input: one clear error, before any work or write -------------------------------------


def test_bad_input_is_refused_before_any_write(ray_session: None, spec: str) -> None:
    good = ray.data.from_items([{"body": "x"}])
    with pytest.raises(InputError, match=r"no column 'text'.*\['body'\]"):
        embed_dataset(good, spec)
    with pytest.raises(InputError, match="document_column"):
        embed_dataset(good, spec, text_column="body", late_chunking=True)
    with pytest.raises(ConfigurationError, match="environment"):
        embed_dataset(good, "api", text_column="body", provider_options={"api_key": "sk-x"})
    with pytest.raises(ConfigurationError, match="spec string"):
        embed_dataset(good, object(), text_column="body")  # type: ignore[arg-type]

    mixed = ray.data.from_items(
        [{"text": "fine"}, {"text": 7}, {"text": None}], override_num_blocks=1
    )
    with pytest.raises(InputTypeError, match=r"'text' has 2 values that are not a str.*int 7"):
        embed_dataset(mixed, spec)

    with pytest.raises(
        ConfigurationError,
        match=r"does not load on the Ray workers.*ModelLoadError|does not load on the Ray workers",
    ):
        embed_dataset(ray.data.from_items([{"text": "x"}]), "local:/no/such/model/dir")

    # a store is only touched after the Dataset checks out: the collection is never created
    store = QdrantStore(spec, client=QdrantClient(":memory:"), dimensions=DIMS)
    with pytest.raises(InputError, match="no column 'embedding'"):
        write_store(ray.data.from_items([{"text": "x"}]), store)
    assert store.count() == 0
    with pytest.raises(ConfigurationError, match="8-dimensional"):
        write_store(
            ray.data.from_items([{"text": "x", "embedding": np.ones(8, np.float32)}]), store
        )
    assert store.count() == 0
    with pytest.raises(ConfigurationError, match="writers=1"):
        write_store(good, functools.partial(QdrantStore, spec, dimensions=DIMS), writers=2)


# -- jv3 index --engine ray ---------------------------------------------------------------------


def _dump(path: Path) -> dict[str, tuple[dict[str, Any], list[float]]]:
    client = QdrantClient(path=str(path))
    try:
        points, _ = client.scroll("jv3", limit=1000, with_vectors=True, with_payload=True)
        return {str(p.id): (dict(p.payload or {}), list(p.vector)) for p in points}
    finally:
        client.close()


def test_jv3_index_engine_ray_equals_engine_local(
    ray_session: None, spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jv3_integrations.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(" ".join(DOCS[0]) * 3, encoding="utf-8")
    (docs / "b.md").write_text("# Tides\n\n" + DOCS[1][0], encoding="utf-8")
    (docs / "c.txt").write_text(" ".join(DOCS[2]), encoding="utf-8")
    (docs / "empty.txt").write_text("  \n", encoding="utf-8")

    def index(engine: str, store: Path, *extra: str) -> dict[str, Any]:
        args = ["index", str(docs), "--store", f"qdrant:{store}", "--provider", spec]
        args += ["--chunker", "sentences:60", "--no-progress", "--json", "--engine", engine, *extra]
        assert main(args) == 0
        return json.loads(capsys.readouterr().out)

    # the Ray flags without the Ray engine: one clear line, nothing indexed
    assert main(["index", str(docs), "--store", f"qdrant:{tmp_path / 'x'}", "--workers", "2"]) != 0
    assert "--engine ray" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    local = index("local", tmp_path / "local")
    on_ray = index("ray", tmp_path / "ray", "--workers", "1")
    keys = [
        "new",
        "changed",
        "unchanged",
        "empty",
        "files_embedded",
        "chunks_embedded",
        "chunks_total",
        "tokens",
    ]
    assert {k: on_ray[k] for k in keys} == {k: local[k] for k in keys}
    assert on_ray["chunks_total"] > 3

    def same() -> None:
        a, b = _dump(tmp_path / "local"), _dump(tmp_path / "ray")
        assert sorted(a) == sorted(b)
        for pid, (payload, vector) in a.items():
            assert b[pid][0] == payload
            np.testing.assert_allclose(b[pid][1], vector, atol=1e-5)

    same()

    # incremental: one file shorter, one removed, one unchanged -> same summary, same store
    (docs / "a.txt").write_text(DOCS[0][0], encoding="utf-8")
    (docs / "c.txt").unlink()
    local2 = index("local", tmp_path / "local")
    ray2 = index("ray", tmp_path / "ray")
    keys += ["removed", "chunks_deleted"]
    assert {k: ray2[k] for k in keys} == {k: local2[k] for k in keys}
    assert (ray2["changed"], ray2["unchanged"], ray2["removed"]) == (1, 2, 1)  # b.md, empty.txt
    same()
