"""A loopback HTTP server that misbehaves on cue, over real TCP (resets, hangs, bad bodies).

Each connection takes the next action of a script (then ``"ok"`` forever):

- ``"ok"``: a valid embeddings answer (vector of text t = ``answer(t)``);
- ``"reset"``: read the request, then close with SO_LINGER 0 (the client sees ECONNRESET);
- ``"hang"``: read the request and never answer (the client's read timeout fires);
- ``"close"``: read the request and close without a byte (RemoteProtocolError);
- ``"html502"``: an nginx-style HTML 502 page;
- ``"truncated"``: a 200 whose JSON body is cut in the middle (Content-Length honest);
- ``"drip"``: a valid answer, one byte every 0.1 s (each read is quick, the whole is slow);
- ``"drip_head"``: the same, status line and headers included.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def answer(text: str, dims: int = 4) -> list[float]:
    """The (unit) vector the fault server's ``ok`` gives ``text``."""
    raw = [float(len(text)), float(sum(map(ord, text)) % 997), 1.0, -1.0][:dims]
    norm = sum(x * x for x in raw) ** 0.5
    return [float(np.float32(x / norm)) for x in raw]  # float32-exact: compared with ==


def _read_request(sock: socket.socket) -> dict[str, Any] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    parsed: dict[str, Any] = json.loads(body) if body else {}
    return parsed


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _ok_body(request: dict[str, Any]) -> bytes:
    texts = request.get("input", [])
    dims = request.get("dimensions", 4)
    data = [
        {"object": "embedding", "index": i, "embedding": answer(t, dims)}
        for i, t in enumerate(texts)
    ]
    usage = {"total_tokens": 10 * len(texts), "prompt_tokens": 10 * len(texts)}
    return json.dumps(
        {"model": "jina-embeddings-v3", "object": "list", "usage": usage, "data": data}
    ).encode()


class FaultServer:
    """Serves the scripted actions; ``actions`` records what each connection got."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.actions: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set on shutdown so hanging handlers return

    def next_action(self) -> str:
        with self.lock:
            action = self.script.pop(0) if self.script else "ok"
            self.actions.append(action)
            return action

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # linger 0 then close: the kernel sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _drip(self, sock: socket.socket, answer: bytes, *, head: bool) -> None:
        start = 0 if head else answer.index(b"\r\n\r\n") + 4
        try:
            sock.sendall(answer[:start])
            for i in range(start, len(answer)):
                if self.release.is_set():
                    return
                sock.sendall(answer[i : i + 1])
                time.sleep(0.1)
        except OSError:  # the client gave up: what the test wants
            return

    def handle(self, sock: socket.socket) -> None:
        request = _read_request(sock)
        if request is None:
            return
        action = self.next_action()
        handlers: dict[str, Callable[[], None]] = {
            "ok": lambda: sock.sendall(_response("200 OK", _ok_body(request))),
            "reset": lambda: self._reset(sock),
            "hang": lambda: self.release.wait(30),
            "close": lambda: None,
            "html502": lambda: sock.sendall(
                _response(
                    "502 Bad Gateway",
                    b"<html><head><title>502 Bad Gateway</title></head><body><center>"
                    b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                    "text/html",
                )
            ),
            "truncated": lambda: sock.sendall(_response("200 OK", _ok_body(request)[:-20])),
            "drip": lambda: self._drip(sock, _response("200 OK", _ok_body(request)), head=False),
            "drip_head": lambda: self._drip(
                sock, _response("200 OK", _ok_body(request)), head=True
            ),
        }
        handlers[action]()


@contextmanager
def fault_server(script: list[str]) -> Iterator[tuple[str, FaultServer]]:
    """Run a :class:`FaultServer` on 127.0.0.1; yield ``(base_url, server)``."""
    state = FaultServer(script)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            state.handle(self.request)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
