"""`python -m sen_infer compact`: merge each closed day's camera shards of a sharded root into one day graph,
so that a query over a month searches ~30 graphs instead of tens of thousands of shards.

Exit 0 when every day asked for has a current graph, 1 when a day was written while it was built (its
shards stay in use; run it again once the writers are done).
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from sen_infer.cli.args import add_engine_args, finite_float, open_retriever, print_json
from sen_infer.errors import GalleryError
from sen_infer.gallery.catalogue import check_day
from sen_infer.gallery.sharded_writes import CLOSED_AFTER


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `compact` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("compact", help="merge a sharded root's closed days into day graphs (searched instead of "
                                       "their camera shards)")
    add_engine_args(p)
    p.add_argument("--day", action="append", metavar="YYYY-MM-DD",
                   help="compact this day now, even if written recently (repeatable; default: every closed day)")
    p.add_argument("--closed-after", type=finite_float, default=CLOSED_AFTER, metavar="S",
                   help=f"seconds without a write after which a day is closed (default {CLOSED_AFTER:g}; "
                        f"today in UTC is never closed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (none either when stderr is not a "
                   "terminal: a cron job's log stays one line a day)")
    return p


def run(args) -> int:
    """Compact the days and report each.

    Args: args, the parsed `compact` arguments. Returns: 0 when every day considered is compact or still
    open, 1 when a day was written meanwhile.

    Raises:
        GalleryError: the gallery is not a sharded root (one gallery has no shards to merge).
        QueryError: a --day that is not YYYY-MM-DD, or a negative --closed-after.
    """
    from sen_infer.errors import QueryError

    for day in args.day or []:
        check_day(day)
    if args.closed_after < 0:
        raise QueryError(f"--closed-after must be 0 or more seconds, not {args.closed_after:g}")
    g = open_retriever(args).open_gallery(create=False)
    if not g.capabilities.sharded:
        raise GalleryError(f"{g.dir} is one gallery, not a sharded root: there are no day shards to merge")
    # disable=None: tqdm draws only on a terminal, so a cron's `compact` logs its days, not bar redraws
    with tqdm(desc="rows read", unit="row", disable=True if args.quiet or args.json else None) as bar:
        def progress(day: str, rows: int) -> None:
            bar.set_description(day)
            bar.n = rows
            bar.refresh()

        done = g.compact(args.day, args.closed_after, progress)
    if args.json:
        print_json(done)
    else:
        for d in done:
            rows = "" if d["rows"] is None else f", {d['rows']:,} rows in {d['seconds']:.1f} s"
            why = (f" (today, or written in the last {args.closed_after:g} s: --day {d['day']} builds it now)"
                   if d["status"] == "open" else "")
            print(f"{d['day']}: {d['status']}{rows}{why}")
        if not done:
            print("no dated shards: nothing to compact")
    return 1 if any(d["status"] == "written meanwhile" for d in done) else 0
