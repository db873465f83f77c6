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
import os
import sys
from collections.abc import Callable, Sequence

from ._cli.commands import cmd_embed, cmd_index, cmd_search
from ._cli.demo import cmd_demo
from ._cli.demo import load_demo_corpus as load_demo_corpus
from ._cli.errors import EXIT_ERROR as EXIT_ERROR
from ._cli.errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from ._cli.errors import EXIT_PORT_IN_USE as EXIT_PORT_IN_USE
from ._cli.errors import EXIT_USAGE as EXIT_USAGE
from ._cli.errors import explain, explain_host_error, is_host_error, print_error
from ._cli.logs import command_logging, quiet_native_logs
from ._cli.parser import build_parser
from ._cli.serve import PortInUseError, cmd_serve
from .core import Jv3Error

__all__ = ["build_parser", "main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "index": cmd_index,
    "search": cmd_search,
    "demo": cmd_demo,
    "embed": cmd_embed,
    "serve": cmd_serve,
}


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
        quiet_native_logs()
    try:
        with command_logging(debug):
            return _COMMANDS[args.command](args)
    except Jv3Error as exc:
        if debug:
            raise
        print_error(explain(exc, args))
        return EXIT_PORT_IN_USE if isinstance(exc, PortInUseError) else EXIT_ERROR
    except BrokenPipeError:
        # Output piped into `head` etc.: stop quietly, like other Unix tools (Python docs recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # a folder that cannot be written, a full disk, a refused connection
        if debug:
            raise
        if is_host_error(exc):
            message = explain_host_error(exc)
        else:
            where = f": {exc.filename}" if exc.filename else ""
            message = f"{exc.strerror or exc}{where}"
        print_error(message)
        return EXIT_ERROR
    except Exception as exc:
        if debug or not is_host_error(exc):
            raise
        print_error(explain_host_error(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("jv3: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
