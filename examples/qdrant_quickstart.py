"""Quickstart: jina-embeddings-v3 search on Qdrant (in-memory by default).

Run offline against the tiny conformance model:

    python examples/qdrant_quickstart.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set) / a self-hosted server (``--provider http://...``).
The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default. ``--url``
points at a Qdrant server instead of the in-memory local mode.
"""

from __future__ import annotations

import argparse

from qdrant_client import QdrantClient

from jv3_integrations import default_provider_spec
from jv3_integrations.qdrant import QdrantStore

CORPUS = [
    ("Berlin is the capital of Germany. It has about 3.8 million inhabitants.", "de"),
    (
        "Tokyo is the capital of Japan. Its metropolitan area is the most populous in the world.",
        "ja",
    ),
    ("Die Zugspitze ist mit 2962 Metern der höchste Berg Deutschlands.", "de"),
    ("Photosynthesis converts light into chemical energy. Plants store it as sugar.", "en"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None, help="'api', 'local:DIR' or a server URL")
    parser.add_argument("--url", default=None, help="Qdrant server URL (default: in-memory)")
    parser.add_argument("--query", default="How many people live in Berlin?")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka size")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    client = QdrantClient(url=args.url) if args.url else QdrantClient(":memory:")
    store = QdrantStore(
        args.provider or default_provider_spec(),
        client=client,
        collection="quickstart",
        dimensions=args.dimensions,
    )
    # Passages are embedded with retrieval.passage; ids are deterministic, so re-running
    # this script against a server overwrites instead of duplicating.
    store.add_texts([t for t, _ in CORPUS], metadatas=[{"lang": lang} for _, lang in CORPUS])
    print(f"query: {args.query}  ({store.count()} passages)")
    for hit in store.search(args.query, k=args.top_k):
        print(f"{hit.score:.4f}  {hit.text!r}")
    print("only German:")
    for hit in store.search(args.query, k=args.top_k, filter={"lang": "de"}):
        print(f"{hit.score:.4f}  {hit.text!r}")


if __name__ == "__main__":
    main()
