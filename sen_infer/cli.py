"""`python -m sen_infer ingest|query|info` — errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from sen_infer.errors import SenInferError
from sen_infer.gallery import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, IngestReport


def _expand(paths: list[str]) -> tuple[list[Path], list[Path], list[str]]:
    """(images, videos, unsupported) from files and folders (searched recursively)."""
    images, videos, other = [], [], []
    for p in map(Path, paths):
        if not p.exists():
            continue  # reported as missing by the caller
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            ext = f.suffix.lower()
            if ext in IMAGE_EXTENSIONS:
                images.append(f)
            elif ext in VIDEO_EXTENSIONS:
                videos.append(f)
            elif p.is_dir():
                continue  # unrelated files inside a folder are not an error
            else:
                other.append(str(f))
    return images, videos, other


def _retriever(args):
    from sen_infer.retriever import Retriever

    return Retriever(args.engine, args.gallery, args.backend)


def cmd_ingest(args) -> int:
    r = _retriever(args)
    images, videos, other = _expand(args.paths)
    missing = [p for p in args.paths if not Path(p).exists()]
    report = IngestReport(unreadable=list(missing) + other)
    g = r.gallery
    if images:
        with tqdm(total=len(images), desc="images", unit="img", disable=args.quiet) as bar:
            report.merge(g.add_images([str(p) for p in images], camera=args.camera, timestamp=args.timestamp,
                                      progress=bar.update))
    for v in videos:
        with tqdm(desc=v.name, unit="frame", disable=args.quiet) as bar:
            report.merge(g.add_video(v, camera=args.camera, start_time=args.start_time, detector=args.detector,
                                     stride=args.stride, progress=bar.update))
    summary = {"added": report.added, "tracks": report.tracks, "skipped_existing": report.skipped_existing,
               "unreadable": report.unreadable, "images": len(images), "videos": len(videos),
               "frames": report.frames, "seconds": round(report.seconds, 2), "gallery_rows": len(g)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"added {report.added} crops ({report.tracks} tracks from {len(videos)} videos, {len(images)} images); "
              f"skipped {report.skipped_existing} already in the gallery; {len(report.unreadable)} unreadable"
              + (f": {', '.join(report.unreadable[:5])}" + (" ..." if len(report.unreadable) > 5 else "")
                 if report.unreadable else "") + f"; gallery now holds {summary['gallery_rows']} crops")
    return 0


def cmd_query(args) -> int:
    r = _retriever(args)
    filters = dict(k=args.k, camera=args.camera, since=args.since, until=args.until, per_track=not args.all_crops)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hits = r.query_image(args.image, **filters) if args.image else r.query(args.text, **filters)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.sheet:
        from sen_infer.sheet import contact_sheet

        contact_sheet(hits, args.sheet, title=args.image or args.text)
    if args.json:
        print(json.dumps({"query": args.image or args.text, "backend": r.backend,
                          "hits": [h.to_dict() for h in hits]}))
    else:
        for i, h in enumerate(hits, 1):
            t = "-" if h.timestamp is None else f"{h.timestamp:.1f}"
            print(f"{i:>3}  {h.score:.4f}  cam={h.camera or '-'}  t={t}  frame={h.frame}  track={h.track}  "
                  f"{h.crop_path}")
        if args.sheet:
            print(f"contact sheet -> {args.sheet}")
    return 0


def cmd_info(args) -> int:
    r = _retriever(args)
    m = r.encoders.manifest
    info = {"engine": str(Path(args.engine).resolve()), "model": m.model_name, "fingerprint": m.fingerprint,
            "embed_dim": m.embed_dim, "image_size": list(m.image_size), "precisions": m.precisions,
            "backend": r.backend, "gallery": str(r.gallery_path.resolve()), **r.gallery.stats()}
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>12}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sen_infer", description="Text-based person search over a gallery.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--engine", required=True, help="engine dir (python -m export.onnx)")
        p.add_argument("--gallery", help="gallery dir (default: ENGINE/gallery)")
        p.add_argument("--backend", default="auto", help="auto, tensorrt, onnx-cuda, onnx-cpu-int8, onnx-cpu")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("ingest", help="add images, folders and videos to the gallery")
    common(p)
    p.add_argument("paths", nargs="+")
    p.add_argument("--camera", help="camera name (videos default to the file name)")
    p.add_argument("--timestamp", type=float, help="timestamp of the images (unix seconds)")
    p.add_argument("--start-time", type=float, help="unix time of a video's first frame")
    p.add_argument("--detector", default="mog2", help="mog2 (static cameras), hog, or mot:DETECTIONS.txt")
    p.add_argument("--stride", type=int, default=2, help="detect on every n-th frame")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("query", help="search the gallery by text (or --image)")
    common(p)
    p.add_argument("text", nargs="?", default="")
    p.add_argument("--image", help="query by example image instead of text")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--camera")
    p.add_argument("--since", type=float)
    p.add_argument("--until", type=float)
    p.add_argument("--all-crops", action="store_true", help="do not collapse results to one per track")
    p.add_argument("--sheet", help="write a contact sheet of the hits (e.g. hits.jpg)")
    p.set_defaults(fn=cmd_query)

    p = sub.add_parser("info", help="engine and gallery: model, backend, counts, cameras, time span")
    common(p)
    p.set_defaults(fn=cmd_info)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SenInferError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
