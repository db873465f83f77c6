"""The store ``jv3`` opens by default searches exactly (issue 27; see
tests/integrations/test_exact_search.py for the recall check itself)."""

from __future__ import annotations

from pathlib import Path

from jv3_integrations import EmbeddingProvider
from jv3_integrations._cli.stores import close_store, open_store
from jv3_integrations._cli.uri import DEFAULT_STORE, parse_store_uri


def test_the_cli_default_store_is_flat(tmp_path: Path, local_provider: EmbeddingProvider) -> None:
    assert DEFAULT_STORE.startswith("milvus:")
    uri = parse_store_uri(f"milvus:{tmp_path / 'jv3.db'}")
    store = open_store(uri, "jv3", local_provider, 32, False)
    try:
        assert store.index_type == "FLAT"
        store.add_texts(["The Spree flows through Berlin."])
        (name,) = store.client.list_indexes("jv3")
        assert store.client.describe_index("jv3", name)["index_type"] == "FLAT"
    finally:
        close_store(store)
