"""Issue 17: what a new user trips over on a first run of ``jv3`` (one test per item).

Error cases run ``main()`` in-process (one torch import); the end-to-end first run is a
subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jv3_integrations
from jv3_integrations.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- item 6: --store qdrant:FILE ------------------------------------------------------------


def test_qdrant_store_on_a_file_says_what_to_do(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    (clean_env / "doc.txt").write_text("Tides follow the Moon.", encoding="utf-8")
    (clean_env / "afile").write_text("not a folder", encoding="utf-8")
    code, _, err = _run(
        capsys, "index", "doc.txt", "--store", "qdrant:./afile",
        "--provider", f"local:{conformance_dir}", "--no-progress",
    )  # fmt: skip
    [line] = _lines(err)
    assert code == 1 and "File exists" not in line
    assert "is a file" in line and "folder" in line and "milvus:" in line


# -- item 11: skips counted by reason, --include-hidden, plural -------------------------------


def test_skips_are_counted_by_reason_and_include_hidden_indexes_them(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    docs = clean_env / "docs"
    (docs / ".notes").mkdir(parents=True)
    (docs / "a.md").write_text("Paella comes from Valencia.", encoding="utf-8")
    (docs / ".notes" / "b.md").write_text("Tides follow the Moon.", encoding="utf-8")
    (docs / ".draft.txt").write_text("Berlin is a city.", encoding="utf-8")
    (docs / "data.csv").write_text("a,b", encoding="utf-8")
    base = ["index", "docs", "--provider", f"local:{conformance_dir}", "--no-progress"]

    code, out, _ = _run(capsys, *base, "--store", "qdrant::memory:")
    [line] = _lines(out)
    assert code == 0 and line.startswith("Indexed 1 file (1 new,"), line  # not "1 files"
    assert "not indexed: 1 hidden file, 1 hidden folder, 1 unsupported type" in line
    assert "--include-hidden" in line

    code, out, _ = _run(capsys, *base, "--store", "qdrant::memory:", "--json")
    report = json.loads(out)
    assert report["ignored"] == {"hidden folder": 1, "hidden file": 1, "unsupported type": 1}

    code, out, _ = _run(capsys, *base, "--store", "qdrant::memory:", "--include-hidden", "--json")
    report = json.loads(out)
    assert code == 0 and report["files"] == 3 and report["ignored"] == {"unsupported type": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- item 7: third-party log lines are not "error"s ---------------------------------------------


def test_third_party_log_lines_only_with_jv3_debug(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from jv3_integrations._cli.logs import command_logging

    def emit() -> str:
        logging.getLogger("grpc._server").error(
            "Exception calling application: Method not implemented!"
        )
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        logging.getLogger("jv3_integrations._cli.indexer").warning("ours")
        return capsys.readouterr().err

    with command_logging(debug=False):
        err = emit()
    assert _lines(err) == ["jv3: warning: ours"]
    with command_logging(debug=True):
        err = emit()
    assert "Method not implemented" in err and "Retrying" in err and "ours" in err


def test_the_hubs_own_handler_is_quiet_too_without_jv3_debug() -> None:
    """huggingface_hub puts a stderr handler on its own logger when imported (the local model
    imports it): its retry chatter must not reach a user's terminal past our filter."""
    code = (
        "import logging\n"
        "from huggingface_hub import snapshot_download  # what the local model imports\n"
        "from jv3_integrations._cli.logs import command_logging\n"
        "with command_logging(debug=False):\n"
        "    logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s')\n"
        "    logging.getLogger('jv3_integrations.x').warning('ours')\n"
        "with command_logging(debug=True):\n"
        "    logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 2s')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Retrying in 1s" not in proc.stderr
    assert "jv3: warning: ours" in proc.stderr
    assert "Retrying in 2s" in proc.stderr


# -- item 8: offline, fail within 5 s with one message -------------------------------------------


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def test_offline_demo_without_provider_fails_fast_with_one_line(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: None,
) -> None:
    from huggingface_hub import constants

    from jv3_integrations.core import _checkpoint

    monkeypatch.delenv("HF_HUB_OFFLINE")  # downloads allowed, but the Hub is unreachable
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(clean_env / "hub-cache"))
    monkeypatch.setattr(_checkpoint, "_reachable", {})
    t0 = time.perf_counter()
    code, _, err = _run(capsys, "demo", "--no-progress")
    elapsed = time.perf_counter() - t0
    [line] = _lines(err)  # one message: no Hub retry lines, nothing printed twice
    assert code == 1 and elapsed < 5, (elapsed, err)
    assert "cannot be reached" in line and "hf download" in line


