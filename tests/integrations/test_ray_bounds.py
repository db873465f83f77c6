"""Ray plans that fit the cluster: the embedding actors never take the CPUs the shuffle needs.

Issue 26: on ``ray.init(num_cpus=2)`` late chunking with ``concurrency=2`` waited forever (the
two actors held both CPUs; the group-by shuffle asked for a third). One local 2-CPU Ray for the
file; the run has a deadline, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import ray.data

from jv3_integrations import ConfigurationError, embed_chunks_many, load_provider
from jv3_integrations.integrations.ray._embed import _actor_cpus
from jv3_integrations.ray import embed_dataset

pytestmark = pytest.mark.slow

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: Seconds the late-chunking run may take on a loaded 2-core machine (it took 10-40 s).
DEADLINE_S = 240
DOCS = {
    f"doc{d}": [f"Document {d}, sentence {j}: tides, rivers and the moon." for j in range(6)]
    for d in range(5)
}


@pytest.fixture(scope="module")
def two_cpus() -> Iterator[None]:
    if ray.is_initialized():  # a Ray left by another file on this xdist worker
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(conformance_dir: Path) -> str:
    return f"local:{conformance_dir}"


def test_late_chunking_with_as_many_actors_as_cpus_finishes(two_cpus: None, spec: str) -> None:
    rows = [
        {"doc": doc, "pos": j, "text": text}
        for doc, chunks in DOCS.items()
        for j, text in enumerate(chunks)
    ]
    ds = ray.data.from_items(rows, override_num_blocks=4)
    out = embed_dataset(
        ds,
        spec,
        late_chunking=True,
        document_column="doc",
        order_column="pos",
        concurrency=2,
    )
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["rows"] = out.take_all()
        except BaseException as exc:  # reported by the test thread
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    assert not worker.is_alive(), (
        f"late chunking on 2 CPUs with 2 actors did not finish in {DEADLINE_S} s: "
        f"{ray.available_resources()}"
    )
    assert "error" not in result, result.get("error")
    got = {(r["doc"], r["pos"]): np.asarray(r["embedding"]) for r in result["rows"]}
    assert len(got) == len(rows)
    provider = load_provider(spec)
    try:
        for doc, chunks in DOCS.items():
            want = embed_chunks_many(provider, [chunks])[0]
            for j, chunk in enumerate(want):
                np.testing.assert_allclose(got[(doc, j)], chunk.vector, atol=1e-5)
    finally:
        provider.close()


def test_actor_cpus_leave_room_for_the_shuffle_and_one_task(two_cpus: None) -> None:
    # 2 CPUs: one task (1 CPU) and the shuffle's share (a quarter) are kept free
    assert _actor_cpus(2, late_chunking=True) == 0.25
    assert _actor_cpus(1, late_chunking=True) == 0.5
    assert _actor_cpus(2, late_chunking=False) == 0.5
    assert _actor_cpus(1, late_chunking=False) == 1.0  # never more than one CPU
    assert _actor_cpus(8, late_chunking=True) == 0.06  # rounded down, never over
    total = 2 * _actor_cpus(2, late_chunking=True)  # type: ignore[operator]
    assert total + 1 + 0.25 * 2 <= 2


def test_user_num_cpus_is_kept(two_cpus: None, spec: str) -> None:
    ds = ray.data.from_items([{"text": "one"}, {"text": "two"}])
    out = embed_dataset(ds, spec, concurrency=1, ray_remote_args={"num_cpus": 0.5})
    assert len(out.take_all()) == 2


def test_late_chunking_on_one_cpu_is_refused_before_any_work(spec: str) -> None:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"doc": "a", "pos": 0, "text": "one"}])
        with pytest.raises(ConfigurationError, match="at least 2 CPUs"):
            embed_dataset(ds, spec, late_chunking=True, document_column="doc", order_column="pos")
    finally:
        ray.shutdown()
