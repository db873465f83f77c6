"""``jv3 index``, ``jv3 search`` and ``jv3 embed``: arguments into library calls, results to
stdout."""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Any

from ..core import ConfigurationError, InputError, default_provider_spec
from .errors import EXIT_INTERRUPTED


def cmd_index(args: argparse.Namespace) -> int:
    from .indexer import IndexInterrupted

    engine = None
    if args.engine == "ray":
        from .ray_engine import RayEngine

        engine = RayEngine(args.ray_address, args.workers, args.gpus_per_worker)
    elif args.ray_address or args.workers != 1 or args.gpus_per_worker:
        raise ConfigurationError("--ray-address, --workers and --gpus-per-worker need --engine ray")
    try:
        report = _index(args, engine)
    except IndexInterrupted as stop:  # what was embedded is saved: say so, and how to go on
        print(f"jv3: interrupted: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(report.summary())
    return 0


def _index(args: argparse.Namespace, engine: Any) -> Any:
    from ..indexing import index_folder  # the public job: the CLI runs what applications run
    from .warn import stderr_warn

    return index_folder(
        args.paths,
        store=args.store,
        collection=args.collection,
        provider=args.provider,
        model=args.model,
        dimensions=args.dimensions,
        late_chunking=args.late_chunking,
        chunker=args.chunker,
        hybrid=args.hybrid,
        progress=args.progress,
        include_hidden=args.include_hidden,
        rebuild=args.rebuild,
        on_warning=stderr_warn,
        _engine=engine,
    )


def cmd_search(args: argparse.Namespace) -> int:
    from .output import format_hits, use_color
    from .search import SearchOptions, run_search
    from .warn import stderr_warn

    [hits] = run_search(
        SearchOptions(
            queries=[args.query],
            store=args.store,
            collection=args.collection,
            provider=args.provider,
            model=args.model,
            k=args.k,
            mode=args.mode,
        ),
        warn=stderr_warn,
    )
    if args.json:
        out = {"query": args.query, "hits": [h.to_json(i) for i, h in enumerate(hits, 1)]}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(format_hits(hits, args.query, color=use_color(sys.stdout), width=args.width))
    return 0


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts: list[str] = list(args.texts)
    if not texts or texts == ["-"]:
        if sys.stdin.isatty() and not texts:
            raise InputError("give texts to embed as arguments, or '-' to read lines from stdin")
        texts = [line.rstrip("\r\n") for line in sys.stdin]
        texts = [t for t in texts if t.strip()]
    elif "-" in texts:
        raise InputError("'-' (read stdin) cannot be mixed with texts given as arguments")
    if not texts:
        raise InputError("nothing to embed: stdin had no non-empty line")
    return texts


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from .providers import make_provider

    texts = _read_texts(args)
    if args.format == "npy" and sys.stdout.isatty():
        raise InputError("--format npy writes binary data; redirect it: jv3 embed ... > out.npy")
    provider = make_provider(args.provider or default_provider_spec(), None, args.model)
    try:
        emb = provider.embed(
            texts, task=args.task, dimensions=args.dimensions, late_chunking=args.late_chunking
        )
    finally:
        provider.close()
    if args.format == "npy":
        # np.save on a pipe fails (it asks the file for its position): serialize in memory.
        buf = io.BytesIO()
        np.save(buf, emb.vectors)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return 0
    out = {
        "model": emb.model,
        "task": emb.task.value if emb.task else None,
        "dimensions": emb.dimensions,
        "usage": {"total_tokens": emb.usage.total_tokens},
        "vectors": emb.tolist(),
    }
    print(json.dumps(out))
    return 0
