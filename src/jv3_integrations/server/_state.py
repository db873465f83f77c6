"""What every part of the app shares: one app's state and its answer helpers.

The state of one app (the provider, its batcher, the key and the limits), the JSON response
helper, the app's 2 CPU threads, the rate headers of every answer and the 429 of a body that
does not fit the server-wide body budget. The parts of the app (``_body.py``, ``_quick.py``,
``_codec.py``, ``_app.py``) each add their methods to this state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.responses import Response

from ..core._provider import BaseProvider
from ._batcher import DynamicBatcher
from ._limits import BodyBudget
from ._request import error_body

# Admission estimate before parsing: one token per this many body bytes. Real text (any script,
# JSON-escaped) has far fewer bytes per token, so the estimate never exceeds the real count.
BODY_BYTES_PER_TOKEN = 16

_T = TypeVar("_T")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # "replace": an error body may echo a lone surrogate from the request (not UTF-8 encodable)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    content = text.encode("utf-8", "replace")
    return Response(content, status_code=status, headers=headers, media_type="application/json")


class ServerState:
    """State of one app: the provider, its batcher, the key and the limits."""

    def __init__(
        self,
        provider: BaseProvider,
        *,
        api_key: str | None,
        model_names: Sequence[str],
        batcher: DynamicBatcher,
        max_body_bytes: int,
        body_budget: BodyBudget,
        body_timeout: float,
        request_timeout: float,
        owns_provider: bool,
    ) -> None:
        self.provider = provider
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.model_names = tuple(model_names)
        self.batcher = batcher
        self.max_body_bytes = max_body_bytes
        self.budget = body_budget
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout
        self.cpu: ThreadPoolExecutor | None = None
        self.owns_provider = owns_provider
        self.arriving = 0  # let through by the quick answerer, not yet taken up by the app
        self.max_dimensions = provider.max_dimensions
        self.max_tokens = provider.max_tokens

    # -- helpers ----------------------------------------------------------------------------

    async def off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run CPU-bound Python work (parsing, counting, rendering) on the app's 2 threads.

        Not the default executor's many threads: each of them competes with the event loop
        for the GIL, and under overload the loop must keep answering 429s and /health fast.
        """
        if self.cpu is None:
            self.cpu = ThreadPoolExecutor(2, thread_name_prefix="jv3-cpu")
        return await asyncio.get_running_loop().run_in_executor(self.cpu, fn, *args)

    def rate_headers(self, rid: str) -> dict[str, str]:
        return {
            "X-Request-Id": rid,
            "X-RateLimit-Remaining-Requests": str(self.batcher.remaining_requests),
            "X-RateLimit-Remaining-Tokens": str(self.batcher.remaining_tokens),
        }

    def over_budget(self, rid: str, size: int) -> Response:
        budget = self.budget
        return _json(
            error_body(
                f"Too many request bodies are being received: this {size}-byte body does not "
                f"fit the server's memory budget of {budget.total} bytes for bodies "
                f"({budget.used} in use). Retry later or send smaller requests.",
                "RATE_MEMORY_LIMIT_EXCEEDED",
                rid,
            ),
            429,
            {**self.rate_headers(rid), "Retry-After": "1"},
        )
