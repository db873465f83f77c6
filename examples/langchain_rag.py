"""Retrieval with LangChain and jina-embeddings-v3 over an InMemoryVectorStore.

Run offline against the tiny conformance model:

    python examples/langchain_rag.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set) / a self-hosted server (``--provider http://...``).
The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default.
"""

from __future__ import annotations

import argparse

from langchain_core.vectorstores import InMemoryVectorStore

from jv3_integrations import default_provider_spec
from jv3_integrations.langchain import JinaV3Embeddings

CORPUS = [
    "Berlin is the capital of Germany. It has about 3.8 million inhabitants.",
    "Tokyo is the capital of Japan. Its metropolitan area is the most populous in the world.",
    "Photosynthesis converts light into chemical energy. Plants store it as sugar.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None, help="'api', 'local:DIR' or a server URL")
    parser.add_argument("--query", default="How many people live in Berlin?")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka size")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    provider = args.provider or default_provider_spec()

    # Documents are embedded with retrieval.passage, the query with retrieval.query.
    embeddings = JinaV3Embeddings(provider=provider, dimensions=args.dimensions)
    store = InMemoryVectorStore(embeddings)
    store.add_texts(CORPUS)
    hits = store.similarity_search_with_score(args.query, k=args.top_k)

    print(f"query: {args.query}")
    for doc, score in hits:
        print(f"{score:.4f}  {doc.page_content!r}")


if __name__ == "__main__":
    main()
