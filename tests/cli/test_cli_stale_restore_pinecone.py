"""Issue 26 item 8 for ``pinecone:INDEX`` stores: an index restored from an older backup after an
edit is refused, not silently stale.

Index a folder into the loopback Pinecone, keep a deep copy of the server's index (vectors and
tags, as a Pinecone backup holds them), edit a file and index again, put the copy back (as a
restore from that backup would): the index now holds the old text while the state file describes
the new one. ``jv3 search`` and ``jv3 index`` must say so in one line naming
``jv3 index --rebuild``, and that command must leave an index that returns only the new text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jv3_integrations._cli.generation import (
    check_generation,
    mark_generation,
    read_generation,
)
from jv3_integrations.cli import main
from tests.support.pinecone_server import running_pinecone

pytestmark = pytest.mark.slow

OLD = "Ocean tides are caused by the Moon. The old harbour keeps a zebra as its mascot."
NEW = "Ocean tides are caused by the Moon. The new harbour keeps a walrus as its mascot."
INDEX = "docs"


@pytest.fixture
def srv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JV3_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("JV3_STORE", raising=False)
    monkeypatch.delenv("JV3_PROVIDER", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with running_pinecone() as server:
        monkeypatch.setenv("PINECONE_API_KEY", server.state.api_key)
        monkeypatch.setenv("PINECONE_HOST", server.base_url)
        yield server
        assert not server.schema_errors


def _backup(srv: Any) -> Any:
    with srv.state.lock:
        return copy.deepcopy(srv.state.indexes[INDEX])


def _restore(srv: Any, backup: Any) -> None:
    with srv.state.lock:
        srv.state.indexes[INDEX] = copy.deepcopy(backup)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = _run(capsys, *args)
    assert code == 0, f"{args}: rc={code}\n{out}\n{err}"
    return out


def _refused(capsys: pytest.CaptureFixture[str], *args: str) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 1, f"{args}: {out}\n{err}"
    assert "zebra" not in out
    assert err.startswith("jv3: error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "older than its index state" in err and "jv3 index --rebuild" in err, err


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour.md").write_text(OLD)
    (docs / "other.md").write_text("Mountains are high. The Zugspitze is in Germany.")
    (docs / "gone.md").write_text("A lighthouse guards the penguin colony.")
    return docs


def test_a_restored_older_pinecone_index_is_refused_until_rebuilt(
    srv: Any, tmp_path: Path, conformance_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = _docs(tmp_path)
    common = ["--store", f"pinecone:{INDEX}", "--provider", f"local:{conformance_dir}"]
    index = ["index", "docs", "--no-progress", *common]
    search = ["search", "harbour mascot", "--k", "5", "--json", *common]

    _ok(capsys, *index)
    facts = {k: v for k, v in srv.state.indexes[INDEX].tags.items() if k.startswith("jv3_")}
    assert {"jv3_model", "jv3_dimensions"} <= set(facts)
    backup = _backup(srv)
    (docs / "harbour.md").write_text(NEW)
    (docs / "gone.md").unlink()
    _ok(capsys, *index)
    now = _ok(capsys, *search)
    assert "walrus" in now and "penguin" not in now
    # marking the write generation keeps the tags the store wrote when it created the index
    tags = srv.state.indexes[INDEX].tags
    assert {k: v for k, v in tags.items() if k.startswith("jv3_")} == facts
    _restore(srv, backup)  # the old copy is back; the state file still describes NEW
    assert "zebra" in json.dumps(srv.state.indexes[INDEX].namespaces, default=str)

    _refused(capsys, *search)
    _refused(capsys, *index)

    _ok(capsys, "index", "docs", "--rebuild", "--no-progress", *common)
    found = _ok(capsys, *search)
    # neither the old text nor the file deleted since the backup (its chunks are in the old
    # copy, in no state) is left in the rebuilt index
    assert "walrus" in found and "zebra" not in found and "penguin" not in found
    tags = srv.state.indexes[INDEX].tags
    assert {k: v for k, v in tags.items() if k.startswith("jv3_")} == facts
    # and the index is in step with its state again: a plain index run goes through
    _ok(capsys, *index)
    _ok(capsys, *search)


def test_each_namespace_keeps_its_own_generation(
    srv: Any, tmp_path: Path, conformance_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two ``--collection``s are two namespaces of one index, and one backup restores both:
    rebuilding one must not hide that the other is stale too (nor must indexing a third)."""
    docs = _docs(tmp_path)
    spec = ["--provider", f"local:{conformance_dir}"]

    def run(name: str, *args: str) -> list[str]:
        return [*args, "--store", f"pinecone:{INDEX}", "--collection", name, *spec]

    for name in ("team-a", "team-b"):
        _ok(capsys, *run(name, "index", "docs", "--no-progress"))
    backup = _backup(srv)
    (docs / "harbour.md").write_text(NEW)
    for name in ("team-a", "team-b"):
        _ok(capsys, *run(name, "index", "docs", "--no-progress"))
    _restore(srv, backup)

    _ok(capsys, *run("team-c", "index", "docs", "--no-progress"))  # new since the backup
    _ok(capsys, *run("team-a", "index", "docs", "--rebuild", "--no-progress"))
    found = _ok(capsys, *run("team-a", "search", "harbour mascot", "--json", "--k", "5"))
    assert "walrus" in found and "zebra" not in found
    _refused(capsys, *run("team-b", "search", "harbour mascot", "--json", "--k", "5"))
    _refused(capsys, *run("team-b", "index", "docs", "--no-progress"))
    # the rebuild of team-a dropped its own namespace only
    assert srv.state.indexes[INDEX].namespaces["team-b"]


