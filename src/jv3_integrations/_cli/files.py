"""Finding and reading the documents ``jv3 index`` embeds (.txt, .md, .html, .pdf)."""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

__all__ = [
    "SPHINX_SOURCES",
    "SUPPORTED_SUFFIXES",
    "Discovery",
    "PdfSupportMissingError",
    "UnreadableFileError",
    "content_hash",
    "discover",
    "nothing_to_index",
    "extract_html_text",
    "read_document",
]

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES

#: Sphinx copies each page's source into ``_sources/`` of its HTML output (``io.rst.txt``
#: next to ``io.html``): a folder walk passes over such a folder (it is indexed when named).
SPHINX_SOURCES = "_sources"
_SPHINX_REASON = "Sphinx _sources folder"

# Bumped when extraction changes, so re-indexing re-reads every file once.
EXTRACTOR_VERSION = "1"


class UnreadableFileError(Exception):
    """A file that cannot be turned into text; the message says why (no traceback shown)."""


@dataclass
class Discovery:
    """What :func:`discover` found under the given paths.

    Attributes:
        files: Supported files, resolved and sorted, without duplicates.
        roots: The resolved directories and files that were searched (for removal detection).
        missing: Paths given on the command line that do not exist.
        ignored: What the walk passed over, counted by reason (``hidden folder``,
            ``hidden file``, ``unsupported type``), so a summary can say so.
    """

    files: list[Path]
    roots: list[Path]
    missing: list[str]
    ignored: dict[str, int] = field(default_factory=dict)


def _hidden(name: str) -> bool:
    return name.startswith(".") and name not in {".", ".."}


def discover(paths: Sequence[str | os.PathLike[str]], *, include_hidden: bool = False) -> Discovery:
    """Find supported documents under ``paths`` (files or folders, searched recursively).

    Hidden files and folders (``.git``, ``.venv`` ...) are skipped inside folders unless
    ``include_hidden``; a file named explicitly is taken even if hidden, as long as its suffix
    is supported. Sphinx's ``_sources`` copies inside a folder are skipped too (the page is
    indexed from its HTML). Every skip is counted by reason in :attr:`Discovery.ignored`.
    """
    found: dict[Path, None] = {}
    roots: list[Path] = []
    missing: list[str] = []
    ignored: dict[str, int] = {}

    def skip(reason: str, n: int = 1) -> None:
        if n:
            ignored[reason] = ignored.get(reason, 0) + n

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            missing.append(str(raw))
            continue
        resolved = path.resolve()
        roots.append(resolved)
        if resolved.is_file():
            if resolved.suffix.lower() in SUPPORTED_SUFFIXES:
                found[resolved] = None
            else:
                skip("unsupported type")
            continue
        _walk(resolved, include_hidden, found, skip)
    return Discovery(files=sorted(found), roots=roots, missing=missing, ignored=ignored)


def _walk(
    folder: Path,
    include_hidden: bool,
    found: dict[Path, None],
    skip: Callable[..., None],
) -> None:
    """Add the supported files under ``folder`` to ``found`` in a stable order; count skips."""
    for dirpath, dirnames, filenames in os.walk(folder):
        if not include_hidden:
            skip("hidden folder", sum(1 for d in dirnames if _hidden(d)))
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
        if SPHINX_SOURCES in dirnames:
            skip(_SPHINX_REASON)
            dirnames.remove(SPHINX_SOURCES)
        dirnames.sort()
        for name in sorted(filenames):
            if _hidden(name) and not include_hidden:
                skip("hidden file")
            elif Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                found[Path(dirpath) / name] = None
            else:
                skip("unsupported type")


def nothing_to_index(paths: Sequence[str | os.PathLike[str]], found: Discovery) -> str:
    """The warning for a walk that found no document: where, what it passed over, what counts."""
    where = ", ".join(str(p) for p in paths) or "(no path)"
    passed = ", ".join(f"{n} {why}" for why, n in sorted(found.ignored.items()))
    kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
    return (
        f"no files to index in {where}"
        + (f" (passed over: {passed})" if passed else " (it is empty)")
        + f"; jv3 indexes {kinds}"
    )


