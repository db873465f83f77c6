"""Retrieval with LlamaIndex and jina-embeddings-v3: late-chunked ingestion, then query.

Run offline against the tiny conformance model:

    python examples/llama_index_rag.py --provider local:tests/data/tiny-v3

or with Jina's API (``JINA_API_KEY`` set) / a self-hosted server (``--provider http://...``).
The provider defaults to ``$JV3_PROVIDER``, then ``load_provider()``'s default.
"""

from __future__ import annotations

import argparse

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from jv3_integrations import default_provider_spec
from jv3_integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingEmbedder

CORPUS = [
    "Berlin is the capital and largest city of Germany, both by area and by population. "
    "It has about 3.8 million inhabitants within its city limits, which makes it the most "
    "populous city of the European Union. The city lies on the banks of the rivers Spree "
    "and Havel, and its history goes back to the thirteenth century.",
    "Tokyo is the capital of Japan and the seat of its government and of the emperor. Its "
    "metropolitan area, with more than 37 million people, is the most populous in the world. "
    "The city was known as Edo until 1868, when it became the imperial capital.",
    "Photosynthesis is the process by which plants, algae and some bacteria convert light "
    "energy into chemical energy. The energy is stored in sugars made from carbon dioxide "
    "and water, and oxygen is released as a by-product of the reaction.",
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

    # Late chunking: each sentence's vector is pooled from its whole document's pass.
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=64, chunk_overlap=0),
            JinaV3LateChunkingEmbedder(provider=provider, dimensions=args.dimensions),
        ]
    )
    nodes = pipeline.run(
        documents=[Document(text=t) for t in CORPUS], show_progress=not args.no_progress
    )
    # Nodes already carry embeddings, so the index stores them as they are; the embed model
    # is used for queries (task retrieval.query).
    embed_model = JinaV3Embedding(provider=provider, dimensions=args.dimensions)
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    hits = index.as_retriever(similarity_top_k=args.top_k).retrieve(args.query)

    print(f"query: {args.query}")
    for hit in hits:
        print(f"{hit.score:.4f}  {hit.node.get_content()!r}")


if __name__ == "__main__":
    main()
