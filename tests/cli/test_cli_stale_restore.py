"""Issue 26 item 8: a local store restored from an older copy after an edit is refused, not
silently stale.

Index a folder, copy the store aside, edit a file and index again, put the old copy back: the
store now holds the old text while the state file describes the new one. ``jv3 search`` and
``jv3 index`` must say so in one line naming ``jv3 index --rebuild``, and that command must
leave a store that returns only the new text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jv3_integrations._cli.state import CollectionState

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OLD = "Ocean tides are caused by the Moon. The old harbour keeps a zebra as its mascot."
NEW = "Ocean tides are caused by the Moon. The new harbour keeps a walrus as its mascot."


def _jv3(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JINA_API_KEY", "JV3_PROVIDER"}}
    env.update({"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "JV3_STORE": ""})
    return subprocess.run(
        [sys.executable, "-m", "jv3_integrations", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.mark.parametrize("store", ["milvus:./idx/jv3.db", "qdrant:./idx/q"])
def test_a_restored_older_store_is_refused_until_rebuilt(
    tmp_path: Path, conformance_dir: Path, store: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour.md").write_text(OLD)
    (docs / "other.md").write_text("Mountains are high. The Zugspitze is in Germany.")
    (docs / "gone.md").write_text("A lighthouse guards the penguin colony.")
    common = ["--store", store, "--provider", f"local:{conformance_dir}"]
    index = ["index", "docs", "--no-progress", *common]
    search = ["search", "harbour mascot", "--k", "5", "--json", *common]
    place = tmp_path / store.split(":", 1)[1]

    _ok(_jv3(tmp_path, *index))
    backup = tmp_path / "backup"
    _copy(place, backup)
    (docs / "harbour.md").write_text(NEW)
    (docs / "gone.md").unlink()
    _ok(_jv3(tmp_path, *index))
    now = _ok(_jv3(tmp_path, *search))
    assert "walrus" in now and "penguin" not in now
    _copy(backup, place)  # the old copy is back; the state file still describes NEW

    for args in (search, index):
        proc = _jv3(tmp_path, *args)
        assert proc.returncode == 1, f"{args}: {proc.stdout}\n{proc.stderr}"
        assert "zebra" not in proc.stdout
        assert proc.stderr.startswith("jv3: error:") and "Traceback" not in proc.stderr
        assert "jv3 index --rebuild" in proc.stderr, proc.stderr

    _ok(_jv3(tmp_path, "index", "docs", "--rebuild", "--no-progress", *common))
    found = _ok(_jv3(tmp_path, *search))
    # neither the old text nor the file deleted since the copy (its chunks are in the old copy,
    # in no state) is left in the rebuilt store
    assert "walrus" in found and "zebra" not in found and "penguin" not in found
    # and the store is in step with its state again: a plain index run goes through
    _ok(_jv3(tmp_path, *index))


def test_state_generation_round_trips_and_old_states_have_none() -> None:
    assert CollectionState.from_json({"settings": None, "files": {}}).generation is None
    state = CollectionState(generation=7)
    again = CollectionState.from_json(json.loads(json.dumps(state.to_json())))
    assert again.generation == 7
    assert "generation" not in CollectionState().to_json()  # old readers see what they know
