"""The Dify plugin (plugins/dify), loaded by the Dify SDK's own registration, against ``jv3 serve``.

The SDK needs Python >= 3.12 and the suite runs on 3.11, so the plugin runs in a subprocess on
the SDK's Python (``tests/plugins/dify_env.py``); our server and ``LocalProvider`` run here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import jv3_integrations
from jv3_integrations.core import LocalProvider
from tests.conftest import SERVER_API_KEY
from tests.plugins.dify_env import ROOT, dify_python

PLUGIN = ROOT / "plugins" / "dify"
DRIVER = Path(__file__).with_name("dify_driver.py")
DOCS = ["Berlin is the capital of Germany.", "Der Himmel ist blau.", "東京は日本の首都です。"]
QUERY = "Wo liegt Berlin?"
DIMS = 64

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def sdk_python() -> str:
    python = dify_python()
    if python is None:
        pytest.skip("no Python >= 3.12 on this machine (the Dify plugin SDK >= 0.9 needs it)")
    return python


@pytest.fixture(scope="module")
def plugin_env() -> Any:
    """PYTHONPATH for the SDK's Python: the jv3_integrations this test suite imports."""
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(Path(jv3_integrations.__file__).parent, Path(tmp) / "jv3_integrations")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = tmp
        yield env


def _credentials(url: str) -> dict[str, str]:
    return {"endpoint": url, "api_key": SERVER_API_KEY, "dimensions": str(DIMS), "truncate": "true"}


