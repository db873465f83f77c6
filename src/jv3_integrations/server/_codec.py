"""A request's body in, its answer's body out: decode, validate, count and render.

The body is decoded and validated by the pure request parser (``_request.py``), its texts
counted with the provider's tokenizer and checked against the model's maximum (or truncated),
and the computed vectors rendered in the encodings the request asked for. All of it is CPU
work the app runs on its own threads (:meth:`.ServerState.off_loop`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core._vecmath import truncate as matryoshka
from ..core._wire import encode_embedding
from ._request import EmbeddingsRequest, WireError, error_body, parse_embeddings_request
from ._state import ServerState


class Codec(ServerState):
    """The app's request decoding and answer rendering."""

    def parse(self, raw_body: bytes | bytearray, rid: str) -> EmbeddingsRequest:
        """Decode and validate the body (raises WireError)."""
        try:
            payload = json.loads(raw_body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise WireError(
                422,
                {
                    "detail": f"[RID: {rid}] Validation errors in 1 field",
                    "errors": [
                        {
                            "field": "body",
                            "message": f"JSON decode error: {str(exc)[:200]}",
                            "type": "json_invalid",
                            "input": None,
                        }
                    ],
                    "request_id": rid,
                },
            ) from None
        return parse_embeddings_request(
            payload,
            max_dimensions=self.max_dimensions,
            model_names=self.model_names,
            request_id=rid,
        )

    def count(self, texts: list[str], task: Any, late_chunking: bool) -> list[int]:
        """The provider's token counts of a request's texts (its one counter)."""
        return self.provider.count_tokens(texts, task=task, late_chunking=late_chunking).counts

    def check_lengths(
        self,
        req: EmbeddingsRequest,
        counts: list[int],
        rid: str,
        counted: Sequence[str] | None = None,
    ) -> list[int]:
        """Token counts as billed; raises WireError 400 for inputs over the limit.

        ``counted``: the part of each input that was counted (counting stops once past the
        limit), so a count over the limit may be that of a head of the input only.
        """
        limit = self.max_tokens
        counted = req.texts if counted is None else counted
        cut = [len(a) < len(b) for a, b in zip(counted, req.texts, strict=True)]
        at_least = "at least " if any(cut) or 0 in counts else ""
        if req.late_chunking:
            total = sum(counts)
            if total > limit:
                raise WireError(
                    400,
                    error_body(
                        f"late_chunking input has {at_least}{total} tokens in total, more than the "
                        f"maximum of {limit} for one late-chunking request. Send fewer or "
                        "shorter inputs.",
                        "INPUT_TOO_LONG",
                        rid,
                    ),
                )
            return counts
        if not req.truncate:
            for i, c in enumerate(counts):
                if c > limit:
                    raise WireError(
                        400,
                        error_body(
                            f"input[{i}] has {c} tokens"
                            + (f" in its first {len(counted[i])} characters" if cut[i] else "")
                            + ", more than the model's "
                            f'maximum of {limit}. Shorten it or send "truncate": true.',
                            "INPUT_TOO_LONG",
                            rid,
                        ),
                    )
        return [min(c, limit) for c in counts]

    def render(self, req: EmbeddingsRequest, raw: npt.NDArray[np.float32], tokens: int) -> bytes:
        dims = req.dimensions or raw.shape[1]
        vectors = matryoshka(raw, dims, normalize=req.normalized)
        data = []
        for i, vec in enumerate(vectors):
            if req.multi_type:
                value: Any = {t: encode_embedding(vec, t) for t in req.embedding_types}
            else:
                value = encode_embedding(vec, req.embedding_types[0])
            data.append({"object": "embedding", "index": i, "embedding": value})
        body = {
            "model": req.model,
            "object": "list",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "data": data,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