def test_unresolvable_api_host_fails_fast_without_retries(
    capsys: pytest.CaptureFixture[str], clean_env: Path, no_proxy: None
) -> None:
    from jv3_integrations import APIConnectionError, JinaAPIProvider

    provider = JinaAPIProvider(base_url="http://jv3-unreachable.invalid", api_key="k")
    t0 = time.perf_counter()
    with pytest.raises(APIConnectionError, match="does not resolve"):
        provider.embed(["x"])  # default max_retries=6: ~45 s of backoff if it retried
    assert time.perf_counter() - t0 < 5
    provider.close()

    t0 = time.perf_counter()
    code, _, err = _run(capsys, "demo", "--provider", "http://jv3-unreachable.invalid")
    [line] = _lines(err)
    assert code == 1 and time.perf_counter() - t0 < 5
    assert "does not resolve" in line and "Indexing" not in err


# -- item 9: each error its own fix ---------------------------------------------------------


def test_serve_errors_carry_no_jina_key_hint(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    code, _, err = _run(
        capsys, "serve", "--model", "some/model", "--host", "0.0.0.0", "--port", str(_free_port())
    )
    [line] = _lines(err)
    assert code == 1 and "without an API key" in line
    assert "JINA_API_KEY" not in line and "--provider" not in line


def test_self_hosted_401_says_where_the_cli_takes_the_key(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    jina_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JINA_API_KEY", "not-the-server-key")
    code, _, err = _run(capsys, "embed", "hello", "--provider", jina_server_url)
    [line] = _lines(err)
    assert code == 1 and "refused the key" in line
    assert "sends $JINA_API_KEY as the Bearer key" in line and "JV3_SERVER_API_KEY" in line
    assert "local:DIR" not in line  # the Jina-API fix does not apply here

    monkeypatch.delenv("JINA_API_KEY")
    code, _, err = _run(capsys, "embed", "hello", "--provider", "api")
    [line] = _lines(err)
    assert code == 1 and "To fix: set JINA_API_KEY" in line


# -- item 10: jv3 serve on a busy port --------------------------------------------------------


def test_serve_on_a_busy_port_is_one_line_and_exit_3_before_the_model_loads(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    from jv3_integrations.cli import EXIT_PORT_IN_USE

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # A model that cannot load: if it were loaded first, its error would show instead.
        code, out, err = _run(capsys, "serve", "--model", str(clean_env / "missing-model"),
                              "--port", str(port))  # fmt: skip
    [line] = _lines(err)
    assert code == EXIT_PORT_IN_USE == 3 and not out
    assert line == (
        f"jv3: error: port {port} on 127.0.0.1 is already in use (another jv3 serve?); stop "
        "that process or pick another port with --port"
    )


# -- item 12: the Pinecone example without a key ----------------------------------------------


def test_pinecone_example_without_key_is_one_line(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "pinecone_quickstart.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINECONE")}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    [line] = _lines(proc.stderr)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "PINECONE_API_KEY" in line and "--loopback" in line


# -- item 15: the first download names the weights' licence -----------------------------------


def test_first_download_message_names_the_licence(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, conformance_dir: Path, no_proxy: None
) -> None:
    from huggingface_hub import constants

    from jv3_integrations._cli.providers import first_download_notice
    from jv3_integrations.core import _checkpoint

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(clean_env / "hub-cache"))
    monkeypatch.setattr(_checkpoint, "_reachable", {})
    with socket.socket() as hub:  # something listening where the Hub would be
        hub.bind(("127.0.0.1", 0))
        hub.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")
        notice = first_download_notice("local:jinaai/jina-embeddings-v3")
    assert notice is not None
    assert "CC BY-NC 4.0" in notice and "Apache-2.0" in notice and "1.1 GB" in notice
    assert first_download_notice(f"local:{conformance_dir}") is None  # nothing to download
    assert first_download_notice("api") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert first_download_notice("local:jinaai/jina-embeddings-v3") is None


# -- items 7, 16 and the end-to-end proof: the README's first command -------------------------


def test_first_run_of_the_readme_command_has_no_error_line(
    tmp_path: Path, conformance_dir: Path
) -> None:
    """The README's first command (``jv3 demo --provider local:<tiny-v3>``) in a subprocess.

    The README installs into a fresh venv first; here the current interpreter (with this
    checkout on PYTHONPATH) runs the same command, in a fresh working folder and an empty
    Hugging Face home. stderr must hold no line saying "error" (Milvus Lite's gRPC log line
    used to), and stdout must say that the tiny checkpoint's weights are random.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG", "GRPC_VERBOSITY"}
    }
    env.update({"HF_HOME": str(tmp_path / "hf-home"), "NO_COLOR": "1"})
    # the package this test imported (the checkout's src/, or the installed wheel under tox)
    here = str(Path(jv3_integrations.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "jv3_integrations", "demo", "--provider",
         f"local:{conformance_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    bad = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert not bad, proc.stderr
    assert "Traceback" not in proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Note: ") and "random test weights" in first
    assert "meaningless" in first
    assert "queries found their expected passage" in proc.stdout