def _dead_endpoint() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def driven(sdk_python: str, plugin_env: dict[str, str], jina_server_url: str) -> dict[str, Any]:
    job = {
        "credentials": _credentials(jina_server_url),
        "docs": DOCS,
        "query": QUERY,
        "many": 2049,
        "long_words": 9000,
        "dead_endpoint": _dead_endpoint(),
    }
    proc = subprocess.run(
        [sdk_python, str(DRIVER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=PLUGIN,
        env=plugin_env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_documents_and_queries_get_the_local_models_vectors(
    driven: dict[str, Any], local_provider: LocalProvider
) -> None:
    assert driven["model_class"] == "JinaV3TextEmbeddingModel"
    docs = np.array(driven["documents"], dtype=np.float32)
    want = local_provider.embed(DOCS, task="retrieval.passage", dimensions=DIMS).vectors
    assert docs.shape == (3, DIMS) and np.allclose(docs, want, atol=1e-5)
    query = np.array(driven["query"], dtype=np.float32)
    want_q = local_provider.embed([QUERY], task="retrieval.query", dimensions=DIMS).vectors[0]
    assert np.allclose(query, want_q, atol=1e-5)
    # an endpoint given as ".../v1/" (as the official plugin's form asks) is its root URL
    want_doc = local_provider.embed([QUERY], task="retrieval.passage", dimensions=DIMS).vectors[0]
    assert np.allclose(np.array(driven["with_v1"], dtype=np.float32), want_doc, atol=1e-5)
    billed = local_provider.count_tokens(DOCS, task="retrieval.passage").counts
    assert driven["usage_tokens"] == sum(billed)


def test_token_counts_are_the_providers_estimates(driven: dict[str, Any]) -> None:
    # JinaAPIProvider's conservative estimate (no tokenizer download, no network call)
    from jv3_integrations import JinaAPIProvider

    with JinaAPIProvider(api_key="unused") as provider:
        assert driven["num_tokens"] == provider.count_tokens(DOCS).counts
    assert all(n > 2 for n in driven["num_tokens"])


def test_credentials_good_key_accepted_bad_key_is_dify_auth_error(
    driven: dict[str, Any],
) -> None:
    assert driven["validated"] is True
    bad = driven["validate_bad_key"]
    assert bad["type"] == "CredentialsValidateFailedError"
    assert "401" in bad["message"] and "Invalid API key" in bad["message"]
    for answer in (bad, driven["invoke_bad_key"]):  # the wrong key is never echoed
        assert "not-the-key" not in json.dumps(answer)
    assert driven["invoke_bad_key"]["type"] == "InvokeAuthorizationError"
    assert "Invalid API key" in driven["invoke_bad_key"]["message"]  # our message kept
    dims = driven["validate_bad_dimensions"]
    assert dims["type"] == "CredentialsValidateFailedError" and "1 to 1024" in dims["message"]


def test_defaults_jinas_api_clipping_on_and_a_call_ends_before_dify_gives_up(
    driven: dict[str, Any],
) -> None:
    defaults = driven["defaults"]
    assert defaults["endpoint"] == "https://api.jina.ai" and defaults["api_key"] is None
    assert defaults["model"] == "jina-embeddings-v3" and defaults["dimensions"] is None
    assert defaults["truncate"] is True
    assert defaults["attempt_timeout"] == 60.0 and defaults["max_retries"] == 6
    assert defaults["total_timeout"] == 240.0 < defaults["max_request_timeout"]


def test_truncate_clips_a_long_text_and_off_refuses_it_with_our_message(
    driven: dict[str, Any],
) -> None:
    assert driven["long_truncated"] == 1
    refused = driven["long_refused"]
    assert refused["type"] == "InvokeBadRequestError"
    assert "tokens" in refused["message"] and "truncate" in refused["message"]


def test_2049_texts_come_back_as_2049_vectors_in_order(
    driven: dict[str, Any], local_provider: LocalProvider
) -> None:
    assert driven["many"] == [2049, 1]
    first, last = (np.array(v, dtype=np.float32) for v in driven["many_first_last"])
    want = local_provider.embed(
        ["text 0", "text 2048"], task="retrieval.passage", dimensions=DIMS
    ).vectors
    assert np.allclose(first, want[0], atol=1e-5) and np.allclose(last, want[1], atol=1e-5)


def test_unreachable_endpoint_is_a_connection_error(driven: dict[str, Any]) -> None:
    dead = driven["invoke_dead"]
    assert dead["type"] == "InvokeConnectionError"
    assert "APIConnectionError" in dead["message"]


def test_python_m_main_answers_over_the_sdks_stdio_protocol(
    sdk_python: str,
    plugin_env: dict[str, str],
    jina_server_url: str,
    local_provider: LocalProvider,
) -> None:
    request = {
        "session_id": "s-1",
        "event": "request",
        "data": {
            "type": "model",
            "action": "invoke_text_embedding",
            "user_id": "u-1",
            "provider": "jina_v3",
            "model_type": "text-embedding",
            "model": "jina-embeddings-v3",
            "credentials": _credentials(jina_server_url),
            "texts": [QUERY],
            "input_type": "query",
        },
    }
    proc = subprocess.Popen(
        [sdk_python, "-m", "main"],
        cwd=PLUGIN,
        env=plugin_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        answer = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            message = json.loads(line) if line.strip().startswith("{") else {}
            if message.get("session_id") != "s-1":
                continue
            if message["data"]["type"] == "stream":
                answer = message["data"]["data"]
            if message["data"]["type"] in ("end", "error"):
                assert message["data"]["type"] == "end", message
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert answer is not None
    got = np.array(answer["embeddings"][0], dtype=np.float32)
    want = local_provider.embed([QUERY], task="retrieval.query", dimensions=DIMS).vectors[0]
    assert np.allclose(got, want, atol=1e-5)


# -- the package files Dify reads (no SDK needed) ----------------------------------------


def test_manifest_provider_and_model_yaml_say_what_dify_needs() -> None:
    manifest = yaml.safe_load((PLUGIN / "manifest.yaml").read_text())
    assert manifest["meta"]["runner"] == {
        "language": "python",
        "version": "3.12",
        "entrypoint": "main",
    }
    provider = yaml.safe_load((PLUGIN / manifest["plugins"]["models"][0]).read_text())
    fields = {
        f["variable"]: f for f in provider["provider_credential_schema"]["credential_form_schemas"]
    }
    assert set(fields) == {"endpoint", "api_key", "model", "dimensions", "truncate"}
    assert fields["api_key"]["type"] == "secret-input"
    assert fields["endpoint"]["default"] == "https://api.jina.ai"
    assert fields["model"]["default"] == "jina-embeddings-v3"
    assert fields["truncate"]["default"] == "true"
    model = yaml.safe_load((PLUGIN / "models/text_embedding/jina-embeddings-v3.yaml").read_text())
    assert model["model_properties"] == {"context_size": 8192, "max_chunks": 2048}
    for name in ("README.md", "PRIVACY.md", "main.py", "requirements.txt", "_assets/icon.svg"):
        assert (PLUGIN / name).is_file(), name
    pins = (ROOT / "constraints" / "dify.txt").read_text()
    tested = next(line for line in pins.splitlines() if line.startswith("dify_plugin=="))
    assert tested.split("==")[1] in (PLUGIN / "README.md").read_text()  # the README says it


def test_difypkg_is_the_plugin_folder_without_what_difyignore_names(tmp_path: Path) -> None:
    source = tmp_path / "plugin"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__"))
    # what a developer's folder holds and must not be shipped: a cache, a local .env
    (source / "provider" / "__pycache__").mkdir()
    (source / "provider" / "__pycache__" / "jina_v3.cpython-312.pyc").write_bytes(b"x")
    (source / ".env").write_text("REMOTE_INSTALL_KEY=secret\n")
    out = tmp_path / "jina_v3.difypkg"
    subprocess.run(
        [
            sys.executable,
            str(source / "build_difypkg.py"),
            "--source",
            str(source),
            "--output",
            str(out),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    names = set(zipfile.ZipFile(out).namelist())
    assert {"manifest.yaml", "main.py", "requirements.txt", "_assets/icon.svg"} <= names
    assert {"README.md", "PRIVACY.md"} <= names
    assert "provider/jina_v3.py" in names and "models/text_embedding/text_embedding.py" in names
    assert "models/text_embedding/jina-embeddings-v3.yaml" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert ".env" not in names and "build_difypkg.py" not in names
