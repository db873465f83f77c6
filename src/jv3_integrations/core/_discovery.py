"""What the API client learns about its server and model without embedding anything.

- :func:`parse_models`: the model's full output size from a ``GET /v1/models`` answer (asked
  only of self-hosted servers; Jina's API is known).
- :func:`find_tokenizer`: the model's ``tokenizer.json`` on local disk (hybrid search's keyword
  vectors), looked up without any network call.

Both are pure or local: the provider sends the probe through its transport (same deadlines,
same retries) and hands the answer here.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from ._errors import APIResponseError, ConfigurationError
from ._wire import error_from_response

__all__ = ["find_tokenizer", "parse_models"]


def parse_models(
    response: httpx.Response, *, model: str, default: int, where: str, redact: tuple[str, ...]
) -> int:
    """The size of ``model`` from a ``/v1/models`` answer.

    A server without the endpoint (404/405), or whose list does not give the size, serves the
    model at its full size: ``default``. Any other answer is no answer (never a guess).

    Raises:
        APIError: any other non-200 answer, or a body that is not the models list.
    """
    if response.status_code in (404, 405):
        return default
    if response.status_code != 200:
        raise error_from_response(
            response.status_code, response.headers, response.content, redact=redact
        )
    try:
        data = response.json().get("data", [])
    except (ValueError, AttributeError):
        raise APIResponseError(
            f"GET {where} answered 200 with a body that is not the models list; pass "
            "max_dimensions= to the provider",
            status=200,
        ) from None
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("id", ""))
        if name == model or name.endswith("/" + model):
            size = entry.get("max_output_length")
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                return size
    return default


def find_tokenizer(configured: Path | None, *, model: str, hub_id: str) -> Path:
    """The model's ``tokenizer.json``: ``configured``, else ``$JV3_TOKENIZER``, else the HF cache.

    Raises:
        ConfigurationError: none is available; the message says how to get one.
    """
    path = configured
    if path is None and os.environ.get("JV3_TOKENIZER", "").strip():
        path = Path(os.environ["JV3_TOKENIZER"].strip())
    if path is None:
        path = _cached_tokenizer(hub_id)
    if path is None or not path.is_file():
        where = f" ({path} is not a file)" if path is not None else ""
        raise ConfigurationError(
            f"hybrid search needs {model}'s tokenizer.json on this machine for its keyword "
            f"vectors{where}; download it once (huggingface-cli download {hub_id} "
            "tokenizer.json), then pass JinaAPIProvider(tokenizer_file=PATH) or set "
            "JV3_TOKENIZER=PATH"
        )
    return path


def _cached_tokenizer(repo: str) -> Path | None:
    """``tokenizer.json`` of ``repo`` from the Hugging Face cache, if there (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, "tokenizer.json")
    return Path(found) if isinstance(found, str) else None
