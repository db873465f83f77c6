"""Tasks, model facts and the one result type, :class:`Embeddings`."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from ._errors import InputError, InputTypeError

__all__ = [
    "JINA_EMBEDDINGS_V3",
    "Embeddings",
    "ModelInfo",
    "Task",
    "TokenCount",
    "Usage",
    "resolve_task",
]


class Task(enum.StrEnum):
    """The five task adapters of jina-embeddings-v3 (plain strings work wherever a Task does).

    ``CODE_QUERY`` and ``CODE_PASSAGE`` are jina-embeddings-v4's code tasks, through Jina's API
    only; :attr:`ModelInfo.tasks` says which model takes which (the others refuse them).
    """

    RETRIEVAL_QUERY = "retrieval.query"
    RETRIEVAL_PASSAGE = "retrieval.passage"
    SEPARATION = "separation"
    CLASSIFICATION = "classification"
    TEXT_MATCHING = "text-matching"
    CODE_QUERY = "code.query"
    CODE_PASSAGE = "code.passage"

    @classmethod
    def _missing_(cls, value: object) -> Task:
        # ``Task("query")`` raises our InputError (a ValueError) listing the valid names,
        # instead of Enum's bare "'query' is not a valid Task".
        valid = ", ".join(repr(t.value) for t in cls)
        raise InputError(f"unknown task {value!r}; use one of {valid}")


TaskLike = Task | str | None


def resolve_task(task: TaskLike) -> Task | None:
    """Turn a task given as :class:`Task`, its string value or ``None`` into a :class:`Task`.

    Raises:
        InputError: (a ValueError) for an unknown task, listing the five valid ones.
    """
    if task is None or isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise InputTypeError(
            f"task must be a Task or one of its string values, not {type(task).__name__}"
        )
    try:
        return Task(task)
    except ValueError:
        valid = ", ".join(repr(t.value) for t in Task)
        raise InputError(f"unknown task {task!r}; use one of {valid} (or None)") from None


@dataclass(frozen=True)
class ModelInfo:
    """Facts about an embedding model, known without loading it.

    The fields after ``hub_id`` describe what Jina's API takes for the model (its request
    schema): whether it offers late chunking and the ``normalized`` option, the wire names of
    tasks that differ from :class:`Task` values (v5 says ``clustering`` where v3 says
    ``separation``), tasks the API offers that :class:`Task` has no member for yet, and
    whether this package can run the model locally (only jina-embeddings-v3).
    """

    name: str
    dim: int
    max_tokens: int
    tasks: tuple[Task, ...]
    matryoshka_dimensions: tuple[int, ...]
    languages: int | None
    license: str | None
    hub_id: str
    late_chunking: bool = True
    normalized_option: bool = True
    wire_task_names: tuple[tuple[Task, str], ...] = ()
    api_only_tasks: tuple[str, ...] = ()
    local: bool = False

    def wire_task(self, task: Task) -> str:
        """The task's name in this model's requests."""
        return dict(self.wire_task_names).get(task, task.value)


JINA_EMBEDDINGS_V3 = ModelInfo(
    name="jina-embeddings-v3",
    dim=1024,
    max_tokens=8192,
    tasks=(
        Task.RETRIEVAL_QUERY,
        Task.RETRIEVAL_PASSAGE,
        Task.SEPARATION,
        Task.CLASSIFICATION,
        Task.TEXT_MATCHING,
    ),
    matryoshka_dimensions=(32, 64, 128, 256, 512, 768, 1024),
    languages=89,
    license="cc-by-nc-4.0",
    hub_id="jinaai/jina-embeddings-v3",
    local=True,
)


@dataclass(frozen=True)
class Usage:
    """Token usage of one embedding call (summed over every request or batch it made)."""

    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.total_tokens + other.total_tokens)


@dataclass(frozen=True)
class TokenCount:
    """Token counts of some texts, and whether they are exact (a tokenizer) or estimated.

    Attributes:
        counts: One count per text, in input order (``<s>``, ``</s>`` and the instruction
            included; with late chunking each chunk's span, so they sum to the document's).
        exact: True when a real tokenizer counted; False for a conservative estimate.
    """

    counts: list[int]
    exact: bool

    @property
    def total(self) -> int:
        """The sum of :attr:`counts`."""
        return sum(self.counts)


@dataclass(frozen=True, eq=False)
class Embeddings:
    """The result of an embedding call: one row per input text, in input order.

    Attributes:
        vectors: float32 array of shape ``(n, dimensions)``.
        model: Model name that produced the vectors.
        task: Task adapter used (``None`` = no adapter).
        dimensions: Size of each vector.
        usage: Tokens processed.

    Example:
        >>> emb = provider.embed_documents(["a", "b"])  # doctest: +SKIP
        >>> emb.vectors.shape  # doctest: +SKIP
        (2, 1024)
    """

    vectors: npt.NDArray[np.float32]
    model: str
    task: Task | None
    dimensions: int
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        vectors = np.asarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D, got shape {vectors.shape}")
        if vectors.shape[1] != self.dimensions:
            raise ValueError(
                f"vectors have {vectors.shape[1]} columns but dimensions is {self.dimensions}"
            )
        object.__setattr__(self, "vectors", vectors)

    @classmethod
    def empty(cls, *, model: str, task: Task | None, dimensions: int) -> Embeddings:
        """An empty result of shape ``(0, dimensions)``."""
        return cls(np.zeros((0, dimensions), dtype=np.float32), model, task, dimensions)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @overload
    def __getitem__(self, index: int) -> npt.NDArray[np.float32]: ...

    @overload
    def __getitem__(self, index: slice) -> npt.NDArray[np.float32]: ...

    def __getitem__(self, index: int | slice) -> npt.NDArray[np.float32]:
        return self.vectors[index]

    def __iter__(self) -> Iterator[npt.NDArray[np.float32]]:
        return iter(self.vectors)

    def tolist(self) -> list[list[float]]:
        """The vectors as plain Python lists of floats."""
        result: list[list[float]] = self.vectors.tolist()
        return result

    def __repr__(self) -> str:
        task = self.task.value if self.task else None
        return (
            f"Embeddings(n={len(self)}, dimensions={self.dimensions}, model={self.model!r}, "
            f"task={task!r}, total_tokens={self.usage.total_tokens})"
        )

    def _asdict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task.value if self.task else None,
            "dimensions": self.dimensions,
            "usage": {"total_tokens": self.usage.total_tokens},
            "vectors": self.tolist(),
        }
