"""Every ``jv3 serve`` option is checked: a bad value is one line naming its range, no traceback.

Issue 26.4: ``--head-timeout inf`` kept idle sockets open forever, ``nan`` dropped requests,
``--port -1`` printed a traceback, a key with a newline was accepted.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jv3_integrations.core import ConfigurationError
from jv3_integrations.server import create_app, uvicorn_options
from jv3_integrations.server._limits import LIMITS, check_api_key, check_limit, check_port

ROOT = Path(__file__).resolve().parents[2]


def _pythonpath() -> str:
    """This checkout's ``src`` behind any ``PYTHONPATH`` given (a mutant's copy comes first)."""
    given = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([p for p in (given, str(ROOT / "src")) if p])


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": _pythonpath(), **(env or {})}
    environ.pop("JV3_DEBUG", None)
    if env is None or "JV3_SERVER_API_KEY" not in env:
        environ.pop("JV3_SERVER_API_KEY", None)
    # the model folder does not exist: a value that passed the checks would fail later, later
    cmd = [sys.executable, "-m", "jv3_integrations", "serve", "--model", "/nonexistent/jv3"]
    return subprocess.run(
        [*cmd, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


BAD = [
    (["--head-timeout", "inf"], "--head-timeout must be a number of seconds in 0.1..3600"),
    (["--head-timeout", "nan"], "--head-timeout must be a number of seconds in 0.1..3600"),
    (["--head-timeout", "1e-9"], "--head-timeout must be a number of seconds in 0.1..3600"),
    (["--head-timeout", "0"], "--head-timeout must be a number of seconds in 0.1..3600"),
    (["--body-timeout", "inf"], "--body-timeout must be a number of seconds in 0.1..3600"),
    (["--body-timeout", "-1"], "--body-timeout must be a number of seconds in 0.1..3600"),
    (["--body-timeout", "3601"], "--body-timeout must be a number of seconds in 0.1..3600"),
    (["--request-timeout", "nan"], "--request-timeout must be a number of seconds in 1..3600"),
    (["--port", "-1"], "--port must be an integer in 1..65535"),
    (["--port", "65536"], "--port must be an integer in 1..65535"),
    (["--port", "0"], "--port must be an integer in 1..65535"),
    (["--port", "http"], "--port must be an integer in 1..65535"),
    (["--timeout-keep-alive", "0"], "--timeout-keep-alive must be an integer in 1..3600 seconds"),
    (["--timeout-keep-alive", "1.5"], "--timeout-keep-alive must be an integer in 1..3600"),
    (["--max-connections", "0"], "--max-connections must be an integer in 1..1000000"),
    (["--max-queue-requests", "-5"], "--max-queue-requests must be an integer in 1..1000000"),
    (["--max-queue-tokens", "1e400"], "--max-queue-tokens must be an integer in 1.."),
    (["--batch-tokens", "0"], "--batch-tokens must be an integer in 1..16777216"),
    (["--max-body-bytes", "10"], "--max-body-bytes must be an integer in 128..4294967296 bytes"),
    (["--body-budget-bytes", "nan"], "--body-budget-bytes must be an integer in 128.."),
    (
        ["--max-body-bytes", "2000", "--body-budget-bytes", "1000"],
        "--max-body-bytes (2000) is larger than --body-budget-bytes (1000)",
    ),
    (["--api-key", "line\nbreak"], "--api-key holds a control character at position 4"),
    (["--api-key", "clé-secrète"], "--api-key holds a non-ASCII character at position 2"),
    (["--api-key", "two words"], "--api-key holds a space at position 3"),
    (["--api-key", " "], "--api-key is empty"),
    (["--api-key", "k" * 1025], "--api-key is 1025 characters long; the limit is 1024"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_a_bad_serve_option_is_one_line_naming_its_range(args: list[str], message: str) -> None:
    out = _serve(*args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("jv3 serve: error: "), lines
    assert message in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    if args[0] == "--api-key":  # the key itself is never repeated
        assert args[1].strip() not in lines[0] or not args[1].strip()


def test_a_bad_key_in_the_environment_is_refused_the_same_way() -> None:
    out = _serve(env={"JV3_SERVER_API_KEY": "abc\r\ndef"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        "jv3 serve: error: JV3_SERVER_API_KEY holds a control character at position 3: a key "
        "must be printable ASCII (characters 33..126), which every HTTP client can send in a "
        "header"
    )


def test_good_options_pass_the_checks() -> None:
    # every value at its bounds passes; the (missing) model is what fails then
    args = ["--port", "65535", "--head-timeout", "0.1", "--body-timeout", "3600"]
    args += ["--request-timeout", "1", "--timeout-keep-alive", "3600", "--max-connections", "1"]
    args += ["--max-body-bytes", "128", "--body-budget-bytes", "128", "--api-key", "A-z_0.9~+/="]
    out = _serve(*args)
    assert out.returncode == 1, out.stderr
    assert "serve: error" not in out.stderr and "must be" not in out.stderr, out.stderr


def test_serve_help_names_every_range() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jv3_integrations", "serve", "--help"],
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(out.stdout.split())
    for lim in LIMITS.values():
        assert lim.option in text
        assert lim.range_text() in text, lim.option
    assert "1..65535" in text


# -- the same checks in the Python API ------------------------------------------------------


@pytest.mark.parametrize("value", [math.inf, math.nan, 1e-9, 0, -1, 3601, True, "10"])
def test_create_app_and_uvicorn_options_refuse_the_same_timeouts(
    value: object, local_provider: object
) -> None:
    with pytest.raises(ConfigurationError, match=r"must be a number of seconds in 0\.1\.\.3600"):
        uvicorn_options(head_timeout=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"must be a number of seconds in 0\.1\.\.3600"):
        create_app(local_provider, body_timeout=value)  # type: ignore[arg-type]


def test_the_python_api_refuses_keys_and_ports_no_client_can_use(local_provider: object) -> None:
    with pytest.raises(ConfigurationError, match="control character"):
        create_app(local_provider, api_key="a\nb")  # type: ignore[arg-type]
    for port in (-1, 0, 65536, 80.0, "x"):
        with pytest.raises(ConfigurationError, match=r"1\.\.65535"):
            check_port(port)
    assert check_port(8080) == 8080
    assert check_api_key("  padded-key ") == "padded-key"


def test_the_defaults_are_pinned() -> None:
    defaults = {name: lim.default for name, lim in LIMITS.items()}
    assert defaults == {
        "max_body_bytes": 64 * 1024 * 1024,
        "body_budget_bytes": 256 * 1024 * 1024,
        "max_queue_requests": 256,
        "max_queue_tokens": 1_048_576,
        "batch_tokens": 16_384,
        "max_connections": 1024,
        "timeout_keep_alive": 5,
        "head_timeout": 10.0,
        "body_timeout": 60.0,
        "request_timeout": 60.0,
    }
    for lim in LIMITS.values():  # every default is inside its own range
        assert check_limit(lim.name, lim.default) == lim.default
