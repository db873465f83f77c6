"""Alias of the Haystack components, which live in Haystack's namespace package.

Implementation: :mod:`haystack_integrations.components.embedders.jina_v3` (so pipelines load
with Haystack's default allowlist). This path keeps older imports and pipelines working.
"""

from __future__ import annotations

from ..core._deps import require

require("haystack", "haystack", "haystack-ai")

from haystack import component  # noqa: E402

from haystack_integrations.components.embedders.jina_v3 import (  # noqa: E402
    JinaV3DocumentEmbedder,
    JinaV3TextEmbedder,
)

__all__ = ["JinaV3DocumentEmbedder", "JinaV3TextEmbedder"]

# Pipelines saved before the move name this module's path: register the classes under it too.
for _cls in (JinaV3DocumentEmbedder, JinaV3TextEmbedder):
    component.registry.setdefault(f"{__name__}.{_cls.__name__}", _cls)
