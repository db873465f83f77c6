"""Run our Jina-compatible server in-process (uvicorn in a background thread) for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from jv3_integrations.core import BaseProvider
from jv3_integrations.server import create_app, uvicorn_options

_CONNECTION_OPTIONS = ("timeout_keep_alive", "head_timeout", "max_connections")


@contextmanager
def running_server(
    model: str | Path | BaseProvider,
    *,
    api_key: str | None = None,
    startup_timeout: float = 60.0,
    wrap: Callable[[Any], Any] | None = None,
    **options: Any,
) -> Iterator[str]:
    """Serve ``model`` (a checkpoint dir/Hub id or a provider) on 127.0.0.1, yield its URL.

    The port is a free one picked by the OS; the server is shut down gracefully on exit. The
    connection limits of ``jv3 serve`` apply (``timeout_keep_alive``, ``head_timeout`` and
    ``max_connections`` among ``options`` change them). ``wrap`` wraps the ASGI app (an
    observing middleware).
    """
    target = model if isinstance(model, BaseProvider) else str(model)
    connection = uvicorn_options(**{k: options.pop(k) for k in _CONNECTION_OPTIONS if k in options})
    app = create_app(target, api_key=api_key, **options)
    served = wrap(app) if wrap is not None else app
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (else +40 ms
    # per keep-alive response from Nagle + delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        served, log_level="warning", lifespan="on", timeout_graceful_shutdown=10, **connection
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="jv3-test-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the test server did not start within {startup_timeout} s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
