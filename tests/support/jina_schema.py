"""Validate bodies against Jina's official OpenAPI schemas (``tests/data/spec/jina-openapi.json``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from tests.conftest import SPEC_DIR

SPEC = SPEC_DIR / "jina-openapi.json"


@cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(SPEC).read_text(encoding="utf-8"))
    return doc


@cache
def _validator(name: str) -> Draft202012Validator:
    doc = _document()
    # A root that holds the components, so every "#/components/schemas/..." $ref resolves.
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return Draft202012Validator(root)


def properties(name: str) -> set[str]:
    """The property names the official schema ``name`` declares."""
    return set(_document()["components"]["schemas"][name]["properties"])


def validate(name: str, body: Any) -> None:
    """Raise ``AssertionError`` unless ``body`` is valid for the official schema ``name``.

    For ``EmbeddingsV3Request`` unknown fields are rejected too (the API refuses them even
    though the schema does not say ``additionalProperties: false``).
    """
    errors = sorted(_validator(name).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors)
    if name == "EmbeddingsV3Request":
        extra = set(body) - properties(name)
        assert not extra, f"request has fields the API rejects: {sorted(extra)}"
