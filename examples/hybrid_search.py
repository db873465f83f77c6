"""Hybrid search: dense vectors and BM25 keywords on the same late-chunked chunks.

Dense vectors find passages by meaning but can miss exact identifiers such as the error code
``ERR-4471``; keyword search finds those. With ``hybrid=True`` every point holds both: its
late-chunked vector and the keyword terms of its own chunk text (Qdrant: sparse vectors from
the model's tokenizer with Qdrant's IDF; Milvus: its built-in BM25 function), and
``search(mode="hybrid")`` fuses the two rankings inside the store (reciprocal rank fusion).

Run offline against the tiny conformance model (its vectors are random, so only the keyword
side is meaningful there, but every step runs):

    python examples/hybrid_search.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set; hybrid then needs the model's ``tokenizer.json``
locally: ``JV3_TOKENIZER=PATH``) or a self-hosted server (``--provider http://...``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from qdrant_client import QdrantClient

from jv3_integrations import default_provider_spec, load_provider
from jv3_integrations.milvus import MilvusStore
from jv3_integrations.qdrant import QdrantStore

DOCUMENTS = {
    "storage-runbook": (
        "Disk alerts. When a volume fills up, the node stops accepting writes. Free space by "
        "rotating the logs, then restart the agent.\n\nError codes. ERR-4471 means the "
        "write-ahead log is corrupt: stop the node and restore the last snapshot."
    ),
    "network-runbook": (
        "Timeouts. Slow answers usually come from a saturated link. Check the switch "
        "counters first.\n\nDNS. If names do not resolve, flush the resolver cache."
    ),
    "release-notes": (
        "Version 2.3 speeds up snapshots and adds compression. Logs now rotate daily by "
        "default. The agent restarts itself after an upgrade."
    ),
}


def show(title: str, hits: list) -> None:
    print(f"  {title}:")
    for h in hits:
        print(f"    {h.score:8.4f}  [{h.metadata['doc_id']}] {h.text[:70]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None, help="'api', 'local:DIR' or a server URL")
    parser.add_argument("--query", default="what does ERR-4471 mean")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    provider = load_provider(args.provider or default_provider_spec())

    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            "Qdrant (local mode)": QdrantStore(
                provider, client=QdrantClient(":memory:"), hybrid=True
            ),
            "Milvus Lite": MilvusStore(provider, uri=str(Path(tmp) / "hybrid.db"), hybrid=True),
        }
        for label, store in stores.items():
            # late chunking (the default): each chunk's vector sees its whole document, and the
            # same point carries that chunk's own words for the keyword side
            store.add_documents(list(DOCUMENTS.values()), ids=list(DOCUMENTS))
            print(f"{label}, query {args.query!r}:")
            for mode in ("dense", "keyword", "hybrid"):
                show(mode, store.search(args.query, k=args.top_k, mode=mode))
            top = store.search(args.query, k=1, mode="keyword")[0]
            if "ERR-4471" not in top.text:
                raise SystemExit(f"{label}: keyword search missed the chunk with ERR-4471")
            # filters apply to both sides of a hybrid search
            only = store.search(args.query, k=args.top_k, filter={"doc_id": "release-notes"})
            show("hybrid, filter doc_id=release-notes", only)
            store.client.close()


if __name__ == "__main__":
    main()
