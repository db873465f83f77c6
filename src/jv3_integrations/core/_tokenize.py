"""Tokenization for jina-embeddings-v3: instructions, truncation, late-chunking sequences.

Uses the ``tokenizers`` library on the checkpoint's ``tokenizer.json`` (imported lazily). The
conventions are those of the original model (``spec/MODEL.md``): ``<s> instruction+text </s>``,
truncation keeps the head and ``</s>``; late chunking concatenates the chunks' tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ModelLoadError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["SECTION_CHARS", "TextEncoder", "sections", "window_starts"]

#: Characters tokenized in one call when a long input is tokenized in sections (whole texts
#: per section), so no call holds per-token objects for more than about this much text.
SECTION_CHARS = 1 << 16


def _token_name(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    return raw if isinstance(raw, dict) else {}


def sections(text: str, size: int = 1 << 15) -> Iterator[str]:
    """Consecutive pieces of ``text`` of at most about ``size`` characters that tile it.

    A cut is made just before a whitespace character that follows a non-whitespace one (the
    last such place in the second half of the piece); a piece with none is cut at ``size``.
    """
    start, n = 0, len(text)
    while n - start > size:
        end = start + size
        cut = end
        while cut > start + size // 2 and not (text[cut].isspace() and not text[cut - 1].isspace()):
            cut -= 1
        if cut <= start + size // 2:
            cut = end
        yield text[start:cut]
        start = cut
    yield text[start:]


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of long-late-chunking windows: 0, W-O, 2(W-O), ... up to the end."""
    step = window - overlap
    starts = [0]
    while starts[-1] + window < length:
        starts.append(starts[-1] + step)
    return starts


class TextEncoder:
    """Turns texts into the model's token ids, exactly as the original model does.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (padding/truncation are switched off).
        bos_id / eos_id / pad_id: Special token ids, read from the tokenizer files.
        instructions: Task name -> instruction prefix (from config.json).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        instructions: Mapping[str, str],
    ) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.instructions = dict(instructions)

    @classmethod
    def from_files(
        cls,
        tokenizer_json: Path,
        *,
        tokenizer_config: Path | None,
        special_tokens_map: Path | None,
        instructions: Mapping[str, str],
    ) -> TextEncoder:
        """Load ``tokenizer.json`` and find ``<s>``, ``</s>``, ``<pad>`` from the token configs.

        Raises:
            ModelLoadError: unreadable tokenizer, or a special token it does not know.
        """
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise ModelLoadError(f"cannot load tokenizer {tokenizer_json}: {exc}") from exc
        names: dict[str, str] = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
        for source in (_read_json(tokenizer_config), _read_json(special_tokens_map)):
            for key in names:
                found = _token_name(source.get(key))
                if found:
                    names[key] = found
        ids: dict[str, int] = {}
        for key, name in names.items():
            token_id = tok.token_to_id(name)
            if token_id is None:
                raise ModelLoadError(f"tokenizer {tokenizer_json} has no {key} {name!r}")
            ids[key] = int(token_id)
        return cls(
            tok,
            bos_id=ids["bos_token"],
            eos_id=ids["eos_token"],
            pad_id=ids["pad_token"],
            instructions=instructions,
        )

    def instruction(self, task: str | None) -> str:
        """The instruction prefix of ``task`` (``""`` for None or a task without one)."""
        return "" if task is None else self.instructions.get(task, "")

    def _pieces(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def encode(self, texts: Sequence[str], task: str | None) -> list[list[int]]:
        """Full (untruncated) ids: ``<s>`` + tokens(instruction + text) + ``</s>``."""
        prefix = self.instruction(task)
        return [
            [self.bos_id, *ids, self.eos_id] for ids in self._pieces([prefix + t for t in texts])
        ]

    def sections(
        self, texts: Iterable[str], task: str | None = None, section_chars: int = SECTION_CHARS
    ) -> Iterator[list[list[int]]]:
        """Token ids (no special tokens) of consecutive groups of whole texts, in order.

        The first text carries the task instruction. Each group holds whole texts of about
        ``section_chars`` characters in all (at least one text), so the per-token objects of a
        long input never exist for more than one group at a time; the ids are those of
        :meth:`late_chunk` (every text is tokenized on its own either way).
        """
        prefix = self.instruction(task)
        group: list[str] = []
        size = 0
        for i, text in enumerate(texts):
            if i == 0:
                text = prefix + text
            if group and size + len(text) > section_chars:
                yield self._pieces(group)
                group, size = [], 0
            group.append(text)
            size += len(text)
        if group:
            yield self._pieces(group)

    def truncate(self, ids: list[int], max_length: int) -> list[int]:
        """Keep the first ``max_length - 1`` ids and end with ``</s>`` (unchanged if short)."""
        if len(ids) <= max_length:
            return ids
        return [*ids[: max_length - 1], self.eos_id]

    def late_chunk(
        self, chunks: Sequence[str], task: str | None
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """One document's ids and each chunk's ``[start, end)`` token span.

        ids = ``<s>`` + tokens(instruction + chunk 1) + tokens(chunk 2) ... + ``</s>``; the first
        span includes ``<s>`` and the instruction, the last includes ``</s>``.
        """
        if not chunks:
            return [self.bos_id, self.eos_id], []
        first = self.instruction(task) + chunks[0]
        pieces = self._pieces([first, *chunks[1:]])
        ids = [self.bos_id]
        spans: list[tuple[int, int]] = []
        for piece in pieces:
            start = len(ids) if spans else 0
            ids.extend(piece)
            spans.append((start, len(ids)))
        ids.append(self.eos_id)
        spans[-1] = (spans[-1][0], len(ids))
        return ids, spans
