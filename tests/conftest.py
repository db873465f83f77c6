"""Shared fixtures: the test data in ``tests/data`` (conformance checkpoint, API specs)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Everything the tests read lives in the repository (a clone stands alone): tests/data/README.md.
DATA = ROOT / "tests" / "data"
CONFORMANCE_DIR = DATA / "tiny-v3"
SPEC_DIR = DATA / "spec"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    return CONFORMANCE_DIR


SERVER_API_KEY = "jv3-test-server-key"


@pytest.fixture(scope="session")
def local_provider(conformance_dir: Path):  # type: ignore[no-untyped-def]
    """The local model on the conformance checkpoint (tiny, random, official layout)."""
    from jv3_integrations import LocalProvider

    provider = LocalProvider(str(conformance_dir))
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def jina_server_url(conformance_dir: Path):  # type: ignore[no-untyped-def]
    """Our Jina-compatible server on 127.0.0.1 (conformance checkpoint, key SERVER_API_KEY)."""
    from tests.support.server import running_server

    with running_server(conformance_dir, api_key=SERVER_API_KEY) as url:
        yield url


@pytest.fixture
def api_provider(jina_server_url: str):  # type: ignore[no-untyped-def]
    """JinaAPIProvider talking to our own server."""
    from jv3_integrations import JinaAPIProvider

    provider = JinaAPIProvider(api_key=SERVER_API_KEY, base_url=jina_server_url)
    yield provider
    provider.close()
