"""Issue 26 item 3: a store server (or a proxy) that echoes the request's headers in its error
body must not get the store's key printed: not in the exception, its repr, args or chained
causes, nor in the ``jv3`` CLI's error line.

The servers are real loopback HTTP servers that answer every request with an error whose body
repeats the request headers (as raw header lines, as JSON, and the bare values), reached by the
real ``qdrant_client`` and ``pinecone`` clients through our stores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jv3_integrations.core._redact import redact_secrets, scrub_exception

ROOT = Path(__file__).resolve().parents[2]
QDRANT_KEY = "qd-canary-7f3a9c1e5b"
PINECONE_KEY = "pc-canary-0d4e8b2a6f"
MILVUS_TOKEN = "root:mv-canary-5a1c9e"
JINA_KEY = "jina_canary_3b7d1f9a"
CANARIES = (QDRANT_KEY, PINECONE_KEY, MILVUS_TOKEN, JINA_KEY, "mv-canary-5a1c9e")


class _Echo(BaseHTTPRequestHandler):
    """Every request: 403 with the request's headers in the body, three ways."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        raw = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        body = json.dumps(
            {
                "status": {"error": f"forbidden; your request was:\n{raw}"},
                "message": f"forbidden; request headers {dict(self.headers.items())}",
                "seen": list(self.headers.values()),
                "code": 7,
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _everything_shown(exc: BaseException) -> str:
    """What any caller could print: str, repr, args, and the whole chain as a traceback."""
    parts = [str(exc), repr(exc), repr(exc.args)]
    parts.extend(traceback.format_exception(exc))
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def _assert_clean(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} shown:\n{text[:3000]}"


# -- the redaction itself ---------------------------------------------------------------------


def test_redact_masks_header_forms_and_known_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", QDRANT_KEY)
    text = (
        f"Authorization: Bearer {JINA_KEY}\napi-key: abc123def\n{{'Api-Key': 'xyz789'}} "
        f'"token": "tok456" token=t0k&page=2 bare {QDRANT_KEY} and {PINECONE_KEY}'
    )
    clean = redact_secrets(text, [PINECONE_KEY])
    for secret in (JINA_KEY, "abc123def", "xyz789", "tok456", "t0k&", QDRANT_KEY, PINECONE_KEY):
        assert secret not in clean
    assert "Bearer ***" in clean and "page=2" in clean and "bare ***" in clean
    # ordinary error text is left alone
    plain = "collection jv3 has 3 points; 8192 tokens at most; dimension 32 != 64"
    assert redact_secrets(plain) == plain


def test_scrub_exception_cleans_the_whole_chain() -> None:
    class HostError(Exception):
        def __init__(self, body: bytes) -> None:
            super().__init__(f"HTTP 403: {body.decode()}")
            self.body = body
            self.headers = {"api-key": QDRANT_KEY, "content-type": "json"}

    try:
        try:
            raise ValueError(f"inner saw {QDRANT_KEY}")
        except ValueError as inner:
            raise HostError(f"echo api-key: {QDRANT_KEY}".encode()) from inner
    except HostError as exc:
        scrub_exception(exc, [QDRANT_KEY])
        _assert_clean(_everything_shown(exc))
        assert isinstance(exc, HostError) and exc.headers["content-type"] == "json"


# -- the stores, against a server that echoes the headers -------------------------------------


def test_qdrant_store_errors_never_show_the_key(local_provider: object, echo_url: str) -> None:
    from jv3_integrations.qdrant import QdrantStore

    store = QdrantStore(local_provider, url=echo_url, api_key=QDRANT_KEY, collection="c")  # type: ignore[arg-type]
    for call in (store.create, store.count, lambda: store.search("hello", k=1)):
        with pytest.raises(Exception) as info:
            call()
        _assert_clean(_everything_shown(info.value))
    store.close()


def test_qdrant_client_given_keeps_its_key_hidden(local_provider: object, echo_url: str) -> None:
    from qdrant_client import QdrantClient

    from jv3_integrations.qdrant import QdrantStore

    client = QdrantClient(url=echo_url, api_key=QDRANT_KEY)
    store = QdrantStore(local_provider, client=client, collection="c")  # type: ignore[arg-type]
    with pytest.raises(Exception) as info:
        store.count()
    _assert_clean(_everything_shown(info.value))
    client.close()


def test_pinecone_store_errors_never_show_the_key(local_provider: object, echo_url: str) -> None:
    from jv3_integrations.pinecone import PineconeStore

    store = PineconeStore(
        local_provider,  # type: ignore[arg-type]
        api_key=PINECONE_KEY,
        host=echo_url,
        collection="docs",
        dimensions=32,
    )
    for call in (store.create, store.count):
        with pytest.raises(Exception) as info:
            call()
        _assert_clean(_everything_shown(info.value))
    store.close()


# -- the CLI's one-line errors ----------------------------------------------------------------


def _jv3(cwd: Path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JINA_API_KEY", "JV3_PROVIDER"}}
    env.update({"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "JV3_STORE": ""})
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "jv3_integrations", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("debug", ["", "1"])
@pytest.mark.parametrize("kind", ["qdrant", "pinecone"])
def test_cli_errors_never_show_the_store_key(
    tmp_path: Path, conformance_dir: Path, echo_url: str, kind: str, debug: str
) -> None:
    (tmp_path / "a.md").write_text("Ocean tides are caused by the Moon.")
    env = {
        "QDRANT_API_KEY": QDRANT_KEY,
        "PINECONE_API_KEY": PINECONE_KEY,
        "PINECONE_HOST": echo_url,
        "JV3_DEBUG": debug,
    }
    store = f"qdrant:{echo_url}" if kind == "qdrant" else "pinecone:docs"
    common = ["--store", store, "--provider", f"local:{conformance_dir}"]
    for args in (["index", ".", "--no-progress", *common], ["search", "tides", *common]):
        proc = _jv3(tmp_path, env, *args)
        assert proc.returncode != 0, proc.stdout
        _assert_clean(proc.stdout + proc.stderr)
        if not debug:
            assert proc.stderr.strip().splitlines()[-1].startswith("jv3: error:"), proc.stderr


def test_milvus_token_never_shown(local_provider: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Milvus server's error that repeats the token (fault injected in the client type)."""
    from jv3_integrations.milvus import MilvusStore

    class EchoingClient:
        def __init__(self, uri: str, token: str = "") -> None:
            self.token = token

        def has_collection(self, name: str) -> bool:
            raise ConnectionError(f"rejected {{'authorization': '{self.token}'}} user {self.token}")

        def close(self) -> None:
            pass

    store = MilvusStore(local_provider, uri="http://127.0.0.1:9", token=MILVUS_TOKEN)  # type: ignore[arg-type]
    monkeypatch.setattr(store, "_client_type", EchoingClient)
    with pytest.raises(ConnectionError) as info:
        store.count()
    _assert_clean(_everything_shown(info.value))
