"""Token counting for the server with bounded memory: long inputs are counted in sections.

Tokenizing a whole input costs about 240 bytes of RSS per character, and a request body may
hold 64 MB of text, so the server never tokenizes more of an input than it needs to decide:
texts are counted in groups of at most :data:`SECTION_CHARS` characters, and a longer text is
counted section by section (cut just before a run of whitespace, where an XLM-R tokenizer
splits words anyway, so the section counts add up to the whole text's count) and only until
its count passes the limit. A text already over the limit by its first sections is rejected
(or, with ``truncate``, clipped) without tokenizing the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core._tokenize import sections
from ..core._types import Task

__all__ = ["SECTION_CHARS", "Counted", "count_capped", "sections"]

#: Most characters given to the tokenizer in one call.
SECTION_CHARS = 1 << 15

Count = Callable[[list[str], Task | None, bool], list[int]]


@dataclass
class Counted:
    """Token counts of a request's inputs, each exact or a lower bound past ``limit``.

    Attributes:
        counts: Per input (per chunk with late chunking), ``<s>``/``</s>`` and instruction
            included.
        over: True when counting stopped early because the total (late chunking) or an input
            went past ``limit``; the counts are then lower bounds that already exceed it.
        texts: The inputs to embed: an input counted only in part is cut after the sections
            that were counted (they hold more tokens than the limit, so truncation keeps the
            same tokens).
    """

    counts: list[int]
    over: bool
    texts: list[str]


def count_capped(
    count: Count, texts: list[str], task: Task | None, late: bool, limit: int
) -> Counted:
    """Count ``texts`` as the provider does, without tokenizing past what decides ``limit``.

    Args:
        count: The provider's counter ``(texts, task, late_chunking) -> counts``.
        texts: The request's inputs.
        task: The task whose instruction the first text (late chunking) or every text carries.
        late: Late chunking: one sequence over all inputs; the limit applies to the total.
        limit: The token limit (per input, or for the total with late chunking).
    """
    if sum(map(len, texts)) <= SECTION_CHARS:  # small enough: one call, as always
        counts = count(texts, task, late)
        over = sum(counts) > limit if late else any(c > limit for c in counts)
        return Counted(counts, over, list(texts))
    base = count([""], None, False)[0]  # <s> and </s>
    content: list[int] = []  # tokens of each text (instruction included), no special tokens
    cut = list(texts)
    total = 0  # late chunking: content tokens so far
    group: list[int] = []
    chars = 0

    def task_of(i: int) -> Task | None:
        return task if not late or i == 0 else None

    def flush() -> None:
        nonlocal total, chars
        if group:
            got = [c - base for c in count([texts[i] for i in group], task_of(group[0]), False)]
            content.extend(got)
            total += sum(got)
            group.clear()
            chars = 0

    for i, text in enumerate(texts):
        if len(text) <= SECTION_CHARS:
            if chars + len(text) > SECTION_CHARS or (late and i == 1):
                flush()  # (late chunking: the first text, with the instruction, alone)
            if late and total + base > limit:
                break
            group.append(i)
            chars += len(text)
            continue
        flush()
        if late and total + base > limit:
            break
        have, used = _count_sections(count, text, task_of(i), total if late else 0, base, limit)
        content.append(have)
        total += have
        if used < len(text):
            cut[i] = text[:used]
    flush()
    if late:
        return _late_counted(content, total, base, limit, len(texts), cut)
    counts = [c + base for c in content]
    return Counted(counts, any(c > limit for c in counts), cut)


def _count_sections(
    count: Count, text: str, task: Task | None, before: int, base: int, limit: int
) -> tuple[int, int]:
    """A long text's content tokens and the characters counted, section by section.

    It stops at the first section past ``limit`` (``before`` tokens already count against it),
    so a text far over the limit is never tokenized in full.
    """
    have = used = 0
    for k, piece in enumerate(sections(text)):
        have += count([piece], task if k == 0 else None, False)[0] - base
        used += len(piece)
        if before + have + base > limit:
            break
    return have, used


def _late_counted(
    content: list[int], total: int, base: int, limit: int, n: int, cut: list[str]
) -> Counted:
    """Late chunking's result: one sequence, the special tokens on its first and last input."""
    over = total + base > limit
    counts = content + [0] * (n - len(content))
    if counts and not over:
        counts[0] += 1  # <s>
        counts[-1] += 1  # </s>
    return Counted(counts, over, cut)
