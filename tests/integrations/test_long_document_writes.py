"""One long document is written in upserts of ``batch_size`` chunks (issue 26 item 9).

Before, a document's chunks were upserted in one call after it was embedded: for a 10 MB file
(about 10,000 chunks) the host client's request objects for all of them existed at once, at
the very end of the run (Qdrant local mode: about +100 MB at 10,000 chunks of 128 dimensions,
+30 MB in upserts of 256). Memory is bounded by ``batch_size``, not by the document's length.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jv3_integrations import EmbeddingProvider, SentenceChunker

DOC = " ".join(f"Sentence number {i} talks about the river Spree." for i in range(300))


def _sizes_recorded(cls: type) -> type:
    class Recording(cls):  # type: ignore[misc, valid-type]
        sizes: list[int]

        def _upsert(self, records: list[Any], full: Any, small: Any) -> Any:
            self.sizes.append(len(records))
            return super()._upsert(records, full, small)

    return Recording


def test_a_long_document_is_upserted_in_batches(local_provider: EmbeddingProvider) -> None:
    from qdrant_client import QdrantClient

    from jv3_integrations.qdrant import QdrantStore

    store = _sizes_recorded(QdrantStore)(
        local_provider, client=QdrantClient(":memory:"), dimensions=32, batch_size=16
    )
    store.sizes = []
    ids = store.add_documents([DOC], ids=["doc"], chunker=SentenceChunker(max_chars=200))[0]
    assert len(ids) > 50  # one document, many chunks
    assert max(store.sizes) <= 16 and sum(store.sizes) == len(ids)
    assert store.count() == len(ids)
    # every chunk is stored once, in document order, with its own vector
    hits = store.search("river Spree", k=len(ids))
    assert sorted(h.metadata["chunk_index"] for h in hits) == list(range(len(ids)))
    # re-adding a shorter version leaves no stale chunk from the slices
    short = store.add_documents(
        [DOC[: len(DOC) // 3]], ids=["doc"], chunker=SentenceChunker(max_chars=200)
    )[0]
    assert store.count() == len(short)


def test_async_too(local_provider: EmbeddingProvider) -> None:
    from qdrant_client import AsyncQdrantClient

    from jv3_integrations.qdrant import AsyncQdrantStore

    async def main() -> None:
        client = AsyncQdrantClient(":memory:")
        cls = _sizes_recorded(AsyncQdrantStore)

        class Async(cls):  # type: ignore[misc, valid-type]
            async def _upsert(self, records: list[Any], full: Any, small: Any) -> None:
                self.sizes.append(len(records))
                await AsyncQdrantStore._upsert(self, records, full, small)

        store = Async(local_provider, client=client, dimensions=32, batch_size=16)
        store.sizes = []
        (ids,) = await store.add_documents(
            [DOC], ids=["doc"], chunker=SentenceChunker(max_chars=200)
        )
        assert max(store.sizes) <= 16 and sum(store.sizes) == len(ids)
        assert await store.count() == len(ids)
        await client.close()

    asyncio.run(main())
