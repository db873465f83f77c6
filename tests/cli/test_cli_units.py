"""Fast tests of the ``jv3`` internals: file reading, HTML text, store URIs, state, output."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from jv3_integrations import ConfigurationError
from jv3_integrations._cli.files import (
    UnreadableFileError,
    discover,
    extract_html_text,
    read_document,
)
from jv3_integrations._cli.indexer import parse_chunker
from jv3_integrations._cli.output import DisplayHit, format_hits, highlight, query_terms, trim
from jv3_integrations._cli.state import FileEntry, IndexSettings, StateFile, redact_spec
from jv3_integrations._cli.uri import parse_store_uri
from jv3_integrations.cli import build_parser, load_demo_corpus, main


def test_discover_recurses_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in [
        "a/x.md",
        "a/b/y.HTML",
        "z.txt",
        "a/b/doc.pdf",
        "a/skip.csv",
        ".git/c.txt",
        "a/.d.txt",
    ]:
        (tmp_path / name).write_text("t", encoding="utf-8")
    found = discover([tmp_path, tmp_path / "z.txt", tmp_path / "missing"])
    rel = [p.relative_to(tmp_path.resolve()).as_posix() for p in found.files]
    assert rel == ["a/b/doc.pdf", "a/b/y.HTML", "a/x.md", "z.txt"]  # sorted, no duplicate
    assert found.missing == [str(tmp_path / "missing")]


def test_html_text_drops_scripts_styles_and_decodes_entities() -> None:
    html = (
        "<!doctype html><html><head><title>T &amp; C</title><style>.a{}</style>"
        "<script>var x = '<p>no</p>';</script></head><body><nav>Home</nav>"
        "<h1>Heading</h1><p>First&nbsp;para with <b>bold</b> text.</p><ul><li>one</li>"
        "<li>two</li></ul><!-- comment --><p>caf&eacute; &#x4e2d;&#25991;</p></body></html>"
    )
    text = extract_html_text(html)
    assert text.splitlines() == [
        "T & C",
        "Home",
        "Heading",
        "First para with bold text.",  # &nbsp; folded into a plain space
        "one",
        "two",
        "café 中文",
    ]


def test_read_document_hashes_bytes_and_rejects_non_text(tmp_path: Path) -> None:
    good = tmp_path / "a.txt"
    good.write_bytes("\ufeffHallo Welt".encode())
    text, digest = read_document(good)
    assert text == "Hallo Welt"
    good.write_bytes("\ufeffHallo Welt!".encode())
    assert read_document(good)[1] != digest
    latin = tmp_path / "b.txt"  # not UTF-8: detected (tests/cli/test_files_encodings.py)
    latin.write_bytes(b"caf\xe9")
    assert read_document(latin)[0] == "café"
    binary = tmp_path / "c.md"
    binary.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(UnreadableFileError, match="binary"):
        read_document(binary)


def test_pdf_without_pypdf_is_a_clear_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pypdf", None)
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    with pytest.raises(UnreadableFileError, match=r"jv3-integrations\[pdf\]"):
        read_document(pdf)


@pytest.mark.parametrize(
    ("uri", "kind", "target", "local"),
    [
        ("milvus:./jv3.db", "milvus", "./jv3.db", True),
        ("qdrant:./jv3-qdrant", "qdrant", "./jv3-qdrant", True),
        ("qdrant::memory:", "qdrant", ":memory:", True),
        (
            "qdrant:https://xyz.cloud.qdrant.io:6333",
            "qdrant",
            "https://xyz.cloud.qdrant.io:6333",
            False,
        ),
        ("milvus:http://localhost:19530", "milvus", "http://localhost:19530", False),
        ("pinecone:my-docs", "pinecone", "my-docs", False),
    ],
)
def test_store_uris(uri: str, kind: str, target: str, local: bool) -> None:
    parsed = parse_store_uri(uri)
    assert (parsed.kind, parsed.target, parsed.local) == (kind, target, local)


@pytest.mark.parametrize(
    "uri",
    [
        "redis:x",
        "qdrant:",
        "./jv3.db",
        "pinecone:Bad_Name",
        "milvus::memory:",
        "pinecone:",
        "milvus:./dir",
    ],
)
def test_bad_store_uris(uri: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_store_uri(uri)


def test_state_paths_and_redaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        parse_store_uri("milvus:./x/jv3.db").state_path()
        == tmp_path / "x" / "jv3.db.jv3-state.json"
    )
    assert parse_store_uri("qdrant::memory:").state_path() is None
    monkeypatch.setenv("JV3_STATE_DIR", str(tmp_path / "st"))
    remote = parse_store_uri("qdrant:https://user:pw@host:6333/?api_key=s3cret").state_path()
    assert remote is not None and remote.parent == tmp_path / "st"
    assert "s3cret" not in str(remote) and "pw" not in remote.name
    assert (
        redact_spec("https://user:secret@h.example:8080/base?key=k")
        == "https://h.example:8080/base"
    )
    assert redact_spec("local:./model") == "local:./model"


def test_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = StateFile(path)
    coll = state.collection("docs")
    coll.settings = IndexSettings("m", "api", 256, "sentences:1000", True)
    coll.files["/a"] = FileEntry("sha256:1", ["id1", "id2"], 12)
    state.save()
    again = StateFile(path)
    assert again.has_collection("docs") and not again.has_collection("other")
    assert again.collection("docs").settings == coll.settings
    assert again.collection("docs").files["/a"] == FileEntry("sha256:1", ["id1", "id2"], 12)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="jv3 index --rebuild"):  # one line, with the fix
        StateFile(path)


def test_chunker_specs() -> None:
    assert parse_chunker("sentences") == "sentences:1000"
    assert parse_chunker("Sentences:300") == "sentences:300"
    assert parse_chunker("tokens:128") == "tokens:128"
    for bad in ("tokens", "tokens:0", "words", "sentences:x"):
        with pytest.raises(ConfigurationError):
            parse_chunker(bad)


def test_trim_and_highlight() -> None:
    text = ("filler words here " * 30) + "the Zugspitze is high " + ("more filler " * 30)
    terms = query_terms("How high is the Zugspitze?")
    assert "zugspitze" in terms and "is" not in terms
    cut = trim(text, terms, width=80)
    assert "Zugspitze" in cut and cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= 82
    assert highlight("Die Zugspitze", terms, color=True) == "Die \x1b[1;33mZugspitze\x1b[0m"
    assert highlight("Die Zugspitze", terms, color=False) == "Die Zugspitze"
    assert "長城" in query_terms("万里長城")  # CJK: bigrams


def test_format_hits_plain() -> None:
    out = format_hits(
        [DisplayHit(0.91234, "docs/a.md", "Hello\nworld", 0, 11)], "hello", color=False
    )
    assert out.splitlines() == [" 1. 0.9123  docs/a.md [0:11]", "    Hello world"]
    assert format_hits([], "x", color=False) == "No results."


def test_demo_corpus_is_multilingual_and_consistent() -> None:
    corpus = load_demo_corpus()
    passages = corpus["passages"]
    assert len(passages) >= 24
    langs = {p["lang"] for p in passages}
    assert {"en", "de", "es", "zh", "ja"} <= langs
    ids = {p["id"] for p in passages}
    assert len(ids) == len(passages)
    for q in corpus["queries"]:
        assert q["expect"] in ids
    # cross-lingual: most queries are answered in another language
    by_id = {p["id"]: p for p in passages}
    cross = [q for q in corpus["queries"] if by_id[q["expect"]]["lang"] != q["lang"]]
    assert len(cross) >= len(corpus["queries"]) - 1


def test_demo_corpus_ships_in_the_wheel() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    data = root / "src" / "jv3_integrations" / "data" / "demo_corpus.json"
    assert any(data.is_relative_to(root / p) for p in packages)
    json.loads(data.read_text(encoding="utf-8"))


def test_parser_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JV3_STORE", raising=False)
    args = build_parser().parse_args(["index", "docs"])
    assert args.late_chunking is None and args.progress is True and args.collection == "jv3"
    assert parse_store_uri(args.store).local
    monkeypatch.setenv("JV3_STORE", "milvus:./elsewhere.db")
    assert build_parser().parse_args(["search", "q"]).store == "milvus:./elsewhere.db"


def test_pinecone_store_through_the_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    conformance_dir: Path,
) -> None:
    from tests.support.pinecone_server import running_pinecone

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JV3_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "a.txt").write_text("Tides follow the Moon. Two a day.", encoding="utf-8")
    (tmp_path / "b.md").write_text("Paella comes from Valencia.", encoding="utf-8")
    spec = f"local:{conformance_dir}"
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    assert main(["index", ".", "--store", "pinecone:docs", "--provider", spec]) == 1
    assert "PINECONE_API_KEY" in capsys.readouterr().err
    with running_pinecone() as srv:
        monkeypatch.setenv("PINECONE_API_KEY", srv.state.api_key)
        monkeypatch.setenv("PINECONE_HOST", srv.base_url)
        args = ["--store", "pinecone:docs", "--collection", "team-a"]
        code = main(["index", ".", *args, "--provider", spec, "--no-progress", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["new"] == 2 and report["chunks_total"] >= 2
        before = report["chunks_total"]
        assert main(["search", "Valencia", *args, "--json", "--k", "5"]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        assert {h["file"] for h in hits} == {"a.txt", "b.md"}
        (tmp_path / "a.txt").unlink()
        assert main(["index", ".", *args, "--no-progress", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["removed"] == 1 and report["chunks_deleted"] >= 1
        assert report["chunks_total"] == before - report["chunks_deleted"]
        assert main(["search", "Valencia", *args, "--json", "--k", "5"]) == 0
        assert {h["file"] for h in json.loads(capsys.readouterr().out)["hits"]} == {"b.md"}
        assert not srv.schema_errors


def _tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica (hand-built, with a correct xref table)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_pdf_text_with_pypdf(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(_tiny_pdf("Tides follow the Moon."))
    text, _ = read_document(pdf)
    assert text.strip() == "Tides follow the Moon."
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(UnreadableFileError, match="PDF"):
        read_document(broken)


def test_capped_chunker_tiles_and_bounds_run_on_text() -> None:
    from jv3_integrations import SentenceChunker
    from jv3_integrations.core import CappedChunker

    doc = "Short one. " + ("word " * 3000) + "\n\nEnd."
    chunks = CappedChunker(SentenceChunker(max_chars=1000), max_chars=500).chunk(doc)
    assert "".join(c.text for c in chunks) == doc
    assert all(doc[c.start : c.end] == c.text for c in chunks)
    assert all(b.start == a.end for a, b in itertools.pairwise(chunks))
    assert max(len(c.text.rstrip()) for c in chunks) <= 500  # (+ trailing whitespace)
    assert all(c.text.strip() for c in chunks)
    nospace = "x" * 1234
    assert [len(c.text) for c in CappedChunker(SentenceChunker(), 500).chunk(nospace)] == [
        500,
        500,
        234,
    ]


def test_relative_local_model_is_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jv3_integrations._cli.providers import _absolute_local

    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _absolute_local("local:./model") == f"local:{tmp_path.resolve() / 'model'}"
    assert _absolute_local("local:jinaai/jina-embeddings-v3") == "local:jinaai/jina-embeddings-v3"
    assert _absolute_local("api") == "api"
