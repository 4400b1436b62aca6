"""`python -m sen_infer ingest PATHS...`: add images, folders and videos to a gallery (made if missing).

Exit 0 when every input was stored (or was already), 1 when some file was unreadable or failed (the rest is
stored), 2 on bad input (a missing path, nothing ingestible, a bad option: then nothing is written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from sen_infer.cli.args import (add_engine_args, finite_float, nobody_seen_hint, non_negative_int, open_retriever,
                                positive_int, print_json)
from sen_infer.errors import IngestError, require_utf8
from sen_infer.ingest.inputs import expand_inputs, finite_time
from sen_infer.ingest.report import IngestReport, printable


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `ingest` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("ingest", help="add images, folders and videos to the gallery (creates it)")
    add_engine_args(p)
    p.add_argument("paths", nargs="+")
    p.add_argument("--camera", help="camera name (videos default to the file name)")
    p.add_argument("--timestamp", type=finite_float, help="timestamp of the images (unix seconds)")
    p.add_argument("--start-time", type=finite_float, help="unix time of a video's first frame")
    p.add_argument("--detector", default="default",
                   help="default: ssdlite where installed, else mog2-split (with a notice); $SEN_DETECTOR sets "
                        "another default. mog2 (static cameras), mog2-split (blobs split into people), ssdlite[:RxC] (the installed "
                        "neural person detector, RxC overlapping tiles for small people), hog, mot:DETECTIONS.txt, "
                        "or onnx:MODEL.onnx (YOLOv8/YOLO11, YOLOX, RT-DETR person detector)")
    p.add_argument("--tracker", default="motion", choices=("iou", "motion"),
                   help="motion (Kalman + ByteTrack two-stage association; the default) or iou (greedy IoU)")
    p.add_argument("--stride", type=positive_int, default=2, help="detect on every n-th frame")
    p.add_argument("--chunk-seconds", type=finite_float, default=60.0,
                   help="commit a video every this many seconds of footage (a crash loses at most one chunk)")
    p.add_argument("--workers", type=non_negative_int,
                   help="videos decoded, detected and tracked at once while one encoder thread embeds the crops of "
                        "all of them in batches (default: one per 4 CPU cores; 0 below 4 cores, where overlap was "
                        "measured slower); 0: one video after another, without overlap")
    p.add_argument("--no-link", action="store_true",
                   help="do not relink identities across cameras after ingesting videos (run `link` later)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    """Ingest `args.paths`, then relink identities if videos added tracks, and report what happened.

    Args: args, the parsed `ingest` arguments. Returns: 1 if some file was unreadable or failed (nothing of
    it stored), else 0.

    Raises:
        SenInferError: bad detector, tracker, camera name, engine or gallery; checked before anything is
            ingested.
    """
    from sen_infer.vision.detection import check_detector

    if args.camera is not None:
        require_utf8(args.camera, "--camera", IngestError)
    check_detector(args.detector)  # a bad detections file fails before anything is ingested
    from sen_infer.vision.tracking import make_tracker

    make_tracker(args.tracker, args.stride)
    finite_time(args.start_time, "--start-time")
    finite_time(args.timestamp, "--timestamp")
    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing:  # a mistyped path: nothing is ingested (and no gallery made) until the command is right
        raise IngestError(f"no such file or folder: {printable(missing[0])}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + "; nothing was ingested")
    report = IngestReport()
    images, videos = expand_inputs(args.paths, report)
    if not images and not videos:
        why = "; ".join(f"{printable(k)}: {v}" for k, v in list(report.reasons.items())[:3]) or \
            "no image or video files in the folders given"
        raise IngestError(f"nothing to ingest ({why}); nothing was ingested")
    r = open_retriever(args)
    g = r.gallery
    if images:
        with tqdm(total=len(images), desc="images", unit="img", disable=args.quiet) as bar:
            report.merge(g.add_images([str(p) for p in images], camera=args.camera, timestamp=args.timestamp,
                                      progress=bar.update))
    video_args = dict(camera=args.camera, start_time=args.start_time, detector=args.detector, stride=args.stride,
                      chunk_seconds=args.chunk_seconds, tracker=args.tracker)
    if args.workers is None:
        from sen_infer.ingest.pipeline import recommended_workers

        args.workers = recommended_workers()
    if videos and args.workers == 0:  # one video after another, decoding and embedding in turn
        for v in videos:
            with tqdm(desc=v.name, unit="frame", disable=args.quiet) as bar:
                report.merge(g.add_video(v, progress=bar.update, **video_args))
    elif videos:
        report.merge(_ingest_videos(g, videos, args, video_args))
    links = None
    if videos and not args.no_link and report.added and g.capabilities.identities:
        links = g.link_identities()  # new tracks: relink the gallery's identities across cameras
    summary = {"added": report.added, "tracks": report.tracks, "skipped_existing": report.skipped_existing,
               "unreadable": report.unreadable, "reasons": report.reasons, "failed": report.failed,
               "incomplete": report.incomplete, "notes": report.notes, "images": len(images),
               "videos": len(videos), "frames": report.frames, "seconds": round(report.seconds, 2),
               "gallery_rows": len(g), "identities": links, "detector": args.detector}
    if args.json:
        print_json(summary)
    else:
        _print_summary(report, summary)
    return 1 if report.failed or report.unreadable else 0


def _ingest_videos(g, videos, args, video_args) -> IngestReport:
    """All videos through the pipeline (`Gallery.add_videos`), one progress bar across cameras: frames
    decoded per second, and crops embedded (count and per second) beside it."""
    workers = args.workers
    t0, crops = time.perf_counter(), [0]
    with tqdm(desc=f"{len(videos)} videos, {min(workers, len(videos))} at once", unit="frame",
              disable=args.quiet) as bar:
        def progress(frames: int, embedded: int) -> None:
            """Called by the pipeline after each batch: frames advance the bar, crops its postfix."""
            crops[0] += embedded
            bar.set_postfix_str(f"{crops[0]} crops, {crops[0] / max(time.perf_counter() - t0, 1e-9):.1f} crops/s",
                                refresh=False)
            bar.update(frames)

        return g.add_videos(videos, workers=workers, progress=progress, **video_args)


def _print_summary(report: IngestReport, summary: dict) -> None:
    """The text report: what was skipped, incomplete or failed on stderr, the totals on stdout."""
    for name in report.unreadable[:20]:
        print(f"skipped {name}: {report.reasons.get(name, 'unreadable')}", file=sys.stderr)
    for name, why in report.incomplete.items():
        print(f"warning: {name} is incomplete ({why}): its tracks so far are stored; it is not marked "
              f"done, so ingesting it again finishes it", file=sys.stderr)
    for note in report.notes:
        print(f"warning: {note}", file=sys.stderr)
    for name, why in report.failed.items():
        print(f"failed {name}: {why} (nothing of it was stored)", file=sys.stderr)
    print(f"added {report.added} crops ({report.tracks} tracks from {summary['videos']} videos, "
          f"{summary['images']} images); skipped {report.skipped_existing} already in the gallery; "
          f"{len(report.unreadable)} unreadable"
          + (f"; {len(report.failed)} FAILED" if report.failed else "")
          + f"; gallery now holds {summary['gallery_rows']} crops")
    hint = nobody_seen_hint(report, summary["videos"], summary["detector"])
    if hint:
        print(hint, file=sys.stderr)
    links = summary["identities"]
    if links:
        print(f"linked {links['tracks']} tracks into {links['persons']} persons across cameras "
              f"(threshold {links['threshold']:g})")
