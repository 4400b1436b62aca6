"""`python -m sen_infer.cluster ingest|retain` — errors are one line on stderr (`error: ...`), exit 2."""

from __future__ import annotations

import argparse
import calendar
import sys
import time

from sen_infer.cli.args import Parser, cpu_share, finite_float, nobody_seen_hint, positive_int, print_json, run
from sen_infer.errors import SenInferError


def cmd_ingest(args) -> int:
    """Ingest the videos on Ray into the sharded root and report what was added.

    Args:
        args: the parsed `ingest` arguments.

    Returns:
        1 if some video was unreadable or failed (a re-run resumes a failed one), else 0.

    Raises:
        SenInferError: a bad engine dir (before a cluster is started), a bad address or source, or
            --start-time with --start-time-from name|mtime.
    """
    from tqdm import tqdm

    from sen_infer.cluster.ingest import IngestConfig, check_address, connect, probe_inputs, start_ingest
    from sen_infer.engine.manifest import read_manifest
    from sen_infer.ingest.video import VideoOptions

    read_manifest(args.engine)  # a wrong engine dir is one line here, before a cluster is started

    options = VideoOptions(None, args.start_time, args.detector, args.stride, chunk_seconds=args.chunk_seconds,
                           tracker=args.tracker)
    config = IngestConfig(args.engine, args.gallery, options, embedders=args.embedders,
                          embedder_cpus=args.embedder_cpus, task_cpus=args.task_cpus, backend=args.backend,
                          writers=args.writers)
    if args.start_time is not None and args.start_time_from != "option":
        raise SenInferError("give --start-time or --start-time-from name|mtime, not both")
    how = "option" if args.start_time_from == "option" else args.start_time_from
    # the address and the inputs are checked before a cluster is asked for anything: each is one line, at once
    check_address(args.address)
    probed = probe_inputs(config, args.paths, camera=args.camera, start_from=how, camera_from=args.camera_from)
    connect(args.address)
    job = start_ingest(config, probed)
    if how == "option" and args.start_time is not None and len(job.refs) > 1:
        print(f"note: every one of the {len(job.refs)} videos starts at --start-time {args.start_time:.0f}; for an "
              f"archive of recordings use --start-time-from name (or mtime)", file=sys.stderr)
    with tqdm(total=job.total_frames or None, unit="frame", desc=f"{len(job.refs)} videos",
              disable=args.quiet) as bar:
        report = job.wait(bar)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    out = {"added": report.added, "skipped_existing": report.skipped_existing, "tracks": report.tracks,
           "videos": len(job.refs), "seconds": round(report.seconds, 1), "unreadable": report.reasons,
           "failed": report.failed, "incomplete": report.incomplete}
    if args.json:
        print_json(out)
    else:
        print(f"{report.added} rows added from {len(job.refs)} videos in {report.seconds:.1f} s "
              f"({report.skipped_existing} already there)")
        for name, why in {**report.reasons, **report.failed}.items():
            print(f"  not ingested: {name}: {why}")
        hint = nobody_seen_hint(report, len(job.refs), args.detector)
        if hint:
            print(hint, file=sys.stderr)
    return 1 if report.failed or report.unreadable else 0


def cmd_retain(args) -> int:
    """Delete the shards of days before the last --keep-days (today included); undated ones are listed.

    Args:
        args: the parsed `retain` arguments.

    Returns:
        0.

    Raises:
        SenInferError: --gallery is not a sharded root, or --today is not YYYY-MM-DD.
    """
    from sen_infer.gallery.sharded import Catalogue, ShardedGallery

    Catalogue(args.gallery)  # a clear error when ROOT is not a sharded gallery
    today = args.today or time.strftime("%Y-%m-%d", time.gmtime())
    try:
        day = calendar.timegm(time.strptime(today, "%Y-%m-%d"))
    except ValueError:
        raise SenInferError(f"--today {today!r}: use YYYY-MM-DD") from None
    cutoff = time.strftime("%Y-%m-%d", time.gmtime(day - 86400 * (args.keep_days - 1)))
    g = ShardedGallery(args.gallery, encoders=None)
    gone = g.drop_days_before(cutoff)
    undated = [s["path"] for s in g.catalogue.shards() if s["day"] == "undated"]
    print(f"kept days from {cutoff}; removed {len(gone)} shards" + "".join(f"\n  {p}" for p in gone))
    if undated:
        print(f"note: {len(undated)} undated shards (rows ingested without a start time) are not dated, so "
              f"retention cannot age them; delete them yourself if they are too old:"
              + "".join(f"\n  {p}" for p in undated))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `python -m sen_infer.cluster` parser, with the base CLI's argument types and error contract.

    Returns:
        A parser for `sen_infer.cli.args.run`.
    """
    ap = Parser(prog="python -m sen_infer.cluster", description="Ingest on a Ray cluster into a sharded gallery.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("ingest", help="ingest videos (files or folders) on Ray")
    p.add_argument("paths", nargs="+")
    p.add_argument("--address", default="local", help="auto (a running cluster), local[:N] (this machine, N CPUs), "
                                                      "or a Ray address (ray://head:10001)")
    p.add_argument("--engine", required=True, help="engine dir, on a path every node can read")
    p.add_argument("--gallery", required=True, help="sharded root, on a path every node can write (made if missing)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--camera", help="camera name (default: each video's file name)")
    p.add_argument("--start-time", type=finite_float,
                   help="unix time of the first frame, the same for every video (one recording, or a test)")
    p.add_argument("--start-time-from", choices=("option", "name", "mtime"), default="option",
                   help="each video's own start: name = the first YYYYMMDD-HHMMSS in its file name (UTC); "
                        "mtime = its modification time less its duration; option = --start-time (default)")
    p.add_argument("--camera-from", choices=("name", "parent"), default="name",
                   help="camera of each video without --camera: its file name (default) or its folder's name")
    p.add_argument("--detector", default="default",
                   help="as `python -m sen_infer ingest --detector` (default: ssdlite where installed)")
    p.add_argument("--tracker", default="motion", choices=("iou", "motion"))
    p.add_argument("--stride", type=positive_int, default=2)
    p.add_argument("--chunk-seconds", type=finite_float, default=60.0)
    p.add_argument("--embedders", type=positive_int, default=1, help="encoder actors (default 1)")
    p.add_argument("--writers", type=positive_int, default=8,
                   help="writer actors at most, each the one writer of the shards given to it (default 8; "
                        "each holds ~150 MB)")
    p.add_argument("--embedder-cpus", type=cpu_share, default=1.0, help="CPUs each encoder actor reserves")
    p.add_argument("--task-cpus", type=cpu_share, default=1.0, help="CPUs each video task reserves")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_ingest)
    p = sub.add_parser("retain", help="delete whole days older than the retention period")
    p.add_argument("--gallery", required=True)
    p.add_argument("--keep-days", type=positive_int, required=True, help="days to keep, today included")
    p.add_argument("--today", help="YYYY-MM-DD (default: today, UTC)")
    p.set_defaults(fn=cmd_retain)
    return ap


def main(argv=None) -> int:
    """Run the cluster command line: errors are one line `error: ...` and exit 2, as in `python -m sen_infer`.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit code.
    """
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
