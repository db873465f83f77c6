"""The ``jv3`` command: index a folder into a local vector store and search it.

Commands::

    jv3 index PATH... [--store URI] [--collection NAME] [--provider SPEC] [--dimensions N]
                      [--late-chunking/--no-late-chunking] [--chunker sentences|tokens:N]
                      [--hybrid] [--engine local|ray] [--ray-address ADDR] [--workers N]
                      [--gpus-per-worker G]
    jv3 search QUERY [--k 5] [--store URI] [--mode hybrid|dense|keyword] [--json]
    jv3 demo
    jv3 embed [TEXT...|-] [--task T] [--dimensions N] [--format json|npy]
    jv3 serve --model DIR_OR_HUB_ID [--host 127.0.0.1] [--port 8080] [--api-key KEY]

Also runs as ``python -m jv3_integrations``. Errors a user can fix are one line on stderr and
a non-zero exit status (set ``JV3_DEBUG=1`` for the traceback). Exit statuses: 0 ok, 1 error,
2 usage, 3 ``jv3 serve``'s port is already in use (checked before the model loads), 130 Ctrl-C.
Third-party log lines (gRPC, Milvus Lite, the Hugging Face Hub) are shown only with
``JV3_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__
from .core import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    InputError,
    Jv3Error,
    ModelLoadError,
    Task,
    default_provider_spec,
)
from .core._validate import check_int

__all__ = ["build_parser", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT_IN_USE = 3
EXIT_INTERRUPTED = 130

_STORE_HELP = (
    "where the index lives: milvus:./jv3.db (Milvus Lite), qdrant:./folder (Qdrant local "
    "mode), qdrant::memory:, qdrant:http(s)://host:6333, milvus:http://host:19530, "
    "pinecone:INDEX (default: $JV3_STORE or {default})"
)
_PROVIDER_HELP = (
    "embedding provider: 'api' (Jina API, key in JINA_API_KEY), 'local:DIR_OR_HUB_ID' (the "
    "local PyTorch model) or the http(s):// URL of a Jina-compatible server such as `jv3 "
    "serve` (default: $JV3_PROVIDER, else 'api' when JINA_API_KEY is set, else "
    "local:jinaai/jina-embeddings-v3)"
)

_MODEL_HELP = (
    "model on Jina's API or a server: jina-embeddings-v3 (default), "
    "jina-embeddings-v5-text-small, jina-embeddings-v5-text-nano or jina-embeddings-v4 "
    "(text); the local provider runs only jina-embeddings-v3"
)

_FIX_PROVIDER = (
    "set JINA_API_KEY to use Jina's API, pass --provider local:DIR for a model already on "
    "disk, or run once with network access so the model can be downloaded"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    return check_int("", value, error=argparse.ArgumentTypeError)


def _add_store_args(p: argparse.ArgumentParser, default_store: str) -> None:
    p.add_argument(
        "--store",
        default=default_store,
        metavar="URI",
        help=_STORE_HELP.format(default=default_store),
    )
    p.add_argument(
        "--collection",
        default=os.environ.get("JV3_COLLECTION", "jv3"),
        metavar="NAME",
        help="collection (Pinecone: namespace) inside the store (default: jv3)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jv3`` (importing no torch and no store client)."""
    from ._cli.uri import default_store

    store = default_store()
    parser = argparse.ArgumentParser(
        prog="jv3",
        description=(
            "jina-embeddings-v3 on your own disk: index documents into a local vector store "
            "and search them in any of 89 languages."
        ),
        epilog="Examples:\n  jv3 index ./docs\n  jv3 search 'how do I reset my password?'\n"
        "  jv3 demo\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jv3 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "index",
        help="index .txt/.md/.html/.pdf files (incremental: only changed files are embedded)",
        description="Chunk, embed (as passages) and store documents; re-running embeds only "
        "new or changed files and deletes the chunks of removed ones.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    _add_store_args(p, store)
    p.add_argument("--provider", metavar="SPEC", help=_PROVIDER_HELP)
    p.add_argument("--model", metavar="NAME", help=_MODEL_HELP + "; fixed per index")
    p.add_argument(
        "--dimensions",
        type=_positive_int,
        metavar="N",
        help="Matryoshka vector size, e.g. 256 (default: the model's full size; fixed per index)",
    )
    p.add_argument(
        "--late-chunking",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="embed each document once and pool each chunk in context (default: on where "
        "the model offers it, off for v5)",
    )
    p.add_argument(
        "--chunker",
        metavar="SPEC",
        help="'sentences' (grouped up to 1000 characters; default), 'sentences:MAX_CHARS' or "
        "'tokens:N'",
    )
    p.add_argument(
        "--hybrid",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also index keyword (BM25) vectors of the same chunks, for hybrid and keyword "
        "search (default: off; fixed per index)",
    )
    p.add_argument(
        "--include-hidden",
        action="store_true",
        help="also index hidden files and files in hidden folders (.notes/ ...); default: "
        "skipped and counted in the summary",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="forget the index state (even an unreadable one) and embed every file again",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where to chunk and embed: this process (default) or a Ray cluster "
        "(pip install 'jv3-integrations[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to use with --engine ray (default: start Ray on this machine)",
    )
    p.add_argument(
        "--workers", type=_positive_int, default=1, metavar="N", help="Ray embedding actors"
    )
    p.add_argument(
        "--gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per Ray actor"
    )

    p = sub.add_parser(
        "search",
        help="search an index",
        description="Embed the query (task retrieval.query, the index's provider and "
        "dimensions) and print the closest chunks.",
    )
    p.add_argument("query", metavar="QUERY", help="what to look for, in any language")
    p.add_argument("--k", type=_positive_int, default=5, metavar="N", help="hits (default 5)")
    _add_store_args(p, store)
    p.add_argument(
        "--provider", metavar="SPEC", help="override the provider the index was built with"
    )
    p.add_argument(
        "--model", metavar="NAME", help="the index's model (default; another is refused)"
    )
    p.add_argument(
        "--mode",
        choices=["hybrid", "dense", "keyword"],
        help="dense vectors, keyword (BM25) or both fused (default: hybrid if the index was "
        "built with --hybrid, else dense)",
    )
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.add_argument("--width", type=_positive_int, default=240, help=argparse.SUPPRESS)

    p = sub.add_parser(
        "demo",
        help="index a small multilingual sample corpus and run cross-lingual queries",
        description="Index the bundled sample corpus (English, German, Spanish, French, "
        "Chinese, Japanese) into a temporary store and run a few cross-lingual queries.",
    )
    p.add_argument("--provider", metavar="SPEC", help=_PROVIDER_HELP)
    p.add_argument("--k", type=_positive_int, default=3, metavar="N", help="hits per query")
    p.add_argument(
        "--store-kind",
        choices=["qdrant", "milvus"],
        default=None,
        help="which embedded store to use (default: the default store's kind)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print queries and hits as JSON")

    p = sub.add_parser(
        "embed",
        help="print embeddings of texts (or of stdin lines) as JSON or .npy",
        description="Embed each TEXT (or each non-empty line of stdin with '-' or no TEXT) "
        "and write the vectors to stdout.",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts; '-' reads stdin lines")
    p.add_argument(
        "--task",
        choices=[t.value for t in Task] + ["clustering"],
        default=None,
        help="task adapter (default: none, like the Jina API; 'clustering' is v5's 'separation')",
    )
    p.add_argument("--dimensions", type=_positive_int, metavar="N", help="Matryoshka size")
    p.add_argument(
        "--late-chunking",
        action="store_true",
        help="treat the texts as the chunks of one document",
    )
    p.add_argument("--format", choices=["json", "npy"], default="json", help="output format")
    p.add_argument("--provider", metavar="SPEC", help=_PROVIDER_HELP)
    p.add_argument("--model", metavar="NAME", help=_MODEL_HELP)

    p = sub.add_parser(
        "serve",
        help="serve the local model over a Jina-compatible HTTP API",
        description="Run a Jina-compatible /v1/embeddings server on the local model. The "
        "jina-embeddings-v3 weights are licensed CC BY-NC 4.0 (non-commercial); this "
        "package's code is Apache-2.0.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="DIR_OR_HUB_ID",
        help="model folder or Hub id, e.g. jinaai/jina-embeddings-v3",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", default="8080", help="port, 1..65535 (default 8080)")
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="Bearer key clients must send, printable ASCII (default: $JV3_SERVER_API_KEY)",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve without any key (only for trusted networks)",
    )
    from .server._limits import add_limit_options  # its ranges, checked in one place

    add_limit_options(p.add_argument_group("limits (see docs/server.md)"))
    return parser


# -- commands ---------------------------------------------------------------------------------


def _cmd_index(args: argparse.Namespace) -> int:
    from ._cli.indexer import IndexInterrupted

    engine = None
    if args.engine == "ray":
        from ._cli.ray_engine import RayEngine

        engine = RayEngine(args.ray_address, args.workers, args.gpus_per_worker)
    elif args.ray_address or args.workers != 1 or args.gpus_per_worker:
        raise ConfigurationError("--ray-address, --workers and --gpus-per-worker need --engine ray")
    try:
        report = _index(args, engine)
    except IndexInterrupted as stop:  # what was embedded is saved: say so, and how to go on
        print(f"jv3: interrupted: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(report.summary())
    return 0


def _index(args: argparse.Namespace, engine: Any) -> Any:
    from ._cli.indexer import stderr_warn
    from .indexing import index_folder  # the public job: the CLI runs what applications run

    return index_folder(
        args.paths,
        store=args.store,
        collection=args.collection,
        provider=args.provider,
        model=args.model,
        dimensions=args.dimensions,
        late_chunking=args.late_chunking,
        chunker=args.chunker,
        hybrid=args.hybrid,
        progress=args.progress,
        include_hidden=args.include_hidden,
        rebuild=args.rebuild,
        on_warning=stderr_warn,
        _engine=engine,
    )


def _cmd_search(args: argparse.Namespace) -> int:
    from ._cli.indexer import stderr_warn
    from ._cli.output import format_hits, use_color
    from ._cli.search import SearchOptions, run_search

    [hits] = run_search(
        SearchOptions(
            queries=[args.query],
            store=args.store,
            collection=args.collection,
            provider=args.provider,
            model=args.model,
            k=args.k,
            mode=args.mode,
        ),
        warn=stderr_warn,
    )
    if args.json:
        out = {"query": args.query, "hits": [h.to_json(i) for i, h in enumerate(hits, 1)]}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(format_hits(hits, args.query, color=use_color(sys.stdout), width=args.width))
    return 0


def load_demo_corpus() -> dict[str, Any]:
    """The bundled multilingual sample corpus (passages and cross-lingual queries)."""
    data = (
        resources.files("jv3_integrations")
        .joinpath("data", "demo_corpus.json")
        .read_text(encoding="utf-8")
    )
    corpus: dict[str, Any] = json.loads(data)
    return corpus


def _unreadable_languages(model_dir: str, corpus: dict[str, Any]) -> set[str]:
    """Languages of the demo corpus that the checkpoint's tokenizer cannot read.

    A text is unreadable when more than half of its characters fall in ``<unk>`` tokens (the
    tiny test tokenizer has no pieces for Chinese or Japanese: a whole sentence becomes one
    ``<unk>``, so all such passages get the same vector). A language is left out when any of
    its passages is unreadable. The official model's tokenizer reads every language here.
    """
    from tokenizers import Tokenizer

    path = Path(model_dir).expanduser() / "tokenizer.json"
    if not path.is_file():
        return set()
    tokenizer = Tokenizer.from_file(str(path))
    unk = tokenizer.token_to_id("<unk>")
    if unk is None:
        return set()
    out: set[str] = set()
    for item in corpus["passages"] + corpus["queries"]:
        text = item["text"]
        enc = tokenizer.encode(text, add_special_tokens=False)
        unknown = sum(e - b for i, (b, e) in zip(enc.ids, enc.offsets, strict=True) if i == unk)
        if unknown * 2 > len(text.strip()):
            out.add(item["lang"])
    return out


def _demo_subset(corpus: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """The corpus without the languages in ``drop`` (and without queries expecting them)."""
    passages = [p for p in corpus["passages"] if p["lang"] not in drop]
    kept = {p["id"] for p in passages}
    queries = [q for q in corpus["queries"] if q["lang"] not in drop and q["expect"] in kept]
    return {**corpus, "passages": passages, "queries": queries}


def _demo_readable(
    corpus: dict[str, Any], spec: str, *, quiet: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The demo corpus less the languages a local test checkpoint cannot read, and what left."""
    model_dir = spec[len("local:") :].strip() if spec.startswith("local:") else ""
    if not model_dir:
        return corpus, None
    drop = _unreadable_languages(model_dir, corpus)
    if not drop:
        return corpus, None
    readable = _demo_subset(corpus, drop)
    left_out: dict[str, Any] = {
        "languages": sorted(drop),
        "passages": len(corpus["passages"]) - len(readable["passages"]),
        "queries": len(corpus["queries"]) - len(readable["queries"]),
    }
    if not quiet:
        print(
            f"Left out {left_out['passages']} passages and {left_out['queries']} "
            f"queries in {', '.join(left_out['languages'])}: this checkpoint's "
            "tokenizer has no pieces for their script (the official model reads them)."
        )
    return readable, left_out


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._cli.indexer import IndexOptions, run_index, stderr_warn
    from ._cli.output import format_hits, use_color
    from ._cli.providers import make_provider, random_weights_notice
    from ._cli.search import SearchOptions, run_search
    from ._cli.uri import default_store, parse_store_uri

    corpus = load_demo_corpus()
    spec = args.provider or default_provider_spec()
    note = random_weights_notice(spec)
    if note and not args.json:
        print(f"Note: {note}.")
    left_out: dict[str, Any] | None = None
    if note:  # a test checkpoint: ask only what its tokenizer can read
        corpus, left_out = _demo_readable(corpus, spec, quiet=args.json)
    provider = make_provider(spec, None)  # loaded once, used to index and to search
    kind = args.store_kind or parse_store_uri(default_store()).kind
    results = []
    with tempfile.TemporaryDirectory(prefix="jv3-demo-") as tmp:
        docs = Path(tmp) / "corpus"
        docs.mkdir()
        for passage in corpus["passages"]:
            text = f"{passage['title']}\n\n{passage['text']}\n"
            (docs / f"{passage['id']}.txt").write_text(text, encoding="utf-8")
        store = f"milvus:{Path(tmp) / 'demo.db'}" if kind == "milvus" else f"qdrant:{tmp}/index"
        langs = sorted({p["lang"] for p in corpus["passages"]})
        if not args.json:
            print(
                f"Indexing {len(corpus['passages'])} passages in {len(langs)} languages "
                f"({', '.join(langs)}) into a temporary {kind} store ..."
            )
        report = run_index(
            IndexOptions(
                paths=[str(docs)],
                store=store,
                provider=spec,
                progress=args.progress,
                provider_instance=provider,
            ),
            warn=stderr_warn,
        )
        if not args.json:
            tokens = f"{'~' if report.tokens_estimated else ''}{report.tokens:,} tokens"
            print(
                f"Indexed {len(corpus['passages'])} passages ({report.chunks_total} chunks, "
                f"{tokens}) in {report.seconds:.1f} s."
            )
        color = use_color(sys.stdout)
        queries = corpus["queries"]
        all_hits = run_search(
            SearchOptions(
                queries=[q["text"] for q in queries],
                store=store,
                provider=spec,
                k=args.k,
                provider_instance=provider,
            ),
            warn=stderr_warn,
        )
        provider.close()
        for query, hits in zip(queries, all_hits, strict=True):
            hits = [type(h)(h.score, Path(h.file).stem, h.text, h.start, h.end, h.id) for h in hits]
            found = [h.file for h in hits]
            results.append(
                {
                    "query": query["text"],
                    "lang": query["lang"],
                    "expected": query["expect"],
                    "found": query["expect"] in found,
                    "hits": [h.to_json(i) for i, h in enumerate(hits, 1)],
                }
            )
            if not args.json:
                mark = "found" if query["expect"] in found else "not in the top hits"
                print(f"\n[{query['lang']}] {query['text']}   (expected {query['expect']}: {mark})")
                print(format_hits(hits, query["text"], color=color, width=160))
    if args.json:
        out = {"index": report.to_json(), "queries": results, "note": note}
        if left_out:
            out["left_out"] = left_out
        print(json.dumps(out, ensure_ascii=False))
    else:
        hit_count = sum(r["found"] for r in results)
        print(
            f"\n{hit_count}/{len(results)} queries found their expected passage in the top "
            f"{args.k}. Index your own files with: jv3 index PATH"
        )
        if note:
            print("(Random test weights: these hits and scores say nothing about the model.)")
    return 0


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts: list[str] = list(args.texts)
    if not texts or texts == ["-"]:
        if sys.stdin.isatty() and not texts:
            raise InputError("give texts to embed as arguments, or '-' to read lines from stdin")
        texts = [line.rstrip("\r\n") for line in sys.stdin]
        texts = [t for t in texts if t.strip()]
    elif "-" in texts:
        raise InputError("'-' (read stdin) cannot be mixed with texts given as arguments")
    if not texts:
        raise InputError("nothing to embed: stdin had no non-empty line")
    return texts


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from ._cli.providers import make_provider

    texts = _read_texts(args)
    if args.format == "npy" and sys.stdout.isatty():
        raise InputError("--format npy writes binary data; redirect it: jv3 embed ... > out.npy")
    provider = make_provider(args.provider or default_provider_spec(), None, args.model)
    try:
        emb = provider.embed(
            texts, task=args.task, dimensions=args.dimensions, late_chunking=args.late_chunking
        )
    finally:
        provider.close()
    if args.format == "npy":
        # np.save on a pipe fails (it asks the file for its position): serialize in memory.
        buf = io.BytesIO()
        np.save(buf, emb.vectors)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return 0
    out = {
        "model": emb.model,
        "task": emb.task.value if emb.task else None,
        "dimensions": emb.dimensions,
        "usage": {"total_tokens": emb.usage.total_tokens},
        "vectors": emb.tolist(),
    }
    print(json.dumps(out))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .server import serve
    except ImportError as exc:
        if isinstance(exc, Jv3Error):
            raise
        raise ConfigurationError(
            "the server needs the server extra: pip install 'jv3-integrations[server]'"
        ) from None
    from .server._limits import options_from_args

    try:  # every flag in its range, or one line naming it (exit status 2, as argparse)
        port, limits = options_from_args(args)
    except ConfigurationError as exc:
        print(f"jv3 serve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _check_port_free(args.host, port)
    serve(
        args.model,
        host=args.host,
        port=port,
        api_key=args.api_key,
        insecure_no_auth=args.insecure_no_auth,
        **limits,
    )
    return 0


class PortInUseError(ConfigurationError):
    """``jv3 serve``: the address is taken (exit status :data:`EXIT_PORT_IN_USE`)."""


def _check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once (as uvicorn will) so a busy port fails before the model loads."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(
                    f"cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
            raise PortInUseError(
                f"port {port} on {host} is already in use (another jv3 serve?); stop that "
                f"process or pick another port with --port"
            ) from None


_COMMANDS = {
    "index": _cmd_index,
    "search": _cmd_search,
    "demo": _cmd_demo,
    "embed": _cmd_embed,
    "serve": _cmd_serve,
}


def _explain(exc: Jv3Error, args: argparse.Namespace) -> str:
    """One line for the user: the error, plus how to fix it when the provider is the problem."""
    message = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    if args.command == "serve" or not hasattr(args, "provider"):
        return message  # `jv3 serve` takes no provider: the provider hints do not apply
    from ._cli.state import redact_spec
    from .core._spec import ProviderSpec

    spec = args.provider or default_provider_spec()
    provider_given = bool(args.provider) or bool(os.environ.get("JV3_PROVIDER"))
    try:
        remote = ProviderSpec.parse(spec).kind == "http"
    except ConfigurationError:
        remote = False
    if isinstance(exc, ModelLoadError) and exc.fix and exc.summary:
        # one sentence, then the one command (issue 27); the API as the alternative when the
        # user did not choose the local model
        other = "" if provider_given else ", or set JINA_API_KEY to use Jina's API"
        return f"{exc.summary}. Fix: {exc.fix}{other}"
    if isinstance(exc, ModelLoadError) and not provider_given:
        return f"{message}. No API key and no usable local model: {_FIX_PROVIDER}"
    if isinstance(exc, AuthenticationError) and remote:
        return (
            f"{message}. The server at {redact_spec(spec)} refused the key: for http(s):// "
            "providers jv3 sends $JINA_API_KEY as the Bearer key, so set JINA_API_KEY to that "
            "server's key (its --api-key / JV3_SERVER_API_KEY)"
        )
    if (
        isinstance(exc, AuthenticationError | ConfigurationError)
        and spec == "api"
        and ("JINA_API_KEY" in message or "API key" in message or "api_key" in message)
        and not os.environ.get("JINA_API_KEY")
    ):
        return f"{message}. To fix: {_FIX_PROVIDER}"
    if isinstance(exc, APIConnectionError):
        return f"{message}. Check the network or the --provider URL"
    return message


_HOST_MODULES = (
    "qdrant_client",
    "pymilvus",
    "milvus_lite",
    "pinecone",
    "grpc",
    "httpx",
    "httpcore",
)


def _is_host_error(exc: BaseException) -> bool:
    """An error raised by a vector store's client (server down, locked file, bad credentials)."""
    return type(exc).__module__.split(".")[0] in _HOST_MODULES or isinstance(exc, ConnectionError)


def _error(message: str) -> None:
    """The one error line, with every key the package knows (and header forms) masked: a
    host's error text may echo the request's headers."""
    from .core._redact import redact_secrets

    print(f"jv3: error: {redact_secrets(message)}", file=sys.stderr)


def _explain_host_error(exc: BaseException) -> str:
    from .core._redact import redact_secrets

    message = redact_secrets(" ".join(str(exc).split())) or type(exc).__name__
    if len(message) > 300:
        message = message[:300] + "…"
    return (
        f"the vector store failed: {type(exc).__name__}: {message} (check that the --store "
        "server is reachable, its credentials are set, and no other process holds a local store)"
    )


class _OneLineHandler(logging.Handler):
    """Library log records on stderr as single ``jv3: level: message`` lines, no tracebacks."""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        print(f"jv3: {record.levelname.lower()}: {message}", file=sys.stderr)


def _own_records(record: logging.LogRecord) -> bool:
    return record.name == "jv3_integrations" or record.name.startswith("jv3_integrations.")


def _quiet_native_logs() -> None:
    """gRPC's C core writes to stderr itself (``too_many_pings`` ...): silence it by default.

    Must run before grpc is imported (the store clients import it lazily, after this).
    """
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


@contextmanager
def _command_logging(debug: bool) -> Iterator[None]:
    """The command is an application: it (not the library) decides how logs are shown.

    Installed for one ``main()`` call and removed afterwards, so in-process callers (tests)
    keep their own logging.
    """
    root = logging.getLogger()
    milvus_lite = logging.getLogger("milvus_lite")
    old_root_level, old_milvus_level = root.level, milvus_lite.level
    handler: logging.Handler
    if debug:  # everything, with tracebacks
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler = _OneLineHandler(logging.WARNING)
        # Only our own warnings: gRPC's "Exception calling application: Method not
        # implemented!" (Milvus Lite), the Hub's retry chatter etc. are not failures of the
        # command; real failures reach the user as exceptions, in one line.
        handler.addFilter(_own_records)
        # Milvus Lite logs a traceback when a store is locked; the command says it in one line.
        milvus_lite.setLevel(logging.CRITICAL)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root_level)
        milvus_lite.setLevel(old_milvus_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jv3`` command; returns the exit status (0 ok, 1 error, 2 usage, 3 port in use,
    130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    debug = os.environ.get("JV3_DEBUG", "").strip() not in {"", "0"}
    if not debug:
        _quiet_native_logs()
    try:
        with _command_logging(debug):
            return _COMMANDS[args.command](args)
    except Jv3Error as exc:
        if debug:
            raise
        _error(_explain(exc, args))
        return EXIT_PORT_IN_USE if isinstance(exc, PortInUseError) else EXIT_ERROR
    except BrokenPipeError:
        # Output piped into `head` etc.: stop quietly, like other Unix tools (Python docs recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # a folder that cannot be written, a full disk, a refused connection
        if debug:
            raise
        if _is_host_error(exc):
            message = _explain_host_error(exc)
        else:
            where = f": {exc.filename}" if exc.filename else ""
            message = f"{exc.strerror or exc}{where}"
        _error(message)
        return EXIT_ERROR
    except Exception as exc:
        if debug or not _is_host_error(exc):
            raise
        _error(_explain_host_error(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("jv3: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
