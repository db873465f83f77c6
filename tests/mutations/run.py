"""Apply each one-line mutation of tests/mutations/mutations.py alone and check a test fails.

Usage (from the repository root; ``tox -e mutations`` runs it, not part of CI's default run):

    python tests/mutations/run.py            # every mutation
    python tests/mutations/run.py --list     # names and promises
    python tests/mutations/run.py int8-no-op default-timeout-5s

Each mutant is a copy of ``src/`` in a temporary folder put first on ``PYTHONPATH``, so the
working tree is never modified. Prints one JSON object; exits 1 when a mutation survived
(every selected test passed) or its anchor text is no longer found exactly once (update the
mutation together with the code).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.mutations.mutations import MUTATIONS, Mutation  # noqa: E402


def run_one(mutation: Mutation, timeout: float) -> dict[str, object]:
    source = (ROOT / "src" / mutation.path).read_text(encoding="utf-8")
    found = source.count(mutation.old)
    if found != 1:
        return {"name": mutation.name, "result": "anchor-missing", "found": found}
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.name}-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        (src / mutation.path).write_text(source.replace(mutation.old, mutation.new), "utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [*cmd, *mutation.tests],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"name": mutation.name, "result": "timeout", "seconds": timeout}
        seconds = round(time.perf_counter() - started, 1)
    # pytest: 1 = some test failed (caught); 0 = all passed (survived); others = broken run
    result = {0: "survived", 1: "caught"}.get(proc.returncode, f"pytest-exit-{proc.returncode}")
    out: dict[str, object] = {"name": mutation.name, "result": result, "seconds": seconds}
    if result != "caught":
        out["tail"] = proc.stdout[-1500:] + proc.stderr[-500:]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:28} {m.promise}")
        return 0
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutations {unknown}; see --list")
    chosen = [known[n] for n in args.names] if args.names else list(MUTATIONS)
    results = []
    for m in chosen:
        print(f"mutant {m.name} ...", file=sys.stderr, flush=True)
        results.append(run_one(m, args.timeout))
        print(f"  {results[-1]['result']}", file=sys.stderr, flush=True)
    print(json.dumps({"mutations": results}, indent=2))
    return 0 if all(r["result"] == "caught" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
