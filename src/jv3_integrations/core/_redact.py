"""Masking secrets in text a host sends back (error bodies that echo request headers).

One function, :func:`redact_secrets`, used wherever a host's error text reaches the user: the
stores' error boundary (:func:`scrub_exception`) and the ``jv3`` CLI's one-line errors. It
masks every secret value it is given, the values of the key variables the package reads from
the environment (:data:`SECRET_ENV_VARS`), and the usual header and parameter forms
(``Authorization: Bearer ...``, ``api-key: ...``, ``token=...``) whatever their value.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["SECRET_ENV_VARS", "MASK", "redact_secrets", "scrub_exception"]

MASK = "***"

#: Environment variables holding keys the package (or a host client it opens) sends.
SECRET_ENV_VARS: tuple[str, ...] = (
    "JINA_API_KEY",
    "JV3_SERVER_API_KEY",
    "QDRANT_API_KEY",
    "PINECONE_API_KEY",
    "MILVUS_TOKEN",
    "ZILLIZ_API_KEY",
)

#: Values shorter than this are not searched for (a 1-character "key" would mask every
#: occurrence of that letter); the header forms below still mask them.
_MIN_SECRET = 4

# `Authorization: Bearer x`, `"api-key": "x"`, `'Api-Key': 'x'`, `token=x`, `password: x` ...
_HEADER = re.compile(
    r"""(?ix)
    (?P<name>["']?\b(?:proxy-authorization|authorization|x-api-key|api[-_]?key|
        access[-_]?token|token|password|secret)\b["']?
    \s*[:=]\s*
    (?:b?["'])?)
    (?P<scheme>(?:bearer|basic|token|apikey)\s+)?
    (?P<value>[^\s"',;&}\]\)]+)
    """
)


def _known(secrets: Iterable[str | None]) -> list[str]:
    values = {s for s in secrets if isinstance(s, str)}
    values.update(os.environ.get(name, "") for name in SECRET_ENV_VARS)
    found = {v.strip() for v in values} | values
    # longest first, so a key that contains another is masked whole
    return sorted((v for v in found if len(v) >= _MIN_SECRET), key=len, reverse=True)


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret and every header-like ``name: value`` masked.

    Args:
        text: What a host said (an error message, an echoed request).
        secrets: Secret values to mask besides those in :data:`SECRET_ENV_VARS`.

    Returns:
        The text with each secret replaced by ``***`` (``Bearer ***`` for an auth header).

    Example:
        >>> redact_secrets("echo: api-key: s3cr3t-value, user=x", ["nothing"])
        'echo: api-key: ***, user=x'
    """
    for value in _known(secrets):
        text = text.replace(value, MASK)
    return _HEADER.sub(lambda m: f"{m['name']}{m['scheme'] or ''}{MASK}", text)


def _scrub_value(value: object, secrets: list[str], depth: int = 0) -> object:
    """``value`` with secrets masked: a new str/bytes/tuple/list/dict where something changed,
    other mappings (header dicts) masked in place; ``value`` itself when nothing did."""
    if depth > 20:  # pragma: no cover - a pathological nesting
        return value
    if isinstance(value, str):
        clean = redact_secrets(value, secrets)
        return value if clean == value else clean
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        clean = redact_secrets(text, secrets)
        return value if clean == text else clean.encode()
    if isinstance(value, tuple | list):
        items = [_scrub_value(v, secrets, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if type(value) in (tuple, list) else items
    if isinstance(value, dict):
        pairs = {k: _scrub_item(k, v, secrets, depth) for k, v in value.items()}
        if all(pairs[k] is v for k, v in value.items()):
            return value
        return pairs
    if hasattr(value, "items") and hasattr(value, "__setitem__"):
        _scrub_mapping(value, secrets)
    return value


def _scrub_item(key: object, value: object, secrets: list[str], depth: int) -> object:
    if isinstance(key, str) and isinstance(value, str | bytes) and value:
        probe = f"{key}: probe"
        if _HEADER.sub("", probe) != probe:
            return MASK  # a header-like key ("api-key", "Authorization"): its whole value
    return _scrub_value(value, secrets, depth + 1)


def scrub_exception(exc: BaseException, secrets: Iterable[str | None] = ()) -> None:
    """Mask secrets in place in ``exc`` and every exception it chains to.

    The exception keeps its type (callers and retries still recognise it); its ``args`` and
    its string and bytes attributes (an HTTP body, a reason, a message) are masked, and so are
    the header mappings it holds (response and request headers), so neither ``str()``,
    ``repr()`` nor a printed traceback can show a key.
    """
    known = _known(secrets)
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        with contextlib.suppress(AttributeError, TypeError):  # exotic exception types
            current.args = tuple(_scrub_value(a, known) for a in current.args)
        for name, value in list(getattr(current, "__dict__", {}).items()):
            if name.startswith("__"):
                continue
            clean = _scrub_value(value, known)
            if clean is not value:
                with contextlib.suppress(AttributeError, TypeError):  # a read-only attribute
                    setattr(current, name, clean)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _scrub_mapping(mapping: Any, secrets: list[str]) -> None:
    """A header mapping (``HTTPHeaderDict``, ``httpx.Headers``) masked in place."""
    try:
        items = list(mapping.items())
    except Exception:  # pragma: no cover - a mapping that cannot be listed
        return
    for key, value in items:
        clean = _scrub_item(key, value, secrets, 0)
        if clean is not value:
            with contextlib.suppress(Exception):  # an immutable mapping
                mapping[key] = clean
