"""Quickstart: jina-embeddings-v3 search on Milvus Lite (a local file, no server).

Run offline against the tiny conformance model:

    python examples/milvus_quickstart.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set) / a self-hosted server (``--provider http://...``).
The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default. ``--uri`` is a
Milvus Lite path (kept after the run) or a Milvus server URI; without it the store lives in a
temporary folder that is removed at the end, so the script leaves nothing behind.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from jv3_integrations import default_provider_spec
from jv3_integrations.milvus import JinaV3EmbeddingFunction, MilvusStore

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
    parser.add_argument(
        "--uri", default=None, help="Milvus Lite path or server URI (default: a temporary one)"
    )
    parser.add_argument("--query", default="How many people live in Berlin?")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka size")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    if args.uri is not None:
        run(args, args.uri)
        return
    with tempfile.TemporaryDirectory(prefix="jv3-milvus-quickstart-") as tmp:
        run(args, str(Path(tmp) / "jv3.db"))


def run(args: argparse.Namespace, uri: str) -> None:
    provider = args.provider or default_provider_spec()

    # The embedding function pymilvus.model users know: dim comes from configuration.
    ef = JinaV3EmbeddingFunction(provider, dimensions=args.dimensions)
    print(f"embedding function: dim={ef.dim}")

    store = MilvusStore(ef.provider, uri=uri, collection="quickstart", dimensions=ef.dim)
    store.add_texts([t for t, _ in CORPUS], metadatas=[{"lang": lang} for _, lang in CORPUS])
    print(f"query: {args.query}  ({store.count()} passages)")
    for hit in store.search(args.query, k=args.top_k):
        print(f"{hit.score:.4f}  {hit.text!r}")
    print("only German (a Milvus expression):")
    for hit in store.search(args.query, k=args.top_k, filter='metadata["lang"] == "de"'):
        print(f"{hit.score:.4f}  {hit.text!r}")
    store.client.close()


if __name__ == "__main__":
    main()
