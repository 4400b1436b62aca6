"""`python -m sen_infer link`: join the gallery's tracks into persons across cameras (appearance + time)."""

from __future__ import annotations

import argparse

from sen_infer.cli.args import add_engine_args, finite_float, open_retriever, print_json


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `link` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("link", help="link the gallery's tracks into persons across cameras (appearance + time)")
    add_engine_args(p)
    p.add_argument("--threshold", type=finite_float, help="cosine of two tracks' mean embeddings to link them "
                                                            "(default 0.80; docs/sdk.md shows its precision/recall)")
    p.add_argument("--max-gap", type=finite_float, help="most seconds between two appearances of one person "
                                                         "(default 3600)")
    p.add_argument("--overlapping-views", action="store_true",
                   help="cameras see the same ground: one person may be in two cameras at once")
    return p


def run(args) -> int:
    """Relink the whole gallery's identities and say how many persons its tracks make.

    Args: args, the parsed `link` arguments. Returns: 0.

    Raises:
        SenInferError: a bad engine or gallery (a missing one is not made), or a sharded root, whose
            identities are linked per shard.
    """
    r = open_retriever(args)
    result = r.open_gallery(create=False).link_identities(args.threshold, args.max_gap, args.overlapping_views)
    if args.json:
        print_json(result)
    else:
        print(f"linked {result['tracks']} tracks into {result['persons']} persons ({result['linked_tracks']} tracks "
              f"share a person; threshold {result['threshold']:g}, max gap {result['max_gap']:g} s)")
    return 0
