"""``jv3 index``'s progress: fixed totals, per-file lines without control codes in logs,
time left, and Ctrl-C that says what was saved and lets the same command go on."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jv3_integrations._cli.index_progress import LOG_INTERVAL, IndexProgress, log_interval

LINE = re.compile(
    r"^jv3: Embedding (\d+)/(\d+) files, (\d+)% of ~(\S+) tokens, [^,]+(, about .+ left)?$"
)
WORDS = [
    "river",
    "stone",
    "light",
    "paper",
    "window",
    "garden",
    "music",
    "winter",
    "harbor",
    "lantern",
]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JINA_API_KEY", "JV3_PROVIDER"}}
    env.update({"JV3_STORE": "", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", **extra})
    env["HF_HOME"] = str(tmp_path / "hf-home")
    return env


def _docs(folder: Path, n: int, words: int) -> None:
    folder.mkdir()
    for i in range(n):
        text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(words))
        (folder / f"f{i:03d}.txt").write_text(f"File {i}. {text}.\n", encoding="utf-8")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- the reporter, on a fake clock ----------------------------------------------------------


def test_default_log_interval_is_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JV3_PROGRESS_INTERVAL", raising=False)
    assert LOG_INTERVAL == 10.0 and log_interval() == 10.0
    monkeypatch.setenv("JV3_PROGRESS_INTERVAL", "2.5")
    assert log_interval() == 2.5


def test_log_lines_are_plain_per_file_and_the_total_never_grows() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = IndexProgress([100, 100, 200], stream=out, interval=0, clock=clock)
    bar.start_batch([100, 100, 200])
    bar.expect(400)  # late chunking plans the batch's tokens: the total stays 400
    for _ in range(4):
        clock.now += 1
        bar.update(100)
    bar.end_batch()
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    files = [int(m.group(1)) for m in parsed if m]
    assert files == sorted(files) and files[0] == 0 and files[-1] == 3
    assert {m.group(2) for m in parsed if m} == {"3"}
    assert {m.group(4) for m in parsed if m} == {"400"}  # fixed from the first line
    assert [int(m.group(3)) for m in parsed if m] == [0, 25, 50, 75, 100, 100]
    assert "about 3 s left" in lines[1]  # 1 s for the first quarter: 3 s for the rest


def test_log_lines_wait_for_the_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = IndexProgress([10] * 100, stream=out, interval=10, clock=clock)
    for _ in range(100):
        bar.start_batch([10])
        clock.now += 1
        bar.end_batch()
    bar.close()
    assert len(out.getvalue().splitlines()) == 1 + 10  # the start, then one per 10 s


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_and_cleared() -> None:
    out = _Tty()
    bar = IndexProgress([10, 10], stream=out, interval=0)
    bar.start_batch([10, 10])
    bar.end_batch()
    bar.close()
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 4 and text.endswith("\r")
    assert text.rsplit("\r", 2)[1].strip() == ""  # the line is wiped before the summary


def test_switched_off_or_nothing_to_do_says_nothing() -> None:
    out = io.StringIO()
    IndexProgress([10], stream=out, enabled=False).close()
    IndexProgress([], stream=out).close()
    assert out.getvalue() == ""


# -- the command ----------------------------------------------------------------------------


def _jv3(args: list[str], cwd: Path, env: dict[str, str], err: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jv3_integrations", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
    )


@pytest.mark.slow
def test_index_to_a_log_file_writes_plain_monotonic_lines(
    tmp_path: Path, conformance_dir: Path
) -> None:
    _docs(tmp_path / "docs", 6, 60)
    args = ["index", "docs", "--store", "qdrant:./q", "--provider", f"local:{conformance_dir}"]
    err = tmp_path / "err.log"
    proc = _jv3(args, tmp_path, _env(tmp_path, JV3_PROGRESS_INTERVAL="0"), err)
    out, _ = proc.communicate(timeout=300)
    text = err.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text
    lines = [m for m in map(LINE.match, text.splitlines()) if m]
    assert len(lines) >= 3, text
    files = [int(m.group(1)) for m in lines]
    pcts = [int(m.group(3)) for m in lines]
    assert files == sorted(files) and pcts == sorted(pcts)
    assert files[0] == 0 and files[-1] == 6 and pcts[-1] == 100
    assert len({m.group(4) for m in lines}) == 1  # the token total is fixed from the start
    assert len({m.group(2) for m in lines}) == 1
    assert "Indexed 6 files" in out

    (tmp_path / "docs" / "f000.txt").write_text("changed\n", encoding="utf-8")
    quiet = _jv3([*args, "--no-progress"], tmp_path, _env(tmp_path), err)
    out, _ = quiet.communicate(timeout=300)
    assert quiet.returncode == 0 and err.read_text() == ""  # --no-progress: not a line
    assert "1 changed" in out


@pytest.mark.slow
def test_ctrl_c_says_what_was_saved_and_the_same_command_goes_on(
    tmp_path: Path, conformance_dir: Path
) -> None:
    n = 48
    _docs(tmp_path / "docs", n, 150)
    args = ["index", "docs", "--store", "qdrant:./q", "--provider", f"local:{conformance_dir}"]
    env = _env(tmp_path, JV3_PROGRESS_INTERVAL="0")
    err = tmp_path / "err.log"
    proc = _jv3(args, tmp_path, env, err)
    state = tmp_path / "q.jv3-state.json"
    deadline = time.monotonic() + 240
    saved_seen = 0
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a saved batch
        try:
            saved_seen = len(json.loads(state.read_text())["collections"]["jv3"]["files"])
        except (OSError, ValueError, KeyError):
            saved_seen = 0
        if saved_seen:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted; give it more"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    text = err.read_text()
    assert proc.returncode == 130, text
    m = re.search(
        r"^jv3: interrupted: saved (\d+) of (\d+) files; run the same command to "
        r"continue$",
        text,
        re.M,
    )
    assert m, text
    saved, planned = int(m.group(1)), int(m.group(2))
    assert planned == n and saved_seen <= saved < n
    assert "Traceback" not in text and not list(tmp_path.glob("*.lock"))

    again = _jv3([*args, "--json", "--no-progress"], tmp_path, _env(tmp_path), err)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, err.read_text()
    report = json.loads(out)
    # nothing saved is embedded again; the rest is
    assert report["unchanged"] == saved and report["new"] == n - saved
    assert report["files_embedded"] == n - saved


def test_batches_hold_16_files_or_about_16k_tokens() -> None:
    from jv3_integrations._cli.index_files import BATCH_TOKENS, FILES_PER_BATCH, batches

    assert (FILES_PER_BATCH, BATCH_TOKENS) == (16, 16_384)
    small = [(f"k{i}", "word " * 10, "h") for i in range(40)]
    assert [len(b) for b in batches(small)] == [16, 16, 8]
    big = [(f"k{i}", "x" * 4 * 6000, "h") for i in range(5)]  # ~6000 tokens each at 4 B/token
    assert [len(b) for b in batches(big)] == [2, 2, 1]
    assert [d for b in batches(big) for d in b] == big  # nothing dropped or reordered


def test_the_token_estimate_comes_from_a_sample_of_the_tokenizer(
    local_provider: object, api_provider: object
) -> None:
    from jv3_integrations._cli.index_progress import (
        BYTES_PER_TOKEN,
        bytes_per_token,
        estimate_tokens,
    )

    texts = [f"Note {i}: " + " ".join(WORDS) * 30 for i in range(50)]
    assert BYTES_PER_TOKEN == 4
    assert bytes_per_token(api_provider, texts) == 4  # no exact counts: the rule of thumb
    ratio = bytes_per_token(local_provider, texts)
    exact = local_provider.count_tokens(texts).total - 2 * len(texts)  # type: ignore[attr-defined]
    estimate = sum(estimate_tokens(t, ratio) for t in texts)
    assert abs(estimate - exact) <= 0.05 * exact
