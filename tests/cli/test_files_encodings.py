"""Reading documents in the encodings people have, and what the folder walk skips (issue 27).

Files that are not UTF-8 were skipped; the common legacy encodings are now detected
(charset-normalizer), and a file that still cannot be read says why, by name. Sphinx's
``_sources/`` copies (``page.rst.txt`` next to ``page.html``) are not indexed twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jv3_integrations._cli.files import UnreadableFileError, discover, read_document

FRENCH = (
    "Le café est à côté de la gare. Déjà, les élèves étudient la théorie des ensembles et "
    "l'économie. Où est la bibliothèque ? Ça coûte cher, très cher.\n"
) * 3
GERMAN = "Die Straße führt über die Brücke zum Bahnhof. Grüße aus München, schöne Grüße!\n"
JAPANESE = "東京は日本の首都です。人口は約千四百万人です。富士山は日本で一番高い山です。\n" * 3
CHINESE = "北京是中国的首都。长城是世界上最长的建筑。我们今天去图书馆看书。\n" * 3


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (FRENCH, "cp1252"),
        (FRENCH, "latin-1"),
        (GERMAN, "cp1252"),
        ("naïve façade\n", "cp1252"),
        ("café", "cp1252"),
        ("Grüße\n", "latin-1"),
        (JAPANESE, "shift_jis"),
        (JAPANESE, "euc-jp"),
        (CHINESE, "gb18030"),
        (FRENCH, "utf-16"),  # with its BOM
    ],
)
def test_common_encodings_are_read(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(text.encode(encoding))
    assert read_document(path)[0] == text


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    page = (
        '<html><head><meta charset="windows-1252"><title>Café</title></head>'
        "<body><p>Déjà vu à la gare.</p></body></html>"
    )
    path = tmp_path / "page.html"
    path.write_bytes(page.encode("cp1252"))
    assert read_document(path)[0] == "Café\nDéjà vu à la gare."


def test_utf8_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(FRENCH + JAPANESE, encoding="utf-8")
    assert read_document(path)[0] == FRENCH + JAPANESE


def test_what_cannot_be_read_says_why(tmp_path: Path) -> None:
    binary = tmp_path / "data.txt"
    binary.write_bytes(b"\x00\x01\x02\x03binary" * 100)
    with pytest.raises(UnreadableFileError, match="binary"):
        read_document(binary)
    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes(range(128, 256)) * 40)
    with pytest.raises(UnreadableFileError, match="encoding") as err:
        read_document(noise)
    assert "UTF-8" in str(err.value)


def test_sphinx_sources_copies_are_skipped(tmp_path: Path) -> None:
    html = tmp_path / "html"
    (html / "_sources" / "library").mkdir(parents=True)
    (html / "library").mkdir()
    (html / "index.html").write_text("<p>Index</p>")
    (html / "library" / "io.html").write_text("<p>io</p>")
    (html / "_sources" / "index.rst.txt").write_text("Index\n=====")
    (html / "_sources" / "library" / "io.rst.txt").write_text("io\n==")
    found = discover([html])
    assert [p.name for p in found.files] == ["index.html", "io.html"]
    assert found.ignored == {"Sphinx _sources folder": 1}
    # named on purpose, the copies are indexed
    assert len(discover([html / "_sources"]).files) == 2
