"""The argument parser of ``jv3``: every subcommand, its flags and their help texts."""

from __future__ import annotations

import argparse
import os

from .. import __version__
from ..core import Task
from ..core._validate import check_int

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
    from .uri import default_store

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
    from ..server._limits import add_limit_options  # its ranges, checked in one place

    add_limit_options(p.add_argument_group("limits (see docs/server.md)"))
    return parser
