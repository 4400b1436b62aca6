"""`python -m sen_infer timeline PERSON`: where and when one person was seen, in time order."""

from __future__ import annotations

import argparse

from sen_infer.cli.args import add_engine_args, open_retriever, print_json
from sen_infer.errors import QueryError


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `timeline` and its argument.

    Args:
        sub: the top-level parser's subparsers.

    Returns:
        The `timeline` parser.
    """
    p = sub.add_parser("timeline", help="where and when one person (a hit's person id) was seen, in time order")
    add_engine_args(p)
    p.add_argument("person", type=int)
    return p


def run(args) -> int:
    """Print the appearances (tracks) of `args.person`, a person id from a hit after `link`.

    Args: args, the parsed `timeline` arguments. Returns: 0.

    Raises:
        QueryError: the gallery holds no track of that person.
        SenInferError: a bad engine or gallery.
    """
    r = open_retriever(args)
    appearances = r.timeline(args.person)
    if not appearances:
        raise QueryError(f"no tracks for person {args.person} in this gallery")
    if args.json:
        print_json({"person": args.person, "appearances": [
            {"track": a.track, "camera": a.camera, "source": a.source, "start": a.start, "end": a.end,
             "first_frame": a.first_frame, "last_frame": a.last_frame, "keys": list(a.keys)} for a in appearances]})
    else:
        for a in appearances:
            span = "-" if a.start is None else f"{a.start:.1f} .. {a.end:.1f}"
            print(f"track {a.track:>6}  cam={a.camera or '-'}  t={span}  frames {a.first_frame}-{a.last_frame}  "
                  f"{len(a.keys)} crops  {a.source}")
    return 0
