"""``jv3 demo``: index the bundled multilingual corpus and run cross-lingual queries."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ..core import default_provider_spec


def load_demo_corpus() -> dict[str, Any]:
    """The bundled multilingual sample corpus (passages and cross-lingual queries)."""
    data = (
        resources.files("jv3_integrations")
        .joinpath("data", "demo_corpus.json")
        .read_text(encoding="utf-8")
    )
    corpus: dict[str, Any] = json.loads(data)
    return corpus


def _unreadable_languages(model_dir: str, corpus: dict[str, Any]) -> set[str]:
    """Languages of the demo corpus that the checkpoint's tokenizer cannot read.

    A text is unreadable when more than half of its characters fall in ``<unk>`` tokens (the
    tiny test tokenizer has no pieces for Chinese or Japanese: a whole sentence becomes one
    ``<unk>``, so all such passages get the same vector). A language is left out when any of
    its passages is unreadable. The official model's tokenizer reads every language here.
    """
    from tokenizers import Tokenizer

    path = Path(model_dir).expanduser() / "tokenizer.json"
    if not path.is_file():
        return set()
    tokenizer = Tokenizer.from_file(str(path))
    unk = tokenizer.token_to_id("<unk>")
    if unk is None:
        return set()
    out: set[str] = set()
    for item in corpus["passages"] + corpus["queries"]:
        text = item["text"]
        enc = tokenizer.encode(text, add_special_tokens=False)
        unknown = sum(e - b for i, (b, e) in zip(enc.ids, enc.offsets, strict=True) if i == unk)
        if unknown * 2 > len(text.strip()):
            out.add(item["lang"])
    return out


def _demo_subset(corpus: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """The corpus without the languages in ``drop`` (and without queries expecting them)."""
    passages = [p for p in corpus["passages"] if p["lang"] not in drop]
    kept = {p["id"] for p in passages}
    queries = [q for q in corpus["queries"] if q["lang"] not in drop and q["expect"] in kept]
    return {**corpus, "passages": passages, "queries": queries}


def _demo_readable(
    corpus: dict[str, Any], spec: str, *, quiet: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The demo corpus less the languages a local test checkpoint cannot read, and what left."""
    model_dir = spec[len("local:") :].strip() if spec.startswith("local:") else ""
    if not model_dir:
        return corpus, None
    drop = _unreadable_languages(model_dir, corpus)
    if not drop:
        return corpus, None
    readable = _demo_subset(corpus, drop)
    left_out: dict[str, Any] = {
        "languages": sorted(drop),
        "passages": len(corpus["passages"]) - len(readable["passages"]),
        "queries": len(corpus["queries"]) - len(readable["queries"]),
    }
    if not quiet:
        print(
            f"Left out {left_out['passages']} passages and {left_out['queries']} "
            f"queries in {', '.join(left_out['languages'])}: this checkpoint's "
            "tokenizer has no pieces for their script (the official model reads them)."
        )
    return readable, left_out


def cmd_demo(args: argparse.Namespace) -> int:
    from .indexer import IndexOptions, run_index
    from .output import format_hits, use_color
    from .providers import make_provider, random_weights_notice
    from .search import SearchOptions, run_search
    from .uri import default_store, parse_store_uri
    from .warn import stderr_warn

    corpus = load_demo_corpus()
    spec = args.provider or default_provider_spec()
    note = random_weights_notice(spec)
    if note and not args.json:
        print(f"Note: {note}.")
    left_out: dict[str, Any] | None = None
    if note:  # a test checkpoint: ask only what its tokenizer can read
        corpus, left_out = _demo_readable(corpus, spec, quiet=args.json)
    provider = make_provider(spec, None)  # loaded once, used to index and to search
    kind = args.store_kind or parse_store_uri(default_store()).kind
    results = []
    with tempfile.TemporaryDirectory(prefix="jv3-demo-") as tmp:
        docs = Path(tmp) / "corpus"
        docs.mkdir()
        for passage in corpus["passages"]:
            text = f"{passage['title']}\n\n{passage['text']}\n"
            (docs / f"{passage['id']}.txt").write_text(text, encoding="utf-8")
        store = f"milvus:{Path(tmp) / 'demo.db'}" if kind == "milvus" else f"qdrant:{tmp}/index"
        langs = sorted({p["lang"] for p in corpus["passages"]})
        if not args.json:
            print(
                f"Indexing {len(corpus['passages'])} passages in {len(langs)} languages "
                f"({', '.join(langs)}) into a temporary {kind} store ..."
            )
        report = run_index(
            IndexOptions(
                paths=[str(docs)],
                store=store,
                provider=spec,
                progress=args.progress,
                provider_instance=provider,
            ),
            warn=stderr_warn,
        )
        if not args.json:
            tokens = f"{'~' if report.tokens_estimated else ''}{report.tokens:,} tokens"
            print(
                f"Indexed {len(corpus['passages'])} passages ({report.chunks_total} chunks, "
                f"{tokens}) in {report.seconds:.1f} s."
            )
        color = use_color(sys.stdout)
        queries = corpus["queries"]
        all_hits = run_search(
            SearchOptions(
                queries=[q["text"] for q in queries],
                store=store,
                provider=spec,
                k=args.k,
                provider_instance=provider,
            ),
            warn=stderr_warn,
        )
        provider.close()
        for query, hits in zip(queries, all_hits, strict=True):
            hits = [type(h)(h.score, Path(h.file).stem, h.text, h.start, h.end, h.id) for h in hits]
            found = [h.file for h in hits]
            results.append(
                {
                    "query": query["text"],
                    "lang": query["lang"],
                    "expected": query["expect"],
                    "found": query["expect"] in found,
                    "hits": [h.to_json(i) for i, h in enumerate(hits, 1)],
                }
            )
            if not args.json:
                mark = "found" if query["expect"] in found else "not in the top hits"
                print(f"\n[{query['lang']}] {query['text']}   (expected {query['expect']}: {mark})")
                print(format_hits(hits, query["text"], color=color, width=160))
    if args.json:
        out = {"index": report.to_json(), "queries": results, "note": note}
        if left_out:
            out["left_out"] = left_out
        print(json.dumps(out, ensure_ascii=False))
    else:
        hit_count = sum(r["found"] for r in results)
        print(
            f"\n{hit_count}/{len(results)} queries found their expected passage in the top "
            f"{args.k}. Index your own files with: jv3 index PATH"
        )
        if note:
            print("(Random test weights: these hits and scores say nothing about the model.)")
    return 0
