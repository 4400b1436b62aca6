"""`python -m sen_infer ingest|query|info|serve|keys` — errors are one line on stderr (`error: ...`) and exit 2.

Every error on bad input is a `SenInferError` raised by the SDK (or an argument rejected here); the
CLI catches exactly that. Anything else that escapes is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from sen_infer.errors import EngineDirError, GalleryError, IngestError, QueryError, SenInferError, require_utf8
from sen_infer.ingest.inputs import expand_inputs
from sen_infer.ingest.report import IngestReport


def _retriever(args):
    from sen_infer.query import Retriever

    require_utf8(args.engine, "--engine path", EngineDirError)
    if args.gallery is not None:
        require_utf8(args.gallery, "--gallery path", GalleryError)
    return Retriever(args.engine, args.gallery, args.backend, verify=not args.skip_verify)


def _print_json(obj) -> None:
    print(json.dumps(obj, allow_nan=False))


def cmd_ingest(args) -> int:
    from sen_infer.vision.detection import check_detector

    if args.camera is not None:
        require_utf8(args.camera, "--camera", IngestError)
    check_detector(args.detector)  # a bad detections file fails before anything is ingested
    from sen_infer.vision.tracking import make_tracker

    make_tracker(args.tracker, args.stride)
    r = _retriever(args)
    report = IngestReport()
    images, videos = expand_inputs(args.paths, report)
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
               "gallery_rows": len(g), "identities": links}
    if args.json:
        _print_json(summary)
    else:
        for name in report.unreadable[:20]:
            print(f"skipped {name}: {report.reasons.get(name, 'unreadable')}", file=sys.stderr)
        for name, why in report.incomplete.items():
            print(f"warning: {name} is incomplete ({why}): its tracks so far are stored; it is not marked "
                  f"done, so ingesting it again finishes it", file=sys.stderr)
        for note in report.notes:
            print(f"warning: {note}", file=sys.stderr)
        for name, why in report.failed.items():
            print(f"failed {name}: {why} (nothing of it was stored)", file=sys.stderr)
        print(f"added {report.added} crops ({report.tracks} tracks from {len(videos)} videos, {len(images)} images); "
              f"skipped {report.skipped_existing} already in the gallery; {len(report.unreadable)} unreadable"
              + (f"; {len(report.failed)} FAILED" if report.failed else "")
              + f"; gallery now holds {summary['gallery_rows']} crops")
        if links:
            print(f"linked {links['tracks']} tracks into {links['persons']} persons across cameras "
                  f"(threshold {links['threshold']:g})")
    return 1 if report.failed else 0


def _ingest_videos(g, videos, args, video_args) -> IngestReport:
    """All videos through the pipeline (`Gallery.add_videos`), one progress bar across cameras: frames
    decoded per second, and crops embedded (count and per second) beside it."""
    import time

    workers = args.workers
    t0, crops = time.perf_counter(), [0]
    with tqdm(desc=f"{len(videos)} videos, {min(workers, len(videos))} at once", unit="frame",
              disable=args.quiet) as bar:
        def progress(frames: int, embedded: int) -> None:
            crops[0] += embedded
            bar.set_postfix_str(f"{crops[0]} crops, {crops[0] / max(time.perf_counter() - t0, 1e-9):.1f} crops/s",
                                refresh=False)
            bar.update(frames)

        return g.add_videos(videos, workers=workers, progress=progress, **video_args)


def cmd_link(args) -> int:
    r = _retriever(args)
    result = r.open_gallery(create=False).link_identities(args.threshold, args.max_gap, args.overlapping_views)
    if args.json:
        _print_json(result)
    else:
        print(f"linked {result['tracks']} tracks into {result['persons']} persons ({result['linked_tracks']} tracks "
              f"share a person; threshold {result['threshold']:g}, max gap {result['max_gap']:g} s)")
    return 0


def cmd_timeline(args) -> int:
    r = _retriever(args)
    appearances = r.timeline(args.person)
    if not appearances:
        raise QueryError(f"no tracks for person {args.person} in this gallery")
    if args.json:
        _print_json({"person": args.person, "appearances": [
            {"track": a.track, "camera": a.camera, "source": a.source, "start": a.start, "end": a.end,
             "first_frame": a.first_frame, "last_frame": a.last_frame, "keys": list(a.keys)} for a in appearances]})
    else:
        for a in appearances:
            span = "-" if a.start is None else f"{a.start:.1f} .. {a.end:.1f}"
            print(f"track {a.track:>6}  cam={a.camera or '-'}  t={span}  frames {a.first_frame}-{a.last_frame}  "
                  f"{len(a.keys)} crops  {a.source}")
    return 0


def cmd_tune_index(args) -> int:
    queries = None
    if args.queries:
        try:
            queries = [line.strip() for line in Path(args.queries).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise QueryError(f"cannot read queries file {args.queries}: {getattr(e, 'strerror', None) or e}") from None
        if not queries:
            raise QueryError(f"queries file {args.queries} holds no query (one text per line)")
    if not 0 < args.target <= 1:
        raise QueryError(f"--target must be a recall in (0, 1], not {args.target}")
    r = _retriever(args)
    g = r.open_gallery(create=False)
    if not g.capabilities.tune_index:
        g.tune_index()  # raises the one-line reason
    result = r.tune_index(queries, target=args.target)
    if args.json:
        _print_json(result)
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


def cmd_query(args) -> int:
    from sen_infer.query import check_filters

    query = args.image if args.image else args.text
    if args.image:
        require_utf8(args.image, "--image path")
    else:
        require_utf8(args.text, "query text")
        if not args.text.strip():
            raise QueryError("query text is empty")
    check_filters(args.k, args.camera, args.since, args.until)
    if args.sheet:
        from sen_infer.cli.sheet import check_sheet_path

        check_sheet_path(args.sheet)  # before the query runs, not after
    r = _retriever(args)
    filters = dict(k=args.k, camera=args.camera, since=args.since, until=args.until, per_track=not args.all_crops,
                   superseded=args.include_superseded, per_person=args.per_person)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hits = r.query_image(args.image, **filters) if args.image else r.query(args.text, **filters)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.sheet:
        from sen_infer.cli.sheet import contact_sheet

        contact_sheet(hits, args.sheet, title=query)
    if args.json:
        _print_json({"query": query, "backend": r.backend, "hits": [h.to_dict() for h in hits]})
    else:
        for i, h in enumerate(hits, 1):
            t = "-" if h.timestamp is None else f"{h.timestamp:.1f}"
            print(f"{i:>3}  {h.score:.4f}  cam={h.camera or '-'}  t={t}  frame={h.frame}  track={h.track}  "
                  f"person={h.person if h.person is not None else '-'}  "
                  f"{h.crop_path}{'  (superseded)' if h.superseded else ''}")
        if args.sheet:
            print(f"contact sheet -> {args.sheet}")
    return 0


def cmd_info(args) -> int:
    r = _retriever(args)
    m = r.encoders.manifest
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gallery = r.open_gallery(create=False)
        stats = gallery.stats()
        if args.check:
            stats["check"] = gallery.check()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    info = {"engine": str(Path(args.engine).resolve()), "model": m.model_name, "fingerprint": m.fingerprint,
            "embed_dim": m.embed_dim, "image_size": list(m.image_size), "precisions": m.precisions,
            "backend": r.backend, "gallery": str(r.gallery_path.resolve()), **stats}
    if args.json:
        _print_json(info)
    else:
        for k, v in info.items():
            if k != "check":
                print(f"{k:>12}: {v}")
        if args.check:
            c = info["check"]
            print(f"{'check':>12}: {'ok' if c['ok'] else 'PROBLEMS'} ({c['rows']} rows, {c['index_size']} indexed)")
            for line in c["problems"]:
                print(f"{'':>12}  {line}")
    if args.check and not info["check"]["ok"]:
        return 1
    return 0


# ---- arguments -------------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    try:
        from sen_infer.serve.app import ServeConfig
        from sen_infer.serve.run import serve
    except ImportError as e:
        raise SenInferError(f"the search service needs the serve extra: pip install 'sen-person-search[serve]' "
                            f"({e})") from None
    for name in ("engine", "gallery", "keys", "audit"):
        if getattr(args, name) is not None:
            require_utf8(getattr(args, name), f"--{name} path", EngineDirError if name == "engine" else GalleryError)
    serve(ServeConfig(engine=Path(args.engine), gallery=Path(args.gallery) if args.gallery else None, host=args.host,
                      port=args.port, keys=Path(args.keys) if args.keys else None,
                      audit=Path(args.audit) if args.audit else None, backend=args.backend,
                      verify=not args.skip_verify), log_level="warning" if args.quiet else "info")
    return 0


def cmd_keys(args) -> int:
    from sen_infer.serve.auth import KeyFile

    keys = KeyFile(args.file)
    if args.action in ("add", "remove") and not args.name:
        raise SenInferError(f"keys {args.action}: name whose key it is (python -m sen_infer keys {args.action} NAME "
                            f"--file {args.file})")
    if args.action == "add":
        secret = keys.add(args.name, args.role)
        print(f"added {args.role} key {args.name!r} to {args.file}; it is shown only now:", file=sys.stderr)
        print(secret)
    elif args.action == "remove":
        keys.remove(args.name)
        print(f"removed key {args.name!r} from {args.file}", file=sys.stderr)
    else:
        import time

        for k in keys.load().values():
            print(f"{k.name}\t{k.role}\tcreated {time.strftime('%Y-%m-%d %H:%M', time.gmtime(k.created))} UTC")
    return 0


def _port(text: str) -> int:
    port = _int_at_least(text, 0)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return port


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, not {value}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line `error: ...`, exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m sen_infer", description="Text-based person search over a gallery.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p):
        p.add_argument("--engine", required=True, help="engine dir (python -m export.onnx)")
        p.add_argument("--gallery", help="gallery dir (default: ENGINE/gallery)")
        p.add_argument("--backend", default="auto",
                       help="auto, tensorrt-int8, tensorrt, onnx-cuda, onnx-cpu-int8, onnx-cpu")
        p.add_argument("--skip-verify", action="store_true",
                       help="do not check the engine files' sha256 against manifest.json (for people who know why)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("ingest", help="add images, folders and videos to the gallery (creates it)")
    common(p)
    p.add_argument("paths", nargs="+")
    p.add_argument("--camera", help="camera name (videos default to the file name)")
    p.add_argument("--timestamp", type=_finite_float, help="timestamp of the images (unix seconds)")
    p.add_argument("--start-time", type=_finite_float, help="unix time of a video's first frame")
    p.add_argument("--detector", default="mog2",
                   help="mog2 (static cameras), mog2-split (blobs split into people), hog, mot:DETECTIONS.txt, "
                        "or onnx:MODEL.onnx (YOLOv8/YOLO11, YOLOX, RT-DETR person detector)")
    p.add_argument("--tracker", default="motion", choices=("iou", "motion"),
                   help="motion (Kalman + ByteTrack two-stage association; the default) or iou (greedy IoU)")
    p.add_argument("--stride", type=_positive_int, default=2, help="detect on every n-th frame")
    p.add_argument("--chunk-seconds", type=_finite_float, default=60.0,
                   help="commit a video every this many seconds of footage (a crash loses at most one chunk)")
    p.add_argument("--workers", type=_non_negative_int,
                   help="videos decoded, detected and tracked at once while one encoder thread embeds the crops of "
                        "all of them in batches (default: one per 4 CPU cores; 0 below 4 cores, where overlap was "
                        "measured slower); 0: one video after another, without overlap")
    p.add_argument("--no-link", action="store_true",
                   help="do not relink identities across cameras after ingesting videos (run `link` later)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("link", help="link the gallery's tracks into persons across cameras (appearance + time)")
    common(p)
    p.add_argument("--threshold", type=_finite_float, help="cosine of two tracks' mean embeddings to link them "
                                                             "(default 0.80; docs/sdk.md shows its precision/recall)")
    p.add_argument("--max-gap", type=_finite_float, help="most seconds between two appearances of one person "
                                                          "(default 3600)")
    p.add_argument("--overlapping-views", action="store_true",
                   help="cameras see the same ground: one person may be in two cameras at once")
    p.set_defaults(fn=cmd_link)

    p = sub.add_parser("timeline", help="where and when one person (a hit's person id) was seen, in time order")
    common(p)
    p.add_argument("person", type=int)
    p.set_defaults(fn=cmd_timeline)

    p = sub.add_parser("query", help="search the gallery by text (or --image)")
    common(p)
    p.add_argument("text", nargs="?", default="")
    p.add_argument("--image", help="query by example image instead of text")
    p.add_argument("-k", type=_positive_int, default=10)
    p.add_argument("--camera", action="append", help="only this camera (repeat for any of several)")
    p.add_argument("--since", type=_finite_float)
    p.add_argument("--until", type=_finite_float)
    p.add_argument("--all-crops", action="store_true", help="do not collapse results to one per track")
    p.add_argument("--per-person", action="store_true",
                   help="one hit per person linked across cameras (see `link`), not one per track")
    p.add_argument("--include-superseded", action="store_true",
                   help="also return rows of files that were later replaced by new content (marked superseded)")
    p.add_argument("--sheet", help="write a contact sheet of the hits (.jpg, .png, .bmp or .webp)")
    p.set_defaults(fn=cmd_query)

    p = sub.add_parser("tune-index", help="set the gallery's search width by measured recall against exact search")
    common(p)
    p.add_argument("--target", type=_finite_float, default=0.99, help="recall@10 to reach (default 0.99)")
    p.add_argument("--queries", help="a text file of your users' queries, one per line (default: 300 of the "
                                     "gallery's own crops as queries)")
    p.set_defaults(fn=cmd_tune_index)

    p = sub.add_parser("serve", help="the search service: HTTP API under /api/v1 and a search page at / (needs "
                                      "the serve extra)")
    common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --keys)")
    p.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--keys", help="API key file (python -m sen_infer keys add); required off loopback")
    p.add_argument("--audit", help="audit log, one JSON line per search (default: GALLERY/audit.jsonl)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("keys", help="API keys of the search service: add, list, remove (stored hashed)")
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("name", nargs="?", help="who the key is for (add, remove)")
    p.add_argument("--role", default="viewer", choices=("viewer", "admin"),
                   help="viewer: search and see evidence; admin: also read the audit log")
    p.add_argument("--file", required=True, help="the key file (created by the first add)")
    p.set_defaults(fn=cmd_keys)

    p = sub.add_parser("info", help="engine and gallery: model, backend, counts, cameras, time span")
    common(p)
    p.add_argument("--check", action="store_true",
                   help="also run SQLite's integrity check and compare the index with the table (exit 1 on problems)")
    p.set_defaults(fn=cmd_info)
    return ap


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse and run a subcommand with the CLI's error contract: a SenInferError is one line, exit 2."""
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except SenInferError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
