"""``JinaAPIProvider``'s request planning (pure): what the model can do, then the batches.

A call's texts are checked against the model's facts (tasks, late chunking, ``normalized``)
and cut into requests by items and by estimated tokens, within what the key's learned budget
allows now; a late-chunking document is one request. A batch planned before the budget shrank
is cut again before it is sent (:meth:`RequestPlanner.split`). No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ._api_options import DEFAULT_MAX_BATCH_TOKENS
from ._budget import RateBudget
from ._errors import InputError
from ._provider import EmbedRequest
from ._types import ModelInfo, Task, TaskLike
from ._wire import MAX_INPUTS, estimate_tokens

__all__ = ["RequestPlanner"]

_MIN_SPLIT: Final = 64


@dataclass(frozen=True)
class _Batch:
    """One planned request: a contiguous slice of the call's texts."""

    start: int
    stop: int
    tokens: int
    truncate: bool


class RequestPlanner:
    """Plans the requests of one provider's calls (pure; reads the shared :class:`RateBudget`).

    Args:
        model: The model name sent on the wire.
        info: The model's facts.
        budget: The key's limits as learned so far (shared with the transport).
        max_batch_items: Texts per request.
        max_batch_tokens: Estimated tokens per request as given (``None``: the default,
            within the learned per-request budget).
        truncate: Whether the server clips texts over the model's context length.
    """

    def __init__(
        self,
        *,
        model: str,
        info: ModelInfo,
        budget: RateBudget,
        max_batch_items: int,
        max_batch_tokens: int | None,
        truncate: bool,
    ) -> None:
        self._model = model
        self._info = info
        self._budget = budget
        self._max_batch_items = max_batch_items
        self._batch_tokens_option = max_batch_tokens
        self._max_batch_tokens = max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS
        self._truncate = truncate

    # -- what the model can do (pure) -------------------------------------------------------

    def model_task(self, task: TaskLike) -> TaskLike:
        """``task`` as a :class:`Task`, taking this model's own names (v5's ``clustering``)."""
        if isinstance(task, str) and not isinstance(task, Task):
            for member, wire in self._info.wire_task_names:
                if task == wire:
                    return member
            if task in self._info.api_only_tasks:
                raise InputError(
                    f"{self._model}'s task {task!r} is offered by Jina's API but not by this "
                    "client yet; use one of "
                    + ", ".join(repr(self._info.wire_task(t)) for t in self._info.tasks)
                )
        return task

    def _check_model(self, request: EmbedRequest) -> None:
        """Refuse, before any request, what the model cannot do."""
        info = self._info
        if request.task is not None and request.task not in info.tasks:
            names = ", ".join(repr(info.wire_task(t)) for t in info.tasks)
            raise InputError(
                f"{info.name} has no task {request.task.value!r}; it takes {names} (or None)"
            )
        if request.late_chunking and not info.late_chunking:
            raise InputError(
                f"{info.name} does not offer late_chunking through Jina's API; embed without "
                "it, or use jina-embeddings-v3 or jina-embeddings-v4 for late chunking"
            )
        if not request.normalized and not info.normalized_option:
            raise InputError(
                f"{info.name} takes no normalized= option (its vectors always come back "
                "normalized); call without normalized=False"
            )

    # -- planning (pure) ----------------------------------------------------------------------

    def _token_cap(self) -> int:
        """Most estimated tokens per request now: the option, within what was learned."""
        if self._batch_tokens_option is not None:
            whole = self._budget.window_cap()
            return self._max_batch_tokens if whole is None else min(self._max_batch_tokens, whole)
        learned = self._budget.request_cap()
        return self._max_batch_tokens if learned is None else min(self._max_batch_tokens, learned)

    def _estimates(self, request: EmbedRequest, start: int, stop: int) -> list[int]:
        out = [estimate_tokens(t) for t in request.texts[start:stop]]
        if request.task is not None and start == 0 and stop > 0:
            out[0] = estimate_tokens(request.texts[0], task=request.task)
        return out

    def plan(self, request: EmbedRequest) -> list[_Batch]:
        self._check_model(request)
        texts = request.texts
        max_tokens = self._info.max_tokens
        estimates = self._estimates(request, 0, len(texts))
        if request.late_chunking:
            total = sum(estimates) - 2 * (len(texts) - 1)
            if len(texts) > MAX_INPUTS:
                raise InputError(
                    f"late_chunking sends one document in one request, but it has {len(texts)} "
                    f"chunks and the API takes at most {MAX_INPUTS}; use fewer, larger chunks, "
                    "or LocalProvider for long late chunking"
                )
            if total > max_tokens:
                raise InputError(
                    f"late_chunking sends all {len(texts)} texts as one document in ONE request, "
                    f"but they come to about {total} tokens (conservative estimate) and the API "
                    f"takes at most {max_tokens} per late-chunking request; split the document "
                    "into smaller documents, or use LocalProvider, whose long late chunking "
                    "handles documents of any length"
                )
            self._check_fits(total, "this late-chunking document (sent as one request)")
            return [_Batch(0, len(texts), total, False)]
        n = len(texts)
        workers = self._budget.slots.limit
        per_round = workers * self._max_batch_items
        rounds = math.ceil(n / per_round)
        target = math.ceil(n / (workers * rounds))
        target = min(self._max_batch_items, max(_MIN_SPLIT, target))
        target = math.ceil(n / math.ceil(n / target))
        return self._pack(estimates, 0, target, self._token_cap())

    def _pack(self, estimates: list[int], offset: int, items: int, cap: int) -> list[_Batch]:
        """Consecutive batches of at most ``items`` texts and ``cap`` estimated tokens."""
        batches: list[_Batch] = []
        start = tokens = 0
        long_text = False
        for i, full in enumerate(estimates):
            self._check_fits(full, f"text {offset + i}")
            if i > start and (i - start >= items or tokens + full > cap):
                batches.append(_Batch(offset + start, offset + i, tokens, long_text))
                start, tokens, long_text = i, 0, False
            tokens += full
            long_text = long_text or (self._truncate and full > self._info.max_tokens)
        batches.append(_Batch(offset + start, offset + len(estimates), tokens, long_text))
        return batches

    def _check_fits(self, estimate: int, what: str) -> None:
        """Refuse what can never pass the key's learned per-minute token budget."""
        whole = self._budget.window_cap()
        if whole is None or estimate <= whole:
            return
        if self._truncate and what.startswith("text ") and whole >= self._info.max_tokens:
            return  # the server clips it to MAX_TOKENS, which fits
        limits = self._budget.limits()
        raise InputError(
            f"{what} has about {estimate:,} tokens (conservative estimate), more than this "
            f"API key allows per {limits.window_s:g} s ({limits.tokens_per_window:,} tokens, "
            "as the server said), so no retry could pass: split it into smaller texts, or "
            "use a key with a larger token budget"
        )

    def split(self, request: EmbedRequest, batch: _Batch) -> list[_Batch] | None:
        """``batch`` cut to what the learned budget allows now (``None``: it fits)."""
        cap = self._token_cap()
        if batch.tokens <= cap or request.late_chunking:
            if request.late_chunking:
                self._check_fits(batch.tokens, "this late-chunking document (one request)")
            return None
        estimates = self._estimates(request, batch.start, batch.stop)
        pieces = self._pack(estimates, batch.start, self._max_batch_items, cap)
        return pieces if len(pieces) > 1 else None
