"""How ``jv3`` prints: ranked hits with the chunk text trimmed around the query, highlighted."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["DisplayHit", "format_hits", "highlight", "query_terms", "trim", "use_color"]

_BOLD = "\x1b[1;33m"
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class DisplayHit:
    """One search result as the CLI shows it."""

    score: float
    file: str
    text: str
    start: int | None = None
    end: int | None = None
    id: str | None = None

    def to_json(self, rank: int) -> dict[str, Any]:
        return {
            "rank": rank,
            "score": self.score,
            "file": self.file,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "id": self.id,
        }


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def query_terms(query: str) -> list[str]:
    """Words of the query worth highlighting (case-folded; CJK runs split into bigrams)."""
    terms: set[str] = set()
    for match in _WORD.finditer(query):
        word = match.group(0)
        if re.fullmatch(rf"[{_CJK}]+", word):
            if len(word) == 1:
                terms.add(word)
            terms.update(word[i : i + 2] for i in range(len(word) - 1))
        elif len(word) >= 3:
            terms.add(word.casefold())
    return sorted(terms, key=len, reverse=True)


def _term_pattern(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    return re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)


def trim(text: str, terms: list[str], width: int = 240) -> str:
    """Cut ``text`` to about ``width`` characters around the first query term (``…`` marks cuts)."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    pattern = _term_pattern(terms)
    match = pattern.search(flat) if pattern else None
    center = match.start() if match else 0
    start = max(0, min(center - width // 3, len(flat) - width))
    if start > 0:
        space = flat.find(" ", start, start + 20)
        start = space + 1 if space != -1 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.rfind(" ", end - 20, end)
        end = space if space > start else end
    return ("…" if start > 0 else "") + flat[start:end] + ("…" if end < len(flat) else "")


def highlight(text: str, terms: list[str], *, color: bool) -> str:
    """Mark query terms in ``text``: bold yellow on a terminal, unchanged otherwise."""
    pattern = _term_pattern(terms)
    if not color or pattern is None:
        return text
    return pattern.sub(lambda m: f"{_BOLD}{m.group(0)}{_RESET}", text)


def format_hits(hits: list[DisplayHit], query: str, *, color: bool, width: int = 240) -> str:
    """The human-readable result list: rank, score, file (and span), then the trimmed text."""
    if not hits:
        return "No results."
    terms = query_terms(query)
    lines: list[str] = []
    for rank, hit in enumerate(hits, 1):
        where = hit.file
        if hit.start is not None and hit.end is not None:
            where += f" [{hit.start}:{hit.end}]"
        head = f"{rank:>2}. {hit.score:.4f}  {where}"
        lines.append(f"{_DIM}{head}{_RESET}" if color else head)
        body = highlight(trim(hit.text, terms, width), terms, color=color)
        lines.append(f"    {body}")
    return "\n".join(lines)


def err(message: str) -> None:
    """One line on stderr, prefixed ``jv3:``."""
    print(f"jv3: {message}", file=sys.stderr)