def test_an_index_handle_without_the_control_plane_is_not_checked(
    srv: Any, local_provider: Any
) -> None:
    """A store opened on an ``Index`` (data plane only) has no tags to read: not checked."""
    from pinecone import Pinecone

    from jv3_integrations.pinecone import PineconeStore

    pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
    with PineconeStore(local_provider, client=pc, collection=INDEX) as store:
        store.create()
        assert read_generation(store) == 0
        assert mark_generation(store, None) == 1
        assert read_generation(store) == 1
        check_generation(store, 1, "here")
        with pytest.raises(Exception, match="jv3 index --rebuild"):
            check_generation(store, 2, "here")
        host = str(pc.describe_index(INDEX).host)
    handle = pc.Index(host=host)
    with PineconeStore(local_provider, client=handle, collection=INDEX) as store:
        store.create()
        assert read_generation(store) is None
        assert mark_generation(store, 5) == 5  # nothing written, the state's value kept
        check_generation(store, 9, "here")  # nothing to compare with: accepted
    assert srv.state.indexes[INDEX].tags.get("jv3generation") == "1"
    handle.close()
    pc.close()


def test_namespace_tags_and_an_index_with_no_tag_left(srv: Any, local_provider: Any) -> None:
    """A namespace that is no tag key gets a hashed one; an index whose 20 tags are taken
    cannot be marked: that namespace is not checked, and the write is not stopped."""
    from pinecone import Pinecone

    from jv3_integrations.pinecone import PineconeStore

    pc = Pinecone(api_key=srv.state.api_key, host=srv.base_url)
    with PineconeStore(local_provider, client=pc, collection=INDEX, namespace="Team A/ü") as a:
        a.create()
        assert mark_generation(a, 4) == 5
        keys = [k for k in srv.state.indexes[INDEX].tags if k.startswith("jv3generation")]
        assert len(keys) == 1 and keys[0].startswith("jv3generation--"), keys
        with PineconeStore(local_provider, client=pc, collection=INDEX, namespace="b") as b:
            assert read_generation(b) == 0  # its own tag, not team A's
            assert mark_generation(b, None) == 1
        assert srv.state.indexes[INDEX].tags["jv3generation-b"] == "1"
        with srv.state.lock:
            tags = srv.state.indexes[INDEX].tags
            tags.update({f"other{i}": "x" for i in range(20 - len(tags))})
        with PineconeStore(local_provider, client=pc, collection=INDEX, namespace="c") as c:
            assert mark_generation(c, 2) is None
            check_generation(c, None, "here")
        assert "jv3generation-c" not in srv.state.indexes[INDEX].tags
        assert mark_generation(a, 5) == 6  # an existing tag can still move on
    pc.close()
