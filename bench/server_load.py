"""Server load: ``jv3 serve`` under 50, 200 and 1,000 concurrent clients (a realistic mix).

Starts ``jv3 serve`` (its default limits) on the tiny conformance model as a subprocess and, for
each level of concurrent clients, runs closed-loop keep-alive clients for ``--seconds``: each
sends a request drawn from the mix (85 % one short text, 10 % 64 texts, 3 % 2,048 short items,
2 % one ~8k-token text with ``truncate``), waits for the answer, and sends the next one at once
(no backoff on 429: the worst case for the server). Clients are raw asyncio HTTP/1.1 connections
(an httpx client per connection would cost more CPU than the server on a small machine).

Reported per level: requests/s answered, p50/p99 latency of the 200s and of the 429s as the
clients saw them and as the server measured them (its ``Server-Timing`` header: from reading
the request's bytes to starting the answer), other statuses, ``/health`` latency from a prober
polling it every 100 ms during the level, how many requests were still unanswered once the
level's clients stopped and ``--drain`` seconds passed (the issue's bound: none after 120 s),
the slowest answer, and the server process's peak RSS (``VmHWM``, reset between levels). In the
same run: one client alone (the unloaded peer) and the limits the issue set (a 429 under 100 ms
server-side at 1,000 clients). Prints one JSON object. Usage::

    python bench/server_load.py                                     # 50, 200, 1000 x 10 s
    python bench/server_load.py --levels 20 100 --seconds 3 --no-progress   # small
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "tests" / "data" / "tiny-v3"
MODEL = "jina-embeddings-v3"
WORDS = ["the", "a", "of", "tide", "moon", "ocean", "coast", "berlin", "capital", "river"]
P429_LIMIT_MS = 100.0  # the target: a 429 server-side at 1,000 clients
UNANSWERED_AFTER_S = 120.0  # the bound: no admitted request unanswered after it


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def build_mix(seed: int = 0) -> list[tuple[str, bytes]]:
    """The request bodies of the mix (kind, JSON), 100 of them in the mix's proportions."""
    rng = random.Random(seed)
    bodies: list[tuple[str, bytes]] = []

    def add(kind: str, n: int, payload: dict[str, Any]) -> None:
        body = json.dumps({"model": MODEL, **payload}).encode()
        bodies.extend([(kind, body)] * n)

    for _ in range(85):
        bodies.append(("short", json.dumps({"model": MODEL, "input": [_text(rng, 12)]}).encode()))
    for _ in range(10):
        add("64 texts", 1, {"input": [_text(rng, 40) for _ in range(64)]})
    add("2048 items", 3, {"input": [_text(rng, 3) for _ in range(2048)]})
    add("8k tokens", 2, {"input": [_text(rng, 7000)], "truncate": True})
    rng.shuffle(bodies)
    return bodies


def _head(port: int, body: bytes) -> bytes:
    return (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, float | None]:
    """(status, negative when the server closes the connection; server-side ms or None)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length = 0
    close = False
    server_ms = None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"connection" and value.strip().lower() == b"close":
            close = True
        elif key == b"server-timing" and b"dur=" in value:
            server_ms = float(value.split(b"dur=")[1].split(b";")[0])
    if length:
        await reader.readexactly(length)
    return (-status if close else status), server_ms


async def client(
    port: int, mix: list[tuple[str, bytes]], offset: int, until: float, out: list[Any]
) -> None:
    requests = [_head(port, body) for _, body in mix]
    i = offset
    reader = writer = None
    while time.monotonic() < until:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                out.append((0, 0.0, "connect", None))
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        kind = mix[i % len(mix)][0]
        started = time.perf_counter()
        try:
            writer.write(requests[i % len(requests)])
            await writer.drain()
            status, server_ms = await _read_answer(reader)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            out.append((0, time.perf_counter() - started, kind, None))
            writer.close()
            writer = None
            continue
        out.append((abs(status), time.perf_counter() - started, kind, server_ms))
        if status < 0:  # the server closes this connection
            writer.close()
            writer = None
        i += 1
    if writer is not None:
        writer.close()


PROBER = """
import json, socket, sys, time
port, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
out = []
while time.monotonic() < until:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        took = time.perf_counter() - started
        ms = None
        for line in data.split(b"\\r\\n"):
            if line.lower().startswith(b"server-timing:"):
                ms = float(line.split(b"dur=")[1])
        out.append([took if data.startswith(b"HTTP/1.1 200") else None, ms])
    except OSError:
        out.append([None, None])
    time.sleep(0.1)
