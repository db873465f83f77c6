"""One canary key through every component; it must never come out anywhere.

The canary is the key of our server and of every client (providers, Haystack, LlamaIndex,
LangChain, the CLI). The sweep collects everything a user or an operator could see — logs of
every logger at DEBUG, ``repr``/``str``, exception messages and tracebacks (including a 401
from our server), ``to_dict``/JSON, pipeline YAML, pickles, CLI output, HTTP error answers —
and checks that neither the key nor a recognizable piece of it is in any of them.
"""

from __future__ import annotations

import json
import logging
import pickle
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jv3_integrations import JinaAPIProvider, LocalProvider, load_provider
from jv3_integrations.core import AuthenticationError, Jv3Error
from tests.support.server import running_server

CANARY = "jina_CANARY_7f3e9d1c5b2a48e6a0c4f1d2e3b4a5c6"
PIECES = [CANARY, CANARY[6:26], CANARY[-20:]]  # the whole key and distinctive parts of it


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog capturing DEBUG from every logger (including ones that set their own level)."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.propagate = True
        lg.disabled = False
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for lg, level, propagate, disabled in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled


class Sweep:
    """Everything seen, labelled; ``check`` fails naming where the key showed up."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def add(self, where: str, value: Any) -> None:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        self.seen.append((where, value if isinstance(value, str) else repr(value)))

    def error(self, where: str, exc: BaseException) -> None:
        self.add(f"{where}: str", str(exc))
        self.add(f"{where}: repr", repr(exc))
        self.add(f"{where}: traceback", "".join(traceback.format_exception(exc)))
        for attr in ("detail", "code", "request_id"):
            if getattr(exc, attr, None) is not None:
                self.add(f"{where}: .{attr}", getattr(exc, attr))

    def check(self) -> None:
        leaks = [where for where, text in self.seen for piece in PIECES if piece in text]
        assert not leaks, f"the key leaked into: {sorted(set(leaks))}"
        assert len(self.seen) > 40  # the sweep really looked at things


def _expect_error(sweep: Sweep, where: str, fn: Any, cls: type[BaseException]) -> None:
    try:
        fn()
    except cls as exc:
        sweep.error(where, exc)
    else:
        raise AssertionError(f"{where}: no {cls.__name__} raised")


def test_canary_key_never_appears_anywhere(
    local_provider: LocalProvider,
    every_logger_at_debug: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from haystack import Document, Pipeline
    from haystack.utils import Secret

    from jv3_integrations.cli import main
    from jv3_integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder
    from jv3_integrations.langchain import JinaV3Embeddings
    from jv3_integrations.llama_index import JinaV3Embedding

    sweep = Sweep()
    monkeypatch.setenv("JINA_API_KEY", CANARY)
    with (
        running_server(local_provider, api_key=CANARY) as url,
        running_server(local_provider, api_key="another-key") as wrong,
    ):
        # -- the server: wrong keys (some close to the canary) get 401s that echo nothing
        for bad in (CANARY[:-1], CANARY + "x", CANARY.upper(), f"{CANARY} {CANARY}"):
            r = httpx.post(
                f"{url}/v1/embeddings",
                json={"model": "jina-embeddings-v3", "input": ["x"]},
                headers={"Authorization": f"Bearer {bad}"},
            )
            assert r.status_code == 401
            sweep.add("server 401 body", r.text)
            sweep.add("server 401 headers", str(dict(r.headers)))

        # -- the provider, key given explicitly, from the environment, through load_provider
        for where, provider in (
            ("provider(api_key=)", JinaAPIProvider(api_key=CANARY, base_url=url)),
            ("provider($JINA_API_KEY)", JinaAPIProvider(base_url=url)),
            ("load_provider(url)", load_provider(url, api_key=CANARY)),
        ):
            assert isinstance(provider, JinaAPIProvider)
            emb = provider.embed(["hello"], task="retrieval.query")
            sweep.add(f"{where}: embeddings", repr(emb))
            sweep.add(f"{where}: repr", repr(provider))
            sweep.add(f"{where}: str", str(provider))
            sweep.add(f"{where}: pickle", pickle.dumps(provider))
            provider.close()
        # a 401 from our server, and a 401 from a server with another key
        denied = JinaAPIProvider(api_key=CANARY, base_url=wrong, max_retries=0)
        _expect_error(sweep, "provider 401", lambda: denied.embed(["x"]), AuthenticationError)
        denied.close()

        # -- Haystack: Secret from the environment serializes as its name, never its value
        text_embedder = JinaV3TextEmbedder(
            provider=url, api_key=Secret.from_env_var("JINA_API_KEY")
        )
        doc_embedder = JinaV3DocumentEmbedder(provider=url, progress_bar=False)
        text_embedder.run(text="hello")
        doc_embedder.run(documents=[Document(content="hello")])
        for where, component in (("haystack text", text_embedder), ("haystack docs", doc_embedder)):
            sweep.add(f"{where}: to_dict", json.dumps(component.to_dict()))
            sweep.add(f"{where}: repr", repr(component))
        pipeline = Pipeline()
        pipeline.add_component("embedder", JinaV3TextEmbedder(provider=url))
        sweep.add("haystack pipeline YAML", pipeline.dumps())
        sweep.add("haystack pipeline repr", repr(pipeline))
        token_embedder = JinaV3TextEmbedder(provider=url, api_key=Secret.from_token(CANARY))
        token_embedder.run(text="hello")
        sweep.add("haystack token repr", repr(token_embedder))
        _expect_error(sweep, "haystack token to_dict", token_embedder.to_dict, Exception)
        denied_h = JinaV3TextEmbedder(provider=wrong, api_key=Secret.from_token(CANARY))
        _expect_error(sweep, "haystack 401", lambda: denied_h.run(text="x"), Jv3Error)

        # -- LlamaIndex
        llama = JinaV3Embedding(url, api_key=CANARY)
        llama.get_text_embedding("hello")
        llama.get_query_embedding("hello")
        sweep.add("llama to_dict", json.dumps(llama.to_dict()))
        sweep.add("llama to_json", llama.to_json())
        sweep.add("llama model_dump_json", llama.model_dump_json())
        sweep.add("llama repr", repr(llama))
        sweep.add("llama str", str(llama))
        # (not swept: pickles of the LlamaIndex/LangChain objects carry an explicit api_key on
        # purpose, so IngestionPipeline(num_workers=...) worker processes can use it)
        denied_l = JinaV3Embedding(wrong, api_key=CANARY)
        _expect_error(sweep, "llama 401", lambda: denied_l.get_text_embedding("x"), Jv3Error)

        # -- LangChain
        lc = JinaV3Embeddings(url, api_key=CANARY)
        lc.embed_documents(["hello"])
        lc.embed_query("hello")
        sweep.add("langchain repr", repr(lc))
        sweep.add("langchain str", str(lc))
        sweep.add("langchain model_dump", str(lc.model_dump()))
        sweep.add("langchain model_dump_json", lc.model_dump_json())
        denied_c = JinaV3Embeddings(wrong, api_key=CANARY)
        _expect_error(sweep, "langchain 401", lambda: denied_c.embed_query("x"), Jv3Error)

        # -- the CLI: a good call, a 401, and the same with JV3_DEBUG tracebacks
        capsys.readouterr()
        assert main(["embed", "--provider", url, "hello"]) == 0
        out = capsys.readouterr()
        assert out.out.strip()
        sweep.add("cli embed stdout", out.out)
        sweep.add("cli embed stderr", out.err)
        for debug in ("0", "1"):
            monkeypatch.setenv("JV3_DEBUG", debug)
            try:
                assert main(["embed", "--provider", wrong, "hello"]) != 0
            except Jv3Error as exc:  # JV3_DEBUG=1 lets the error (and its traceback) through
                assert debug == "1"
                sweep.error("cli 401 (JV3_DEBUG=1)", exc)
            out = capsys.readouterr()
            assert out.err.strip() or debug == "1"
            sweep.add(f"cli 401 stderr (JV3_DEBUG={debug})", out.err)
            sweep.add(f"cli 401 stdout (JV3_DEBUG={debug})", out.out)

    logs = every_logger_at_debug
    assert any(r.levelno == logging.DEBUG for r in logs.records)  # DEBUG really was captured
    sweep.add("logs (all loggers, DEBUG)", logs.text)
    for record in logs.records:
        sweep.add(f"log record {record.name}", f"{record.getMessage()} {record.args!r}")
    sweep.check()


# -- input texts: SECURITY.md "logs never hold input texts" ---------------------------------

SECRET_TEXT = "Quarterly merger plan codename PELICAN-OMEGA-5521 for the board only."
TEXT_PIECES = ["PELICAN-OMEGA-5521", "merger plan codename"]


def test_input_texts_never_appear_in_logs(
    local_provider: LocalProvider,
    every_logger_at_debug: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    """Every path a text takes, with every logger at DEBUG: no log line holds the text."""
    from haystack import Document

    from jv3_integrations import embed_chunks
    from jv3_integrations.cli import main
    from jv3_integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder
    from jv3_integrations.langchain import JinaV3Embeddings
    from jv3_integrations.llama_index import JinaV3Embedding
    from jv3_integrations.milvus import MilvusStore
    from jv3_integrations.qdrant import QdrantStore

    long_text = " ".join([SECRET_TEXT] * 600)  # > max_length: truncated, logged as a count
    document = " ".join([SECRET_TEXT] * 40)
    with running_server(local_provider) as url:
        api = JinaAPIProvider(api_key="k", base_url=url)
        for provider in (local_provider, api):
            provider.embed([SECRET_TEXT, long_text], task="retrieval.passage")
            provider.embed([SECRET_TEXT, SECRET_TEXT], task="retrieval.passage", late_chunking=True)
            embed_chunks(provider, document, dimensions=32)
            provider.embed_queries([SECRET_TEXT])
        # a rejected request (bad dimensions) and a server-side truncation
        r = httpx.post(
            f"{url}/v1/embeddings",
            json={"model": "jina-embeddings-v3", "input": [SECRET_TEXT], "dimensions": 0},
        )
        assert r.status_code == 422
        api.close()

        for store in (
            QdrantStore(local_provider, collection="logs", dimensions=32, progress_bar=False),
            MilvusStore(
                local_provider,
                uri=str(tmp_path / "m.db"),
                collection="logs",
                dimensions=32,
                progress_bar=False,
            ),
        ):
            store.add_documents([document, SECRET_TEXT])
            assert store.search(SECRET_TEXT, k=2)

        JinaV3TextEmbedder(provider=url).run(text=SECRET_TEXT)
        JinaV3DocumentEmbedder(provider=url, progress_bar=False).run(
            documents=[Document(content=SECRET_TEXT)]
        )
        JinaV3Embedding(url, api_key="k").get_text_embedding(SECRET_TEXT)
        JinaV3Embeddings(url, api_key="k").embed_query(SECRET_TEXT)

        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "plan.txt").write_text(document, encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("JV3_DEBUG", "1")
        store_arg = ["--store", "qdrant:./q", "--provider", url]
        assert main(["index", "docs", *store_arg, "--no-progress"]) == 0
        assert main(["search", SECRET_TEXT, *store_arg]) == 0
        capsys.readouterr()

    logs = every_logger_at_debug
    assert sum(r.levelno == logging.DEBUG for r in logs.records) > 5  # DEBUG really captured
    leaks = sorted(
        {
            f"{r.name}: {r.getMessage()[:120]}"
            for r in logs.records
            for piece in TEXT_PIECES
            if piece in f"{r.getMessage()} {r.args!r} {r.exc_text or ''}"
        }
    )
    assert not leaks, f"input text logged by: {leaks}"
