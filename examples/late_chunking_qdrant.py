"""Late chunking into Qdrant: each chunk's vector sees its whole document.

A multi-paragraph article is cut into sentences; with late chunking the model reads the whole
article once and each sentence's vector is pooled from its span in context, so a sentence that
says only "It has ..." still knows it is about Berlin. The same article is also indexed with
independent chunk embeddings for comparison.

Run offline against the tiny conformance model (its vectors are random, so the ranking is
meaningless, but every step runs):

    python examples/late_chunking_qdrant.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set) / a self-hosted server (``--provider http://...``).
The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default.
"""

from __future__ import annotations

import argparse

from qdrant_client import QdrantClient

from jv3_integrations import SentenceChunker, default_provider_spec, load_provider
from jv3_integrations.qdrant import QdrantStore

ARTICLE = """Berlin is the capital and largest city of Germany. It lies on the banks of the Spree.

With about 3.8 million inhabitants, it is the most populous city of the European Union. Its \
economy is based on high-tech firms and the service sector.

The city was divided by a wall from 1961 to 1989. Today it is known for its museums, its \
festivals and its nightlife."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None, help="'api', 'local:DIR' or a server URL")
    parser.add_argument("--query", default="How many people live in Berlin?")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka size")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    provider = load_provider(args.provider or default_provider_spec())
    client = QdrantClient(":memory:")

    for late in (True, False):
        store = QdrantStore(
            provider,
            client=client,
            collection="late" if late else "independent",
            dimensions=args.dimensions,
        )
        ids = store.add_documents(
            [ARTICLE],
            ids=["berlin-article"],
            metadatas=[{"source": "example"}],
            late_chunking=late,
            chunker=SentenceChunker(),
        )
        print(f"{'late chunking' if late else 'independent chunks'}: {len(ids[0])} chunks")
        for hit in store.search(args.query, k=args.top_k):
            m = hit.metadata
            print(
                f"  {hit.score:.4f}  chunk {m['chunk_index']} "
                f"[{m['start']}:{m['end']}] {hit.text.strip()!r}"
            )
    # Re-adding the document replaces its chunks (a shorter version leaves none behind).
    store.add_documents([ARTICLE.split("\n\n")[0]], ids=["berlin-article"], late_chunking=False)
    print(f"after re-adding a shorter version: {store.count()} chunks")


if __name__ == "__main__":
    main()
