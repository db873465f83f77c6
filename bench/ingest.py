"""Ingestion throughput: passages/s through each store, and where the time goes.

For each provider (the local model on a checkpoint, and JinaAPIProvider against our own
server on loopback serving the same checkpoint) and each store (Qdrant ``:memory:``, Milvus Lite,
Pinecone through the real SDK against the loopback Pinecone of the test support code),
``--passages`` passages go through ``add_texts`` with the store's default batch size. The time
inside the provider's embedding calls is measured separately, so the report shows the share of
time spent in the store vs in embedding.

Peer, in the same run: LlamaIndex ``VectorStoreIndex`` with its ``JinaEmbedding``
(llama-index-embeddings-jinaai, pointed at the same server) on ``QdrantVectorStore`` over
``QdrantClient(":memory:")``, both at their defaults; compare it with our api/qdrant row.

Prints one JSON object. Usage::

    python bench/ingest.py                                  # 10,000 passages, everything
    python bench/ingest.py --passages 1000 --stores qdrant --no-progress   # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from jv3_integrations import EmbeddingProvider, JinaAPIProvider, LocalProvider  # noqa: E402

DEFAULT_MODEL = ROOT / "tests" / "data" / "tiny-v3"
API_KEY = "bench-key"
WORDS = [
    "river",
    "mountain",
    "train",
    "bread",
    "music",
    "weather",
    "chess",
    "bees",
    "harbour",
    "castle",
    "garden",
    "winter",
    "summer",
    "market",
    "library",
    "engine",
    "bridge",
    "forest",
    "island",
    "desert",
    "village",
    "museum",
    "theatre",
    "kitchen",
    "school",
    "lantern",
    "compass",
    "violin",
    "orchard",
    "meadow",
    "glacier",
    "volcano",
    "canyon",
    "lighthouse",
    "windmill",
]


def corpus(n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` distinct passages of 12-40 words with a little metadata."""
    texts, metas = [], []
    for i in range(n):
        length = 12 + (i * 7) % 29
        words = [WORDS[(i * 13 + j * (i % 7 + 1)) % len(WORDS)] for j in range(length)]
        texts.append(f"Passage {i}: " + " ".join(words) + ".")
        metas.append({"source": f"doc-{i // 10}", "year": 1990 + i % 35})
    return texts, metas


class TimedProvider:
    """Forwards to a provider and adds up the seconds spent in its embedding calls."""

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith("embed"):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def row(name: str, seconds: float, embed_s: float, n: int, count: int) -> dict[str, Any]:
    store_s = max(seconds - embed_s, 0.0)
    return {
        "setup": name,
        "seconds": round(seconds, 3),
        "passages_per_s": round(n / seconds, 1),
        "embed_s": round(embed_s, 3),
        "store_s": round(store_s, 3),
        "store_share": round(store_s / seconds, 3),
        "stored": count,
    }


@contextmanager
def our_server(model: Path) -> Iterator[str]:
    from tests.support.server import running_server

    with running_server(model, api_key=API_KEY) as url:
        yield url


def make_stores(
    names: list[str], stack: ExitStack, tmp: Path
) -> dict[str, Callable[[EmbeddingProvider, str], Any]]:
    """One factory per store: (provider, collection) -> a fresh store."""
    factories: dict[str, Callable[[EmbeddingProvider, str], Any]] = {}
    if "qdrant" in names:
        from qdrant_client import QdrantClient

        from jv3_integrations.qdrant import QdrantStore

        factories["qdrant"] = lambda p, c: QdrantStore(
            p, client=QdrantClient(":memory:"), collection=c
        )
    if "milvus" in names:
        from pymilvus import MilvusClient

        from jv3_integrations.milvus import MilvusStore

        milvus = MilvusClient(str(tmp / "bench.db"))
        stack.callback(milvus.close)
        factories["milvus"] = lambda p, c: MilvusStore(p, client=milvus, collection=c)
    if "pinecone" in names:
        from pinecone import Pinecone
        from tests.support.pinecone_server import running_pinecone

        from jv3_integrations.pinecone import PineconeStore

        srv = stack.enter_context(running_pinecone(validate=False))
        pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
        factories["pinecone"] = lambda p, c: PineconeStore(p, client=pc, collection=c)
    return factories


def run_peer(url: str, texts: list[str], metas: list[dict[str, Any]], show: bool) -> dict[str, Any]:
    """LlamaIndex VectorStoreIndex + JinaEmbedding + QdrantVectorStore(:memory:), defaults."""
    try:
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.embeddings.jinaai import JinaEmbedding
        from llama_index.embeddings.jinaai import base as jina_base
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient
    except ImportError as exc:
        return {"unavailable": f"{exc.name} not installed"}
    embedding = JinaEmbedding(api_key=API_KEY, model="jina-embeddings-v3", task="retrieval.passage")
    # JinaEmbedding has no base_url argument; its API caller does.
    embedding._api = jina_base._JinaAPICaller(
        model="jina-embeddings-v3", base_url=f"{url}/v1", api_key=API_KEY
    )
    caller = embedding._api
    spent = [0.0]
    original = caller.get_embeddings

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    caller.get_embeddings = timed
    client = QdrantClient(":memory:")
    vector_store = QdrantVectorStore(client=client, collection_name="peer")
    nodes = [TextNode(text=t, metadata=m) for t, m in zip(texts, metas, strict=True)]
    t0 = time.perf_counter()
    VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=embedding,
        show_progress=show,
    )
    seconds = time.perf_counter() - t0
    count = int(client.count("peer", exact=True).count)
    out = row(
        "llama-index VectorStoreIndex + JinaEmbedding -> Qdrant :memory:",
        seconds,
        spent[0],
        len(texts),
        count,
    )
    out["embed_batch_size"] = embedding.embed_batch_size
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--stores", default="qdrant,milvus,pinecone")
    parser.add_argument("--providers", default="local,api")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint directory")
    parser.add_argument("--no-peer", action="store_true", help="skip the LlamaIndex peer")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    show = not args.no_progress
    stores = [s for s in args.stores.split(",") if s]
    providers = [p for p in args.providers.split(",") if p]
    texts, metas = corpus(args.passages)

    report: dict[str, Any] = {
        "passages": args.passages,
        "model": str(args.model),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "ours": [],
    }
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        url = (
            stack.enter_context(our_server(args.model))
            if ("api" in providers or not args.no_peer)
            else None
        )
        factories = make_stores(stores, stack, Path(tmp))
        for kind in providers:
            if kind == "local":
                inner: EmbeddingProvider = LocalProvider(str(args.model))
            else:
                inner = JinaAPIProvider(api_key=API_KEY, base_url=str(url))
            inner.embed_documents(["warm up"])
            for store_name, factory in factories.items():
                timed = TimedProvider(inner)
                store = factory(timed, f"bench-{kind}-{store_name}")  # type: ignore[arg-type]
                store.progress_bar = show
                t0 = time.perf_counter()
                store.add_texts(texts, metas)
                seconds = time.perf_counter() - t0
                result = row(
                    f"{kind}/{store_name}", seconds, timed.seconds, len(texts), store.count()
                )
                result["batch_size"] = store.batch_size
                report["ours"].append(result)
            inner.close()
        if not args.no_peer:
            report["peer"] = run_peer(str(url), texts, metas, show)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
