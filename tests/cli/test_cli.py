"""End-to-end tests of the ``jv3`` command on the tiny conformance model.

The main flow (index, search, change, re-index, delete) runs in subprocesses exactly as a user
runs it; the error cases run ``main()`` in-process (same code path, one torch import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jv3_integrations.cli import main

pytestmark = pytest.mark.slow

GERMAN = (
    "Die Zugspitze ist der höchste Berg Deutschlands. Sie liegt an der Grenze zu Österreich.\n\n"
    "Man erreicht den Gipfel mit der Zahnradbahn."
)
ENGLISH = "# Tides\n\nOcean tides are caused by the Moon. Most coasts see two high tides a day."
HTML = (
    "<html><head><title>Paella</title><style>p {color: red}</style></head><body>"
    "<h1>Paella</h1><p>La paella es un plato de arroz de Valencia &amp; lleva azafrán.</p>"
    "<script>alert('no')</script></body></html>"
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JINA_API_KEY", "JV3_PROVIDER"}}
    env.update({"JV3_STORE": "", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"})
    env["HF_HOME"] = str(tmp_path / "hf-home")
    return env


def _jv3(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jv3_integrations", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_index_search_reindex_delete(tmp_path: Path, conformance_dir: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "zugspitze.txt").write_text(GERMAN, encoding="utf-8")
    (docs / "tides.md").write_text(ENGLISH, encoding="utf-8")
    (docs / "sub" / "paella.html").write_text(HTML, encoding="utf-8")
    (docs / "broken.txt").write_bytes(bytes(range(128, 256)) * 40)  # no text encoding
    (docs / "notes.csv").write_text("a,b\n", encoding="utf-8")  # unsupported: ignored
    (docs / ".hidden").mkdir()
    (docs / ".hidden" / "secret.txt").write_text("never indexed", encoding="utf-8")
    env = _env(tmp_path)
    provider = f"local:{conformance_dir}"
    store = ["--store", "milvus:./index/jv3.db"]

    # 1. first index: three documents, one unreadable file skipped with a warning
    proc = _jv3(
        ["index", "docs", *store, "--provider", provider, "--no-progress", "--json"], tmp_path, env
    )
    first = json.loads(_ok(proc))
    assert (first["new"], first["changed"], first["unchanged"], first["skipped"]) == (3, 0, 0, 1)
    assert first["files_embedded"] == 3
    assert first["chunks_embedded"] == first["chunks_total"] >= 3
    assert first["settings"]["late_chunking"] is True
    assert first["settings"]["provider"] == provider
    assert first["tokens"] > 0
    warnings = [line for line in proc.stderr.splitlines() if "broken.txt" in line]
    assert len(warnings) == 1 and "UTF-8" in warnings[0], proc.stderr
    assert (tmp_path / "index" / "jv3.db.jv3-state.json").is_file()

    # 2. search (provider and dimensions come from the index state)
    proc = _jv3(
        ["search", "Wie hoch ist die Zugspitze?", *store, "--k", "10", "--json"], tmp_path, env
    )
    result = json.loads(_ok(proc))
    hits = result["hits"]
    assert len(hits) == first["chunks_total"]  # k larger than the index: every chunk once
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    sources = {
        "docs/zugspitze.txt": GERMAN,
        "docs/tides.md": ENGLISH,
    }
    files = {h["file"] for h in hits}
    assert files == {"docs/zugspitze.txt", "docs/tides.md", "docs/sub/paella.html"}
    for h in hits:
        if h["file"] in sources:  # the chunk is exactly the file's text at its span
            assert sources[h["file"]][h["start"] : h["end"]] == h["text"]
        else:
            assert "Valencia & lleva" in h["text"] or "Paella" in h["text"]
            assert "alert" not in h["text"] and "color" not in h["text"]

    # the human-readable output names files and shows the text
    plain = _ok(_jv3(["search", "Paella", *store, "--k", "3"], tmp_path, env))
    assert plain.splitlines()[0].startswith(" 1. ") and "docs/" in plain

    # 3. change one file, add nothing: only that file is embedded again
    (docs / "tides.md").write_text(
        ENGLISH + "\n\nSpring tides happen at new and full moon.", encoding="utf-8"
    )
    proc = _jv3(["index", "docs", *store, "--no-progress", "--json"], tmp_path, env)
    second = json.loads(_ok(proc))
    assert (second["new"], second["changed"], second["unchanged"]) == (0, 1, 2)
    assert second["files_embedded"] == 1
    assert second["skipped"] == 1  # the broken file is still skipped (and still counted)
    assert 1 <= second["chunks_embedded"] < first["chunks_embedded"]

    # 4. nothing changed: nothing embedded
    third = json.loads(
        _ok(_jv3(["index", "docs", *store, "--no-progress", "--json"], tmp_path, env))
    )
    assert (third["unchanged"], third["files_embedded"], third["chunks_embedded"]) == (3, 0, 0)

    # 5. delete a file: its chunks leave the store
    (docs / "zugspitze.txt").unlink()
    fourth = json.loads(
        _ok(_jv3(["index", "docs", *store, "--no-progress", "--json"], tmp_path, env))
    )
    assert fourth["removed"] == 1 and fourth["files_embedded"] == 0
    assert fourth["chunks_deleted"] >= 1
    assert fourth["chunks_total"] == third["chunks_total"] - fourth["chunks_deleted"]
    result = json.loads(
        _ok(_jv3(["search", "Zugspitze", *store, "--k", "50", "--json"], tmp_path, env))
    )
    assert {h["file"] for h in result["hits"]} == {"docs/tides.md", "docs/sub/paella.html"}
    assert len(result["hits"]) == fourth["chunks_total"]

    # 6. the summary line (no --json) names the counts
    line = _ok(_jv3(["index", "docs", *store, "--no-progress"], tmp_path, env)).strip()
    assert line.startswith("Indexed 2 files (0 new, 0 changed, 2 unchanged, 1 skipped)"), line


def test_module_help_works_without_torch(tmp_path: Path) -> None:
    code = (
        "import sys, runpy\n"
        "for name in ('torch', 'tokenizers', 'qdrant_client', 'pymilvus'):\n"
        "    sys.modules[name] = None  # any import of them fails\n"
        "sys.argv = ['jv3', '--help']\n"
        "runpy.run_module('jv3_integrations', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("index", "search", "demo", "embed", "serve"):
        assert command in proc.stdout
    proc = _jv3(["index", "--help"], tmp_path, _env(tmp_path))
    assert "--late-chunking" in _ok(proc) and "--no-late-chunking" in proc.stdout


def test_demo_runs_cross_lingual_queries(tmp_path: Path, conformance_dir: Path) -> None:
    proc = _jv3(
        ["demo", "--provider", f"local:{conformance_dir}", "--json", "--no-progress", "--k", "2"],
        tmp_path,
        _env(tmp_path),
    )
    out = json.loads(_ok(proc))
    # the tiny test tokenizer cannot read Chinese or Japanese: the demo leaves them out
    assert out["index"]["files"] >= 20 and out["index"]["skipped"] == 0
    assert out["left_out"]["languages"] == ["ja", "zh"]
    assert len(out["queries"]) >= 5
    langs = {q["lang"] for q in out["queries"]}
    assert {"en", "de", "es", "fr"} <= langs
    for q in out["queries"]:
        assert len(q["hits"]) == 2
        assert all(h["text"] for h in q["hits"])


# -- in-process: embed and the one-line errors -------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("jv3: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("JINA_API_KEY", "JV3_PROVIDER", "JV3_STORE", "JV3_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_embed_json_and_npy(
    capsys: pytest.CaptureFixture[str], clean_env: Path, local_provider, conformance_dir: Path
) -> None:
    texts = ["Berlin is the capital of Germany.", "Wie hoch ist die Zugspitze?"]
    spec = f"local:{conformance_dir}"
    code, out, _ = _run(
        capsys,
        "embed",
        *texts,
        "--task",
        "retrieval.query",
        "--dimensions",
        "32",
        "--provider",
        spec,
    )
    assert code == 0
    data = json.loads(out)
    vectors = np.asarray(data["vectors"], dtype=np.float32)
    assert vectors.shape == (2, 32) and data["task"] == "retrieval.query"
    expected = local_provider.embed(texts, task="retrieval.query", dimensions=32).vectors
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert data["usage"]["total_tokens"] > 0

    # npy through a subprocess: binary on stdout, lines from stdin
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jv3_integrations",
            "embed",
            "-",
            "--format",
            "npy",
            "--provider",
            spec,
        ],
        input=("\n".join(texts) + "\n\n").encode(),
        capture_output=True,
        timeout=300,
        env=_env(clean_env),
    )
    assert proc.returncode == 0, proc.stderr.decode()
    import io

    arr = np.load(io.BytesIO(proc.stdout))
    np.testing.assert_allclose(arr, local_provider.embed(texts).vectors, atol=1e-6)


def test_no_key_and_no_cached_model_is_one_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    code, _, err = _run(capsys, "embed", "hello")
    line = _one_line_error(code, err)
    # one sentence, then the one command that fixes it, and the API as the other way (issue 27)
    assert "not downloaded" in line and "Fix: hf download jinaai/jina-embeddings-v3" in line
    assert "JINA_API_KEY" in line and len(line) < 400


def test_dimension_mismatch_is_one_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    (clean_env / "a.txt").write_text("Ocean tides are caused by the Moon.", encoding="utf-8")
    spec = f"local:{conformance_dir}"
    base = ["--store", "qdrant:./q", "--provider", spec, "--no-progress"]
    code, out, err = _run(capsys, "index", "a.txt", *base, "--dimensions", "64")
    assert code == 0, err
    assert "1 new" in out

    code, _, err = _run(capsys, "index", "a.txt", *base, "--dimensions", "32")
    line = _one_line_error(code, err)
    assert "dimension" in line and "64" in line and "--dimensions 64" in line

    # the store itself also refuses (state file lost, collection still 64-d)
    (clean_env / "q.jv3-state.json").unlink()
    code, _, err = _run(capsys, "index", "a.txt", *base, "--dimensions", "32")
    line = _one_line_error(code, err)
    assert "dimension 64" in line


def test_other_newcomer_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    spec = f"local:{conformance_dir}"
    cases = [
        (["index", "no-such-folder", "--provider", spec], "no such file or folder"),
        (["index", ".", "--store", "redis:x", "--provider", spec], "unknown store"),
        (["search", "hello", "--store", "qdrant:./empty", "--provider", spec], "jv3 index"),
        (["index", ".", "--chunker", "words", "--provider", spec], "unknown chunker"),
        (["embed", "a", "-"], "cannot be mixed"),
    ]
    for args, needle in cases:
        code, _, err = _run(capsys, *args)
        assert needle in _one_line_error(code, err), args
    assert not (clean_env / "empty").exists()  # searching did not create a store


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search"])
    assert exc.value.code == 2
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["search", "x", "--k", "0"])
    assert exc.value.code == 2


def test_serve_then_embed_through_it(tmp_path: Path, conformance_dir: Path) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(tmp_path)
    key = "cli-serve-test-key"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jv3_integrations",
            "serve",
            "--model",
            str(conformance_dir),
            "--port",
            str(port),
            "--api-key",
            key,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "jv3 serve did not start"
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        out = _ok(
            _jv3(
                ["embed", "hola", "--provider", url, "--dimensions", "16"],
                tmp_path,
                {**env, "JINA_API_KEY": key},
            )
        )
        data = json.loads(out)
        assert np.asarray(data["vectors"]).shape == (1, 16)
        # a wrong key is one clear line, not a traceback
        proc = _jv3(
            ["embed", "hola", "--provider", url], tmp_path, {**env, "JINA_API_KEY": "wrong"}
        )
        assert proc.returncode == 1 and proc.stderr.startswith("jv3: error: ")
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_serve_refuses_public_host_without_key(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    conformance_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    def started(*args: object, **kwargs: object) -> None:  # a broken guard fails, never hangs
        pytest.fail("jv3 serve started an unauthenticated server on 0.0.0.0")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.delenv("JV3_SERVER_API_KEY", raising=False)
    code, _, err = _run(capsys, "serve", "--model", str(conformance_dir), "--host", "0.0.0.0")
    assert "--api-key" in _one_line_error(code, err)


def test_store_deleted_but_state_left_reembeds(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    import shutil

    (clean_env / "a.md").write_text("Paella comes from Valencia. It has saffron.", encoding="utf-8")
    args = ["index", "a.md", "--store", "qdrant:./q", "--provider", f"local:{conformance_dir}"]
    args += ["--no-progress", "--json"]
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    assert json.loads(out)["files_embedded"] == 1
    shutil.rmtree(clean_env / "q")  # the user deleted the store, the state file stayed
    code, out, err = _run(capsys, *args)
    report = json.loads(out)
    assert code == 0 and report["files_embedded"] == 1 and report["chunks_total"] >= 1
    assert "store is empty" in err


def test_pdfs_without_the_extra_are_skipped_with_one_line(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    conformance_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # as if the pdf extra were not installed
    (clean_env / "a.txt").write_text("Tides follow the Moon.", encoding="utf-8")
    for name in ("x.pdf", "y.pdf", "z.pdf"):
        (clean_env / name).write_bytes(b"%PDF-1.4\n")
    code, out, err = _run(
        capsys,
        "index",
        ".",
        "--store",
        "qdrant::memory:",
        "--provider",
        f"local:{conformance_dir}",
        "--no-progress",
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report["skipped"] == 3 and report["files_embedded"] == 1
    lines = [line for line in err.splitlines() if ".pdf" in line]
    assert len(lines) == 1 and "2 more" in lines[0] and "jv3-integrations[pdf]" in lines[0]


def test_chunker_and_late_chunking_settings_are_kept_and_changes_reembed(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    (clean_env / "a.md").write_text(ENGLISH + " " + ENGLISH, encoding="utf-8")
    (clean_env / "b.txt").write_text(GERMAN, encoding="utf-8")
    base = ["index", ".", "--store", "qdrant:./q", "--no-progress", "--json"]
    spec = f"local:{conformance_dir}"
    code, out, err = _run(
        capsys, *base, "--provider", spec, "--chunker", "tokens:8", "--no-late-chunking"
    )
    assert code == 0, err
    first = json.loads(out)
    assert (
        first["settings"]["chunker"] == "tokens:8" and first["settings"]["late_chunking"] is False
    )
    assert first["chunks_embedded"] > 2 * 2  # 8-token chunks: several per document

    # no flags: the stored settings are reused, nothing is re-embedded
    code, out, err = _run(capsys, *base)
    again = json.loads(out)
    assert code == 0 and again["settings"] == first["settings"] and again["files_embedded"] == 0

    # another chunker: every file is re-embedded, the old chunks are replaced, not kept
    code, out, err = _run(capsys, *base, "--chunker", "sentences")
    third = json.loads(out)
    assert code == 0 and third["changed"] == 2 and third["files_embedded"] == 2
    assert "re-embedding every file" in err
    assert third["chunks_total"] == third["chunks_embedded"] < first["chunks_total"]


def test_unwritable_store_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    (clean_env / "a.txt").write_text("Tides follow the Moon.", encoding="utf-8")
    (clean_env / "blocker").write_text("a file where the store folder should go", encoding="utf-8")
    code, _, err = _run(
        capsys,
        "index",
        "a.txt",
        "--store",
        "qdrant:./blocker/q",
        "--provider",
        f"local:{conformance_dir}",
    )
    assert "blocker" in _one_line_error(code, err)


@pytest.mark.network
def test_index_and_search_through_our_server(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    jina_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import SERVER_API_KEY

    monkeypatch.setenv("JINA_API_KEY", SERVER_API_KEY)
    (clean_env / "de.txt").write_text(GERMAN, encoding="utf-8")
    (clean_env / "en.md").write_text(ENGLISH, encoding="utf-8")
    store = ["--store", "milvus:./srv.db"]
    code, out, err = _run(
        capsys,
        "index",
        ".",
        *store,
        "--provider",
        jina_server_url,
        "--dimensions",
        "32",
        "--no-progress",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["files_embedded"] == 2 and report["settings"]["provider"] == jina_server_url
    assert report["settings"]["dimensions"] == 32 and report["settings"]["late_chunking"] is True
    assert SERVER_API_KEY not in (clean_env / "srv.db.jv3-state.json").read_text(encoding="utf-8")
    code, out, err = _run(
        capsys, "search", "Zugspitze", *store, "--json"
    )  # provider from the state
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert {h["file"] for h in hits} == {"de.txt", "en.md"}


def test_store_locked_by_another_process_is_one_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path, conformance_dir: Path
) -> None:
    # Milvus Lite holds its file lock until the process that opened it exits: index in a
    # subprocess, hold the store in another one, then search here.
    (clean_env / "a.txt").write_text("Tides follow the Moon.", encoding="utf-8")
    spec = f"local:{conformance_dir}"
    store = ["--store", "milvus:./busy.db"]
    _ok(
        _jv3(
            ["index", "a.txt", *store, "--provider", spec, "--no-progress"],
            clean_env,
            _env(clean_env),
        )
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom pymilvus import MilvusClient\n"
            "c = MilvusClient('busy.db')\nprint('open', flush=True)\ntime.sleep(60)\n",
        ],
        cwd=clean_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        code, _, err = _run(capsys, "search", "tides", *store)
        assert "another process" in _one_line_error(code, err)
    finally:
        holder.kill()
        holder.wait()
