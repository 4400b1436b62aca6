"""`python -m sen_infer query TEXT` (or `--image`): the gallery's best matches, optionally as a contact sheet.

k and the camera/time filters are checked by `sen_infer.query.check_filters`, the SDK's one validator;
this module checks only what is the command line's own (the query text, the --sheet path).
"""

from __future__ import annotations

import argparse

from sen_infer.cli.args import (add_engine_args, finite_float, open_retriever, positive_int, print_json,
                                unit_float, warnings_to_stderr)
from sen_infer.errors import QueryError, require_utf8


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `query` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("query", help="search the gallery by text (or --image)")
    add_engine_args(p)
    p.add_argument("text", nargs="?", default="")
    p.add_argument("--image", help="query by example image instead of text")
    p.add_argument("-k", type=positive_int, default=10)
    p.add_argument("--camera", action="append", help="only this camera (repeat for any of several)")
    p.add_argument("--since", type=finite_float)
    p.add_argument("--until", type=finite_float)
    p.add_argument("--min-quality", type=unit_float, metavar="Q",
                   help="only crops scored at least Q (0-1: how surely the crop shows one whole person; "
                        "pictures and rows stored before scores existed have none and are kept)")
    p.add_argument("--all-crops", action="store_true", help="do not collapse results to one per track")
    p.add_argument("--per-person", action="store_true",
                   help="one hit per person linked across cameras (see `link`), not one per track")
    p.add_argument("--include-superseded", action="store_true",
                   help="also return rows of files that were later replaced by new content (marked superseded)")
    p.add_argument("--sheet", help="write a contact sheet of the hits (.jpg, .png, .bmp or .webp)")
    return p


def run(args) -> int:
    """Search by text or example image and print the hits (and write the contact sheet if asked).

    Everything that can be checked is checked before the engine is loaded, so bad input fails fast.

    Args: args, the parsed `query` arguments. Returns: 0.

    Raises:
        QueryError: empty or non-UTF-8 query, a bad filter or --sheet path.
        SenInferError: a bad engine, gallery or query image.
    """
    from sen_infer.query import check_filters

    query = args.image if args.image else args.text
    if args.image and args.text:
        raise QueryError("give a query text or --image, not both (an example image is searched on its own)")
    if args.image:
        require_utf8(args.image, "--image path")
    else:
        require_utf8(args.text, "query text")
        if not args.text.strip():
            raise QueryError("query text is empty")
    check_filters(args.k, args.camera, args.since, args.until, args.min_quality)
    if args.sheet:
        from sen_infer.cli.sheet import check_sheet_path

        check_sheet_path(args.sheet)  # before the query runs, not after
    r = open_retriever(args)
    filters = dict(k=args.k, camera=args.camera, since=args.since, until=args.until, per_track=not args.all_crops,
                   superseded=args.include_superseded, per_person=args.per_person, min_quality=args.min_quality)
    with warnings_to_stderr():
        hits = r.query_image(args.image, **filters) if args.image else r.query(args.text, **filters)
    if args.sheet:
        from sen_infer.cli.sheet import contact_sheet

        contact_sheet(hits, args.sheet, title=query)
    if args.json:
        print_json({"query": query, "backend": r.backend, "hits": [h.to_dict() for h in hits]})
    else:
        for i, h in enumerate(hits, 1):
            t = "-" if h.timestamp is None else f"{h.timestamp:.1f}"
            print(f"{i:>3}  {h.score:.4f}  cam={h.camera or '-'}  t={t}  frame={h.frame}  track={h.track}  "
                  f"person={h.person if h.person is not None else '-'}  "
                  f"quality={'-' if h.quality is None else f'{h.quality:.2f}'}  {h.crop_path}{'  (superseded)' if h.superseded else ''}")
        if args.sheet:
            print(f"contact sheet -> {args.sheet}")
    return 0
