"""``LocalProvider``: jina-embeddings-v3 in native PyTorch, from the official checkpoint files.

Importing this module imports neither torch nor tokenizers; they load on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._checkpoint import TOKENIZER_FILE, WEIGHTS_FILE, ModelConfig, ModelSource
from ._errors import (
    ConfigurationError,
    InputError,
    ModelLoadError,
    missing_extra,
)
from ._local_device import ATTENTION, DTYPES, configure_device, resolve_device
from ._local_late import embed_late
from ._local_texts import embed_texts
from ._packing import pack_longest_first
from ._progress import progress
from ._provider import BaseProvider, EmbedRequest
from ._types import (
    JINA_EMBEDDINGS_V3,
    Embeddings,
    Task,
    TaskLike,
    TokenCount,
    Usage,
    resolve_task,
)
from ._validate import check_int
from ._vecmath import truncate

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from ._model import JinaEmbeddingsV3
    from ._tokenize import TextEncoder

__all__ = ["LocalProvider"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_TOKENS = 16384


#: The one packer by tokens (padded batches, longest first), under the name used below.
_pack = pack_longest_first


class LocalProvider(BaseProvider):
    """jina-embeddings-v3 running locally in PyTorch (no transformers, no remote code).

    Loads the official checkpoint files unchanged (``model.safetensors``, bf16 or any float
    dtype) and reproduces the original model's outputs. Nothing is read or loaded in the
    constructor: the tokenizer loads on first use, the weights on the first embedding call
    (or :meth:`load`).

    Args:
        model: A local directory (``config.json``, ``model.safetensors``, ``tokenizer.json``
            and the tokenizer configs) or a Hub id fetched with ``huggingface_hub``.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` ...; default cuda if available, else mps,
            else cpu.
        dtype: Compute dtype (``torch.dtype`` or ``"float32"``/``"bfloat16"``/``"float16"``);
            default bfloat16 on cuda, float32 elsewhere.
        max_length: Token limit per text (incl. ``<s>``/``</s>`` and the instruction); longer
            texts keep their head and ``</s>``. In late chunking, the window size.
        late_chunking_overlap: Overlap between windows when a late-chunked document is longer
            than ``max_length`` (must then be smaller than ``max_length``).
        dimensions: Default Matryoshka output size (default: config ``truncate_dim`` or full).
        batch_tokens: Token budget per forward batch (padded tokens, texts sorted by length;
            with packed attention, real tokens). Default: 16384 on CPU; on CUDA sized from the
            device's free memory after loading (``torch.cuda.mem_get_info``). A batch that
            runs out of device memory is retried in halves (and the budget halved); a text
            that does not fit alone raises :class:`DeviceMemoryError`.
        revision / cache_dir / local_files_only: Hub download options (``HF_HUB_OFFLINE=1``
            also forbids downloads).
        progress_bar: Show a progress bar (in tokens) for long calls.
        compile: Run the layers through ``torch.compile`` (opt-in; off by default). Measured
            on a 2-core CPU (torch 2.13) it was slower than eager (0.6x) and compiles for
            minutes: useful mainly on GPU (unmeasured).
        quantize: ``"int8"`` for dynamic int8 Linears (CPU, float32 only; opt-in): weights
            per output channel, activations quantized per call (8-bit on CPUs with VNNI,
            7-bit without), attention and norms in float32. Min cosine to fp32 >= 0.998 on
            the conformance texts; 1.3x-3.5x our fp32 speed on a 2-core CPU, level with ONNX
            Runtime's dynamic int8 at the same accuracy (docs/local-model.md).
        adapter_mode: ``"merged"`` (dense merged weights of the active task, default; calls
            under 1024 tokens for another task use the side path instead of re-merging) or
            ``"lowrank"`` (base weights + rank-r side path always; ~10 % slower).
        attention: ``"auto"`` (default: on CUDA, variable-length attention over the packed
            real tokens, ``varlen_attn`` in bf16/fp16, jagged nested-tensor SDPA otherwise;
            elsewhere the padded SDPA), or force ``"varlen"``, ``"nested"`` or ``"padded"``.

    Example:
        >>> provider = LocalProvider("jinaai/jina-embeddings-v3", dimensions=256)  # doctest: +SKIP
        >>> provider.embed_documents(["Berlin is in Germany."]).vectors.shape  # doctest: +SKIP
        (1, 256)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = JINA_EMBEDDINGS_V3.hub_id,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int = 8192,
        late_chunking_overlap: int = 512,
        dimensions: int | None = None,
        batch_tokens: int | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        progress_bar: bool = False,
        compile: bool = False,
        quantize: Literal["int8"] | None = None,
        adapter_mode: Literal["merged", "lowrank"] = "merged",
        attention: Literal["auto", "varlen", "nested", "padded"] = "auto",
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise ConfigurationError("model must be a model directory or a Hub id (a str)")
        self._model_arg = str(model)
        self._max_length = check_int("max_length", max_length, 2)
        self._overlap = check_int("late_chunking_overlap", late_chunking_overlap, 0)
        if dimensions is not None:
            check_int("dimensions", dimensions, 1)
        self._dimensions = dimensions
        if batch_tokens is not None:
            check_int("batch_tokens", batch_tokens, 1)
        self._batch_tokens = batch_tokens
        self._budget = batch_tokens or DEFAULT_BATCH_TOKENS  # resolved on load
        if attention not in ATTENTION:
            raise ConfigurationError(
                f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}"
            )
        self._attention_arg: str = attention
        self._attention = "padded"  # resolved on load
        if quantize not in (None, "int8"):
            raise ConfigurationError(f"quantize must be None or 'int8', got {quantize!r}")
        if adapter_mode not in ("merged", "lowrank"):
            raise ConfigurationError(
                f"adapter_mode must be 'merged' or 'lowrank', got {adapter_mode!r}"
            )
        if dtype is not None and isinstance(dtype, str) and dtype.lower() not in DTYPES:
            raise ConfigurationError(
                f"dtype must be one of float32, bfloat16, float16 (or a torch.dtype), got {dtype!r}"
            )
        self._device_arg = device
        self._dtype_arg = dtype
        self._compile = bool(compile)
        self._quantize = quantize
        self._adapter_mode: Literal["merged", "lowrank"] = adapter_mode
        self._progress_bar = bool(progress_bar)
        self._source = ModelSource(
            self._model_arg,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        self._lock = threading.RLock()
        self._encoder: TextEncoder | None = None
        self._net: JinaEmbeddingsV3 | None = None
        self._device: torch.device | None = None
        self._dtype: torch.dtype | None = None
        self._check_dimensions_early()

    def _check_dimensions_early(self) -> None:
        """Refuse ``dimensions`` above the model's size now when that size is known cheaply.

        Known without a download: the official Hub id (1024), or a local directory's
        config.json (a small file; no weights). Otherwise :meth:`load` checks it.
        """
        if self._dimensions is None:
            return
        full: int | None = None
        if self._model_arg == JINA_EMBEDDINGS_V3.hub_id:
            full = JINA_EMBEDDINGS_V3.dim
        elif self._source.local_dir is not None:
            try:
                full = self.config.hidden_size
            except ModelLoadError:
                return  # a broken directory is reported by load(), with its own message
        if full is not None:
            self._check_dimensions(full)

    def _check_dimensions(self, full: int) -> None:
        if self._dimensions is not None and self._dimensions > full:
            raise ConfigurationError(
                f"dimensions={self._dimensions} exceeds the size of model {self.model_name!r} "
                f"({full}); pass dimensions in 1..{full}"
            )

    # -- facts (no weights needed) ------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model's name: the last component of the directory or Hub id."""
        return Path(self._model_arg.rstrip("/\\")).name or self._model_arg

    @property
    def config(self) -> ModelConfig:
        """The checkpoint's configuration (reads config.json only)."""
        return self._source.config()

    @property
    def max_dimensions(self) -> int:
        """The model's hidden size, from config.json (no weights loaded)."""
        return self.config.hidden_size

    @property
    def dimensions(self) -> int:
        """Default output size: ``dimensions``, else config ``truncate_dim``, else full."""
        full = self.max_dimensions
        if self._dimensions is not None:
            self._check_dimensions(full)
            return self._dimensions
        return self.config.truncate_dim or full

    @property
    def max_length(self) -> int:
        """Token limit per text (and the late-chunking window)."""
        return self._max_length

    @property
    def max_tokens(self) -> int:
        """Token limit per text: ``max_length`` (late chunking windows past it by itself)."""
        return self._max_length

    @property
    def max_concurrency(self) -> int:
        """1: one forward pass already uses every core (calls are serialized)."""
        return 1

    @property
    def supports_long_late_chunking(self) -> bool:
        """True: documents longer than ``max_length`` are windowed here, in one call."""
        return True

    @property
    def late_chunking_overlap(self) -> int:
        """Overlap between late-chunking windows."""
        return self._overlap

    @property
    def device(self) -> torch.device:
        """The torch device the model runs on (resolved on first access)."""
        self._resolve_device()
        assert self._device is not None
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (resolved on first access)."""
        self._resolve_device()
        assert self._dtype is not None
        return self._dtype

    @property
    def tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` (loads the tokenizer files only)."""
        return self._text_encoder().tokenizer

    def tokenizer_file(self) -> Path:
        """The checkpoint's ``tokenizer.json`` (fetched with the model files for a Hub id)."""
        path = self._source.file(TOKENIZER_FILE)
        assert path is not None  # a required file: file() raises when it is absent
        return path

    def __repr__(self) -> str:
        return (
            f"LocalProvider(model={self._model_arg!r}, max_length={self._max_length}, "
            f"loaded={self._net is not None})"
        )

    # -- loading ------------------------------------------------------------------------------

    def _resolve_device(self) -> None:
        if self._device is not None:
            return
        self._device, self._dtype = resolve_device(
            self._device_arg, self._dtype_arg, self._quantize
        )

    def _text_encoder(self) -> TextEncoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    try:
                        from ._tokenize import TextEncoder
                    except ImportError as exc:  # pragma: no cover
                        raise missing_extra("local", "tokenizers") from exc
                    cfg = self.config
                    tok_path = self._source.file(TOKENIZER_FILE)
                    assert tok_path is not None
                    self._encoder = TextEncoder.from_files(
                        tok_path,
                        tokenizer_config=self._source.file("tokenizer_config.json"),
                        special_tokens_map=self._source.file("special_tokens_map.json"),
                        instructions=cfg.task_instructions,
                    )
        return self._encoder

    def load(self) -> None:
        """Load tokenizer and weights now (otherwise done on the first call).

        Raises:
            ModelLoadError: files missing/unreadable, or checkpoint keys that do not match.
            MissingDependencyError: torch/tokenizers/safetensors are not installed.
        """
        self._load()

    def _load(self) -> JinaEmbeddingsV3:
        if self._net is not None:
            return self._net
        with self._lock:
            if self._net is not None:
                return self._net
            self._resolve_device()
            try:
                import torch  # noqa: F401

                from ._checkpoint import load_weights
                from ._model import JinaEmbeddingsV3, storage_dtype
            except ImportError as exc:
                raise missing_extra("local", getattr(exc, "name", None) or "torch") from exc
            cfg = self.config
            self._check_dimensions(cfg.hidden_size)
            self._text_encoder()
            weights = self._source.file(WEIGHTS_FILE)
            assert weights is not None and self._dtype is not None and self._device is not None
            compute = self._dtype

            def dtype_for(key: str, stored: torch.dtype) -> torch.dtype:
                if key.endswith(".bias") or "norm" in key or "emb_ln" in key:
                    return compute
                return storage_dtype(stored, compute)

            tensors = load_weights(weights, cfg, dtype_for=dtype_for, device=self._device)
            net = JinaEmbeddingsV3(cfg, tensors, dtype=compute, adapter_mode=self._adapter_mode)
            if tensors:  # pragma: no cover - load_weights checked the keys
                raise ModelLoadError(f"unused checkpoint tensors: {sorted(tensors)[:8]}")
            net.eval()
            if self._quantize == "int8":
                net.enable_int8()
            if self._compile:
                net.enable_compile()
            configure_device(self, net)
            logger.info(
                "loaded %s (%d layers, hidden %d) on %s as %s",
                self.model_name,
                cfg.num_layers,
                cfg.hidden_size,
                self._device,
                compute,
            )
            self._net = net
            return net

    @property
    def attention(self) -> str:
        """The attention path in use: ``"varlen"``, ``"nested"`` or ``"padded"`` (loads)."""
        self._load()
        return self._attention

    @property
    def batch_tokens(self) -> int:
        """The token budget per forward batch (on CUDA sized on load; halved after an OOM)."""
        self._load()
        return self._budget

    def close(self) -> None:
        """Free the model weights (they reload on the next call). Safe to call twice."""
        with self._lock:
            self._net = None

    # -- tokenization -------------------------------------------------------------------------

    def _task_name(self, task: TaskLike) -> str | None:
        resolved = resolve_task(task)
        return None if resolved is None else resolved.value

    def encode_ids(self, texts: Sequence[str], *, task: TaskLike = None) -> list[list[int]]:
        """The token ids the model sees for each text (instruction added, truncated).

        Args:
            texts: The texts.
            task: The task whose instruction is prefixed (None: no instruction).

        Returns:
            One id list per text: ``<s>`` + tokens(instruction + text) + ``</s>``, cut to
            ``max_length`` keeping the head and ``</s>``.
        """
        enc = self._text_encoder()
        return [
            enc.truncate(ids, self._max_length) for ids in enc.encode(texts, self._task_name(task))
        ]

    def late_chunking_ids(
        self, chunks: Sequence[str], *, task: TaskLike = None
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """The one id sequence of a late-chunked document and each chunk's token span.

        Returns:
            ``(ids, spans)``: ids = ``<s>`` + tokens(instruction + chunk 1) + tokens(chunk 2)
            ... + ``</s>`` (never truncated), spans ``[start, end)`` per chunk.
        """
        return self._text_encoder().late_chunk(list(chunks), self._task_name(task))

    def count_tokens(
        self, texts: Sequence[str], *, task: TaskLike = None, late_chunking: bool = False
    ) -> TokenCount:
        """Real token counts, not truncated (``<s>``, ``</s>`` and the instruction included).

        With ``late_chunking=True`` each count is the chunk's span length, so the sum is the
        length of the whole document sequence.

        Returns:
            A :class:`TokenCount` with ``exact=True`` (counted by the checkpoint's tokenizer).
        """
        enc = self._text_encoder()
        name = self._task_name(task)
        if late_chunking:
            # tokenized in sections (a long document never holds all its token objects)
            counts = [len(ids) for part in enc.sections(texts, name) for ids in part]
            if counts:
                counts[0] += 1  # <s>
                counts[-1] += 1  # </s>
            return TokenCount(counts, exact=True)
        prefix = enc.instruction(name)
        sections = enc.sections(prefix + t for t in texts)
        return TokenCount([len(ids) + 2 for part in sections for ids in part], exact=True)

    # -- embedding ----------------------------------------------------------------------------

    def _task_index(self, task: Task | None) -> int | None:
        if task is None:
            return None
        tasks = self.config.tasks
        if task.value not in tasks:
            raise InputError(f"this checkpoint has no adapter for task {task.value!r}")
        return tasks.index(task.value)

    def _forward(
        self,
        seqs: Sequence[Sequence[int]],
        task: int | None,
        consume: Callable[[int, torch.Tensor], None],
    ) -> None:
        """Run ``seqs`` in length-sorted, token-budgeted batches; ``consume(i, states_fp32)``."""
        import torch

        net = self._load()
        enc = self._text_encoder()
        device = self.device
        lengths = [len(s) for s in seqs]
        with (
            self._lock,
            torch.inference_mode(),
            progress(sum(lengths), "Embedding", enabled=self._progress_bar, unit="tok") as bar,
        ):
            net.set_task(task, sum(lengths))
            for batch in _pack(lengths, self._budget):
                longest = lengths[batch[0]]
                ids = torch.full((len(batch), longest), enc.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.bool)
                for row, i in enumerate(batch):
                    ids[row, : lengths[i]] = torch.tensor(seqs[i], dtype=torch.long)
                    mask[row, : lengths[i]] = True
                padded = not bool(mask.all())
                ids = ids.to(device)
                dmask = mask.to(device) if padded else None
                states = net(ids, dmask)  # [real tokens, H], rows in order
                offset = 0
                for i in batch:
                    consume(i, states[offset : offset + lengths[i]].float())
                    offset += lengths[i]
                bar.update(sum(lengths[i] for i in batch))

    def _embed(self, request: EmbedRequest) -> Embeddings:
        self._load()  # first: a missing torch is a MissingDependencyError, not a bare ImportError
        if request.late_chunking:
            pooled, used = embed_late(self, request)
        else:
            pooled, used = embed_texts(self, request)
        vectors = truncate(pooled, request.dimensions, normalize=request.normalized)
        return Embeddings(
            vectors,
            model=self.model_name,
            task=request.task,
            dimensions=request.dimensions,
            usage=Usage(used),
        )

    @property
    def module(self) -> torch.nn.Module:
        """The loaded ``torch.nn.Module`` (loads the weights on first access)."""
        return self._load()

    # -- memory accounting --------------------------------------------------------------------

    def resident_bytes(self) -> int:
        """Bytes of model weights currently held (0 before loading)."""
        return 0 if self._net is None else self._net.resident_bytes()
