"""`python -m sen_infer tune-index`: set the gallery's search width by recall measured against exact search.

Exit 0 when the target recall was reached, 1 when it was not (the widest width tried is stored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sen_infer.cli.args import add_engine_args, finite_float, open_retriever, print_json
from sen_infer.errors import QueryError


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `tune-index` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("tune-index", help="set the gallery's search width by measured recall against exact search")
    add_engine_args(p)
    p.add_argument("--target", type=finite_float, default=0.99, help="recall@10 to reach (default 0.99)")
    p.add_argument("--queries", help="a text file of your users' queries, one per line (default: 300 of the "
                                     "gallery's own crops as queries)")
    return p


def run(args) -> int:
    """Measure recall at growing search widths, store the first that reaches --target, and report each.

    Args: args, the parsed `tune-index` arguments. Returns: 0 if the target was reached, else 1.

    Raises:
        QueryError: an unreadable or empty --queries file, or a --target outside (0, 1].
        SenInferError: a bad engine or gallery, or one that cannot be tuned (a sharded root).
    """
    queries = _read_queries(args.queries) if args.queries else None
    if not 0 < args.target <= 1:
        raise QueryError(f"--target must be a recall in (0, 1], not {args.target}")
    r = open_retriever(args)
    g = r.open_gallery(create=False)
    if not g.capabilities.tune_index:
        g.tune_index()  # raises the one-line reason
    result = r.tune_index(queries, target=args.target)
    if args.json:
        print_json(result)
    else:
        key = f"recall@{result['k']}"
        for m in result["measured"]:
            print(f"expansion_search {m['expansion_search']:>4}: {key} {m[key]:.4f} (95 % lower bound "
                  f"{m['lower_95']:.4f})")
        verdict = "reached" if result["reached"] else "NOT reached (the widest tried is kept)"
        print(f"target {result['target']:g} {verdict}: expansion_search {result['chosen']} stored in the gallery "
              f"({result['queries']} {'of your' if result['query_source'] == 'given' else 'of its own'} queries, "
              f"{result['rows']} rows)")
        exact_max = r.open_gallery().store.exact_max
        if result["rows"] <= exact_max:
            print(f"note: up to {exact_max:,} rows the gallery is searched exactly; the width applies beyond that")
    return 0 if result["reached"] else 1


def _read_queries(path: str) -> list[str]:
    """The non-blank lines of the queries file, stripped; QueryError if it cannot be read or has none."""
    try:
        queries = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise QueryError(f"cannot read queries file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not queries:
        raise QueryError(f"queries file {path} holds no query (one text per line)")
    return queries
