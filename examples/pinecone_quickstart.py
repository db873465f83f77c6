"""Quickstart: jina-embeddings-v3 search on a Pinecone serverless index.

Needs a Pinecone project: ``PINECONE_API_KEY`` set (and, for a non-default control plane,
``--host``). To try it offline, ``--loopback`` runs the test suite's loopback Pinecone (from a
source checkout) and the tiny conformance model works as provider:

    python examples/pinecone_quickstart.py --loopback --provider local:tests/data/tiny-v3

The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from pinecone import Pinecone

from jv3_integrations import default_provider_spec
from jv3_integrations.pinecone import PineconeStore

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
    parser.add_argument("--index", default="jv3-quickstart", help="Pinecone index name")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--host", default=None, help="control plane URL (default: Pinecone's)")
    parser.add_argument("--loopback", action="store_true", help="use the test loopback Pinecone")
    parser.add_argument("--query", default="How many people live in Berlin?")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka size")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        if args.loopback:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.support.pinecone_server import running_pinecone

            srv = stack.enter_context(running_pinecone(validate=False))
            pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
        else:
            key = os.environ.get("PINECONE_API_KEY", "").strip()
            if not key:
                sys.exit(
                    "pinecone_quickstart: set PINECONE_API_KEY to your Pinecone key, or run "
                    "with --loopback to try it offline against the test server"
                )
            pc = Pinecone(api_key=key, host=args.host)
        store = PineconeStore(
            args.provider or default_provider_spec(),
            client=pc,
            collection=args.index,
            namespace=args.namespace,
            dimensions=args.dimensions,
        )
        # Creates the serverless index (cosine, the right dimension) or verifies it.
        store.add_texts([t for t, _ in CORPUS], metadatas=[{"lang": lang} for _, lang in CORPUS])
        print(f"query: {args.query}  ({store.count()} passages)")
        for hit in store.search(args.query, k=args.top_k):
            print(f"{hit.score:.4f}  {hit.text!r}")
        print("only German (a Pinecone filter):")
        for hit in store.search(args.query, k=args.top_k, filter={"lang": {"$eq": "de"}}):
            print(f"{hit.score:.4f}  {hit.text!r}")


if __name__ == "__main__":
    main()