def is_under(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one of them."""
    return any(path == root or root in path.parents for root in roots)


def content_hash(data: bytes) -> str:
    """The content hash the index state keeps per file (sha256 + extractor version)."""
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256:{digest}:x{EXTRACTOR_VERSION}"


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
#: Single-byte Western encodings: when cp1252 reads the bytes as well as the best guess, it is
#: taken (the most common legacy encoding; the detector confuses the Latin code pages on
#: short texts).
_LATIN_SLACK = 0.05
_NO_GUESS = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le"]


def _decode(data: bytes, path: Path) -> str:
    """Text of a file: BOM, UTF-8, an HTML page's declared charset, else a detected encoding.

    Raises:
        UnreadableFileError: binary data, or text in no encoding the detector recognises.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise UnreadableFileError(
                    f"starts with a {encoding} mark but is not {encoding}"
                ) from None
    if b"\x00" in data[:8192]:
        raise UnreadableFileError("looks like a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if path.suffix.lower() in HTML_SUFFIXES and (m := _META_CHARSET.search(data[:4096])):
        try:
            return data.decode(m.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong declaration: detect instead
    detected = _detect(data)
    if detected is None:
        raise UnreadableFileError(
            "is not UTF-8 and its encoding could not be detected (binary data?); "
            "convert it to UTF-8 to index it"
        )
    logger.info("reading %s as %s (not UTF-8; detected)", path, detected)
    return data.decode(detected)


def _detect(data: bytes) -> str | None:
    """The encoding charset-normalizer finds for ``data`` (cp1252 among equals), or None.

    UTF-16/32 without a byte-order mark are not guessed (short Latin texts look like them).
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data, cp_exclusion=_NO_GUESS))
    if not matches:
        return None
    best = min(matches, key=lambda m: m.chaos)
    try:
        western: str | None = data.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if western is not None:
        close = [m for m in matches if m.chaos <= best.chaos + _LATIN_SLACK]
        if any(m.encoding == "cp1252" or str(m) == western for m in close[:8]):
            return "cp1252"
    try:
        data.decode(best.encoding)
    except (LookupError, UnicodeDecodeError):
        return None
    return str(best.encoding)


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page: scripts, styles and templates dropped, blocks on new lines."""

    SKIP = frozenset({"script", "style", "template", "noscript", "head", "svg"})
    BLOCK = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
            "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
            "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th",
            "title", "tr", "ul",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skip_depth = 0
        self._title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
            return
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag in self.BLOCK:
            self._parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self.BLOCK:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
        elif self._skip_depth == 0:
            self._parts.append(data)

    def text(self) -> str:
        body = "".join(self._parts)
        lines = [" ".join(line.split()) for line in body.splitlines()]
        paragraphs: list[str] = []
        for line in lines:
            if line:
                paragraphs.append(line)
        title = " ".join("".join(self._title).split())
        if title and (not paragraphs or paragraphs[0] != title):
            paragraphs.insert(0, title)
        return "\n".join(paragraphs)


def extract_html_text(html: str) -> str:
    """The visible text of an HTML document (title first, one block per line).

    Example:
        >>> extract_html_text("<h1>Hi</h1><script>x()</script><p>A &amp; B</p>")
        'Hi\\nA & B'
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


class PdfSupportMissingError(UnreadableFileError):
    """The optional ``pdf`` extra (pypdf) is not installed."""


def _read_pdf(path: Path) -> str:
    try:
        import pypdf
    except ImportError:
        raise PdfSupportMissingError(
            "PDF support needs pypdf: pip install 'jv3-integrations[pdf]'"
        ) from None
    try:
        reader = pypdf.PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many unrelated types for broken files
        raise UnreadableFileError(f"is not a readable PDF ({type(exc).__name__})") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def read_document(path: Path) -> tuple[str, str]:
    """Read one document as text.

    Returns:
        ``(text, content_hash)``; the hash is of the raw file bytes.

    Raises:
        UnreadableFileError: the file cannot be read or decoded (the message says why).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnreadableFileError(f"cannot be read ({reason})") from None
    digest = content_hash(data)
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _read_pdf(path), digest
    text = _decode(data, path)
    if suffix in HTML_SUFFIXES:
        text = extract_html_text(text)
    return text, digest


def display_path(key: str) -> str:
    """A path as the user should see it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(key) if Path(key).is_relative_to(Path.cwd()) else key
    except ValueError:
        return key
