"""``jv3 serve``: check the flags and the port, then run the server."""

from __future__ import annotations

import argparse
import sys

from ..core import ConfigurationError, Jv3Error
from .errors import EXIT_USAGE


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..server import serve
    except ImportError as exc:
        if isinstance(exc, Jv3Error):
            raise
        raise ConfigurationError(
            "the server needs the server extra: pip install 'jv3-integrations[server]'"
        ) from None
    from ..server._limits import options_from_args

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
