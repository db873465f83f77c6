"""Placeholder: chunkers and late-chunking pipeline are being built (issue 5)."""

from __future__ import annotations

from typing import Any

Chunk = Chunker = EmbeddedChunk = SentenceChunker = TokenChunker = BoundaryChunker = object


def embed_chunks(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def embed_chunks_many(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


async def aembed_chunks(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