print(json.dumps(out))
"""


def start_prober(port: int, seconds: float) -> subprocess.Popen[str]:
    """GET /health every 100 ms from a process of its own (the load's client loop is busy)."""
    return subprocess.Popen(
        [sys.executable, "-c", PROBER, str(port), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)


def _rss(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _ms(values: list[float]) -> dict[str, float | None]:
    return {"p50_ms": _pct(values, 0.5), "p95_ms": _pct(values, 0.95), "p99_ms": _pct(values, 0.99)}


def run_level(
    port: int, pid: int, clients: int, seconds: float, mix: Any, drain: float
) -> dict[str, Any]:
    out: list[Any] = []
    reset = _reset_peak(pid)
    unfinished = 0
    drained_s = 0.0

    async def main() -> float:
        nonlocal unfinished, drained_s
        started = time.monotonic()
        until = started + seconds
        tasks = [
            asyncio.ensure_future(client(port, mix, i * 7, until, out)) for i in range(clients)
        ]
        await asyncio.sleep(seconds)
        # the clients send nothing new now; what is in flight gets `drain` seconds to finish
        _, late = await asyncio.wait(tasks, timeout=drain)
        drained_s = time.monotonic() - until
        unfinished = len(late)
        for t in late:
            t.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        return seconds

    prober = start_prober(port, seconds)
    wall = asyncio.run(main())
    health = json.loads(prober.communicate(timeout=120)[0] or "[]")
    ok = [t for s, t, _, _ in out if s == 200]
    busy = [t for s, t, _, _ in out if s == 429]
    ok_server = [ms / 1000 for s, _, _, ms in out if s == 200 and ms is not None]
    busy_server = [ms / 1000 for s, _, _, ms in out if s == 429 and ms is not None]
    others: dict[str, int] = {}
    for s, _, _, _ in out:
        if s not in (200, 429):
            others[str(s)] = others.get(str(s), 0) + 1
    health_client = [t if t is not None else float("inf") for t, _ in health]
    health_server = [ms / 1000 for _, ms in health if ms is not None]
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": len(out),
        "req_per_s": round(len(out) / wall, 1),
        "ok_per_s": round(len(ok) / wall, 1),
        "200": {"n": len(ok), **_ms(ok), "server": _ms(ok_server)},
        "429": {"n": len(busy), **_ms(busy), "server": _ms(busy_server)},
        "health": {"n": len(health), **_ms(health_client), "server": _ms(health_server)},
        "other_statuses": others,
        "slowest_answer_s": round(max((t for _, t, _, _ in out), default=0.0), 2),
        "drain_s": round(drained_s, 2),
        "unanswered_after_drain": unfinished,
        "peak_rss_mib": _rss(pid, "VmHWM" if reset else "VmRSS"),
        "peak_rss_is_level_peak": reset,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--levels", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--seconds", type=float, default=10.0, help="per level")
    parser.add_argument(
        "--drain",
        type=float,
        default=UNANSWERED_AFTER_S,
        help="seconds in-flight requests get once a level's clients stop (default 120)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `jv3 serve` argument (repeat: --server-arg=--max-queue-requests "
        "--server-arg=64)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    env.pop("JV3_SERVER_API_KEY", None)
    cmd = [sys.executable, "-m", "jv3_integrations", "serve", "--model", args.model]
    cmd += ["--port", str(port), *args.server_arg]
    server = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("jv3 serve did not start")
            time.sleep(0.2)
        mix = build_mix()
        idle_rss = _rss(server.pid, "VmRSS")
        if args.progress:
            print("server up; one client alone (the unloaded peer)", file=sys.stderr)
        alone = run_level(port, server.pid, 1, min(args.seconds, 5.0), mix, args.drain)
        levels = []
        for n in args.levels:
            if args.progress:
                print(f"{n} clients for {args.seconds:g} s", file=sys.stderr)
            levels.append(run_level(port, server.pid, n, args.seconds, mix, args.drain))
            time.sleep(1.0)  # let the queue drain between levels
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    top = max(levels, key=lambda r: r["clients"]) if levels else None
    result = {
        "bench": "server_load",
        "model": args.model,
        "mix": {"short": 0.85, "64 texts": 0.10, "2048 items": 0.03, "8k tokens": 0.02},
        "server": "jv3 serve " + (" ".join(args.server_arg) or "(default limits)"),
        "cpus": os.cpu_count(),
        "idle_rss_mib": idle_rss,
        "one_client_alone": alone,
        "levels": levels,
        "limit": {
            "server_p50_429_ms_at_1000_clients": P429_LIMIT_MS,
            "measured_at": top["clients"] if top else None,
            "measured_server_p50_429_ms": top["429"]["server"]["p50_ms"] if top else None,
            "measured_client_p50_429_ms": top["429"]["p50_ms"] if top else None,
            "unanswered_after_s": UNANSWERED_AFTER_S,
            "measured_unanswered": top["unanswered_after_drain"] if top else None,
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
