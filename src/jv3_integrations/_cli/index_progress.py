"""``jv3 index``'s progress: fixed totals, per-file counts, time left, log-friendly lines.

The totals are known before the first file is embedded: the number of files to embed, and
their text size, from which the tokens are estimated (the tokenizer's bytes per token measured
on a small sample, :func:`bytes_per_token`; nothing is tokenized twice). Progress is measured
in text done: whole files as their batch is stored, and inside a batch from the tokens that
late chunking reports as each window finishes (so one long document moves too).

On a terminal it is one line rewritten in place; anywhere else (a log file, a pipe, CI) it is
a plain line every :data:`LOG_INTERVAL` seconds (``JV3_PROGRESS_INTERVAL`` to change), with
no carriage returns or escape codes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["BYTES_PER_TOKEN", "LOG_INTERVAL", "IndexProgress", "bytes_per_token", "estimate_tokens"]

#: Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL = 10.0
#: Seconds between two redraws of the terminal line.
TTY_INTERVAL = 0.1
#: The token estimate: about this many UTF-8 bytes per token (XLM-RoBERTa's tokenizer gives
#: 4 to 5 for English prose, about 3 for CJK text).
BYTES_PER_TOKEN = 4


#: The sample :func:`bytes_per_token` tokenizes: up to this many files, this many characters each.
SAMPLE_FILES = 32
SAMPLE_CHARS = 4000


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def estimate_tokens(text: str, bytes_per_token: float = BYTES_PER_TOKEN) -> int:
    """About how many tokens ``text`` has: its UTF-8 size / ``bytes_per_token``."""
    return max(1, round(_size(text) / bytes_per_token))


def bytes_per_token(provider: Any, texts: Sequence[str]) -> float:
    """UTF-8 bytes per token of this provider's tokenizer on a small sample of ``texts`` (the
    heads of up to :data:`SAMPLE_FILES` files spread over them), when it counts exactly;
    else :data:`BYTES_PER_TOKEN`. Never tokenizes the whole input."""
    if not texts:
        return BYTES_PER_TOKEN
    step = max(1, len(texts) // SAMPLE_FILES)
    sample = [t[:SAMPLE_CHARS] for t in texts[::step][:SAMPLE_FILES]]
    try:
        counted = provider.count_tokens(sample)
    except Exception:  # informative only: never fail indexing on it
        return BYTES_PER_TOKEN
    tokens = int(counted.total) - 2 * len(sample)  # without each text's <s> and </s>
    if not counted.exact or tokens <= 0:
        return BYTES_PER_TOKEN
    return max(0.5, float(sum(map(_size, sample)) / tokens))


def log_interval() -> float:
    """:data:`LOG_INTERVAL`, or ``JV3_PROGRESS_INTERVAL`` (seconds, >= 0) when set."""
    raw = os.environ.get("JV3_PROGRESS_INTERVAL", "").strip()
    if not raw:
        return LOG_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        return LOG_INTERVAL
    return value if value >= 0 else LOG_INTERVAL


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    return f"{n:,}"


class IndexProgress:
    """Progress of one ``jv3 index`` run; also the sink late chunking reports tokens to.

    ``start_batch(sizes)`` before a batch of files (their estimated tokens), ``update``/
    ``expect`` from inside it (tokens done/planned, see :mod:`..core._progress`),
    ``end_batch()`` once its files are stored and saved.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = len(sizes)
        self.total = sum(sizes)  # estimated tokens, fixed from the start
        self.enabled = enabled and self.files > 0
        self._stream = stream if stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._interval = (
            (TTY_INTERVAL if self._tty else log_interval()) if interval is None else interval
        )
        self._clock = clock
        self._t0 = clock()
        self._last: float | None = None
        self._shown: tuple[int, int] | None = None
        self._drawn = 0  # width of the terminal line drawn
        self.files_done = 0
        self.done = 0  # estimated tokens of the files stored
        self._batch: list[int] = []
        self._planned = 0  # tokens the batch's worker planned (expect)
        self._reported = 0  # and has done (update)
        if self.enabled:
            self._show(force=True)

    # -- the batch ------------------------------------------------------------------------

    def start_batch(self, sizes: Sequence[int]) -> None:
        self._batch = list(sizes)
        self._planned = self._reported = 0

    def expect(self, n: int) -> None:
        self._planned += n

    def update(self, n: int = 1) -> None:
        self._reported += n
        self._show()

    def end_batch(self) -> None:
        self.files_done += len(self._batch)
        self.done += sum(self._batch)
        self._batch = []
        self._planned = self._reported = 0
        self._show()

    # -- what is shown ----------------------------------------------------------------------

    def position(self) -> tuple[int, int]:
        """(files done, estimated tokens done), counting the files inside the current batch
        whose share of its reported tokens is complete."""
        if not self._batch or not self._planned:
            return self.files_done, self.done
        part = min(1.0, self._reported / self._planned)
        batch_total = sum(self._batch)
        inside = part * batch_total
        files, acc = 0, 0
        for size in self._batch:
            if acc + size > inside + 1e-9:
                break
            acc += size
            files += 1
        files = min(files, len(self._batch) - 1)  # the last one is done when it is stored
        return self.files_done + files, self.done + int(inside)

    def line(self) -> str:
        files, done = self.position()
        pct = 100.0 * done / self.total if self.total else 100.0
        elapsed = self._clock() - self._t0
        text = (
            f"Embedding {files}/{self.files} files, {pct:.0f}% of ~{_count(self.total)} tokens, "
            f"{_duration(elapsed)}"
        )
        if done and done < self.total:
            text += f", about {_duration(elapsed * (self.total - done) / done)} left"
        return text

    def _show(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        pos = self.position()
        if not force:
            if pos == self._shown:
                return
            if self._last is not None and now - self._last < self._interval:
                return
        self._last, self._shown = now, pos
        text = self.line()
        if self._tty:
            pad = " " * max(0, self._drawn - len(text))
            self._stream.write(f"\r{text}{pad}")
            self._drawn = len(text)
        else:
            self._stream.write(f"jv3: {text}\n")
        self._stream.flush()

    def close(self) -> None:
        """Clear the terminal line (the summary follows); in a log, the last state if unsaid."""
        if not self.enabled:
            return
        if self._tty:
            if self._drawn:
                self._stream.write("\r" + " " * self._drawn + "\r")
                self._stream.flush()
        elif self.position() != self._shown:
            self._show(force=True)
