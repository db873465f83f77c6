"""Build the plugin's ``.difypkg``: a zip of this folder without what ``.difyignore`` names.

Dify's own packager (``dify plugin package``) is a Go binary; this does the same job with the
standard library. ``.difyignore`` uses ``.gitignore`` syntax: ``#`` comments, ``!`` to re-include,
a trailing ``/`` for folders only, a ``/`` inside or at the start to anchor at the folder, ``*``,
``?`` and ``**``. The last pattern that matches a path decides.

Usage: ``python build_difypkg.py [--source DIR] [--output FILE]``
(default: this folder -> ``dist/jina_v3-<version>.difypkg`` in the current directory).
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Dify refuses packages over 50 MB (its default plugin size limit)
MAX_BYTES = 50 * 1024 * 1024


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body = pattern.strip("/")
    out = ""
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif body.startswith("**", i):
            out += ".*"
            i += 2
        elif body[i] == "*":
            out += "[^/]*"
            i += 1
        elif body[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(body[i])
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{out}$")


def read_ignore(source: Path) -> list[tuple[re.Pattern[str], bool, bool]]:
    """``(regex, negated, folders_only)`` per pattern of ``source/.difyignore`` (none if absent)."""
    path = source / ".difyignore"
    rules = []
    if path.is_file():
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:] if negated else line
            rules.append((_pattern_regex(line), negated, line.endswith("/")))
    return rules


def ignored(rel: str, is_dir: bool, rules: list[tuple[re.Pattern[str], bool, bool]]) -> bool:
    verdict = False
    for regex, negated, folders_only in rules:
        if folders_only and not is_dir:
            continue
        if regex.match(rel):
            verdict = not negated
    return verdict


def files_to_pack(source: Path) -> list[Path]:
    """The files of ``source`` to ship, sorted (a folder that is ignored is not walked)."""
    rules = read_ignore(source)
    out: list[Path] = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            rel = entry.relative_to(source).as_posix()
            if entry.is_dir():
                if not ignored(rel, True, rules):
                    walk(entry)
            elif entry.is_file() and not ignored(rel, False, rules):
                out.append(entry)

    walk(source)
    return out


def _version(source: Path) -> str:
    for line in (source / "manifest.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise SystemExit("manifest.yaml has no top-level version")


def build(source: Path, output: Path | None = None) -> Path:
    """Write the package; return its path. Raises SystemExit if it is too large for Dify."""
    source = source.resolve()
    target = output or Path.cwd() / "dist" / f"jina_v3-{_version(source)}.difypkg"
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files_to_pack(source):
            if path.resolve() == target.resolve():
                continue
            zf.write(path, path.relative_to(source).as_posix())
    size = target.stat().st_size
    if size > MAX_BYTES:
        target.unlink()
        raise SystemExit(f"the package is {size} bytes, over Dify's limit of {MAX_BYTES}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=HERE, help="plugin folder")
    parser.add_argument("--output", type=Path, default=None, help="the .difypkg to write")
    args = parser.parse_args(argv)
    print(build(args.source, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
