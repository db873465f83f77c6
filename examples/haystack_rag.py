"""Retrieval with Haystack and jina-embeddings-v3: index with late chunking, then query.

Run offline against the tiny conformance model:

    python examples/haystack_rag.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set) / a self-hosted server (``--provider http://...``).
The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default.
"""

from __future__ import annotations

import argparse

from haystack import Document, Pipeline
from haystack.components.preprocessors import DocumentSplitter
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.document_stores.in_memory import InMemoryDocumentStore

from haystack_integrations.components.embedders.jina_v3 import (
    JinaV3DocumentEmbedder,
    JinaV3TextEmbedder,
)
from jv3_integrations import default_provider_spec

CORPUS = [
    "Berlin is the capital of Germany. It has about 3.8 million inhabitants. "
    "The city lies on the river Spree.",
    "Tokyo is the capital of Japan. Its metropolitan area is the most populous in the world.",
    "Photosynthesis converts light into chemical energy. Plants store it as sugar.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None, help="'api', 'local:DIR' or a server URL")
    parser.add_argument("--query", default="How many people live in Berlin?")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka size")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args()
    provider = args.provider or default_provider_spec()

    store = InMemoryDocumentStore()
    indexing = Pipeline()
    indexing.add_component(
        "splitter", DocumentSplitter(split_by="period", split_length=1, split_overlap=0)
    )
    indexing.add_component(
        "embedder",
        JinaV3DocumentEmbedder(
            provider=provider,
            dimensions=args.dimensions,
            late_chunking=True,  # a sentence's vector sees its whole source document
            progress_bar=not args.no_progress,
        ),
    )
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("splitter.documents", "embedder.documents")
    indexing.connect("embedder.documents", "writer.documents")
    indexing.run({"splitter": {"documents": [Document(content=t) for t in CORPUS]}})

    querying = Pipeline()
    querying.add_component(
        "embedder", JinaV3TextEmbedder(provider=provider, dimensions=args.dimensions)
    )
    querying.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=args.top_k))
    querying.connect("embedder.embedding", "retriever.query_embedding")
    result = querying.run({"embedder": {"text": args.query}})

    print(f"query: {args.query}")
    for doc in result["retriever"]["documents"]:
        print(f"{doc.score:.4f}  {doc.content!r}")


if __name__ == "__main__":
    main()
