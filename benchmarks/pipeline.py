"""Video ingest before and after the pipeline, side by side in one run, on several synthetic cameras.

    python -m benchmarks.pipeline --engine ENGINE [--cameras 4 --seconds 20] [--workers 1 2 4]
                                  [--backend auto] [--repeats 1] [--name pipeline_small]

BEFORE: `Gallery.add_video` for one camera after another (decode, detect, track and embed in turn, in
one thread). AFTER: `Gallery.add_videos(workers=N)` (N producer threads decode + detect + track, one
encoder thread embeds crops batched across tracks and cameras; `sen_infer.ingest.pipeline`). Every run ingests
the same videos into a fresh gallery with the same loaded encoders (warmed up first), and the runs are
taken round-robin so drift on a shared machine hits them alike; with --repeats > 1 the median is kept.

Per run: frames/s and crops embedded/s over all cameras, the real-time factor (video seconds per
wall second) per camera and summed over cameras (how many such cameras the box keeps up with), and the
encoder's busy share of wall time (time inside image-encoder calls / wall time: near 100% means the
encoder is the only bottleneck; low means decoding/detection/tracking is). "encoder alone" rows give the
encoder's own ceiling (crops/s at the pipeline's batch size and at 4, the sequential path's per-track
batch) on the same machine. Rows stored must be equal across runs: the table shows them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import write


def make_videos(folder: Path, cameras: int, seconds: float, fps: int, seed: int = 1) -> Path:
    from sen_train.data.synth_video import VideoConfig, generate

    generate(VideoConfig(cameras=cameras, seconds=seconds, fps=fps, seed=seed), folder, progress=False)
    return folder


def encoder_alone(encoders, batch: int, seconds: float = 3.0) -> float:
    """Crops per second of the image encoder alone on batches of `batch` (random inputs)."""
    m = encoders.manifest
    x = np.random.default_rng(0).standard_normal((batch, 3, *m.image_size)).astype(np.float32)
    encoders.encode_inputs(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        encoders.encode_inputs(x)
        n += batch
    return n / (time.perf_counter() - t0)


def one_run(encoders, videos: list[Path], workers: int, root: Path, batch: int) -> dict:
    from sen_infer import Gallery

    g = Gallery.open(root, encoders=encoders)
    t0 = time.perf_counter()
    if workers == 0:
        reps = [g.add_video(v) for v in videos]
        wall = time.perf_counter() - t0
        frames, crops = sum(r.frames for r in reps), sum(r.crops_embedded for r in reps)
        enc, batches, added = sum(r.encoder_seconds for r in reps), sum(r.encoder_batches for r in reps), \
            sum(r.added for r in reps)
        problems = [x for r in reps for x in (*r.unreadable, *r.failed)]
    else:
        rep = g.add_videos(videos, workers=workers, batch_size=batch)
        wall = time.perf_counter() - t0
        frames, crops, enc, batches, added = rep.frames, rep.crops_embedded, rep.encoder_seconds, \
            rep.encoder_batches, rep.added
        problems = [*rep.unreadable, *rep.failed]
    g.close()
    if problems:
        raise RuntimeError(f"ingest problems: {problems}")
    return {"wall_s": wall, "frames": frames, "crops": crops, "encoder_s": enc, "batches": batches, "rows": added}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pipeline")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--video", help="dir of synthetic camera videos (identities.json + camN.mp4; generated if omitted)")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each generated camera video")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="pipeline producer counts")
    ap.add_argument("--batch", type=int, default=32, help="the pipeline encoder's batch size")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--name", default="pipeline_small", help="results file name under benchmarks/results")
    ap.add_argument("--label", default="", help="model label for the table (default: the manifest's model name)")
    args = ap.parse_args(argv)
    from sen_infer.engine.encoders import Encoders

    encoders = Encoders(args.engine, args.backend)
    label = args.label or encoders.manifest.model_name
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = Path(args.video) if args.video else make_videos(tmp / "video", args.cameras, args.seconds, args.fps)
        table = json.loads((folder / "identities.json").read_text())
        videos = [folder / info["video"] for info in table["cameras"].values()]
        fps = {folder / info["video"]: float(info["fps"]) for info in table["cameras"].values()}
        video_seconds = sum(table_frames(v) / fps[v] for v in videos)
        ceiling = {b: encoder_alone(encoders, b) for b in sorted({4, args.batch})}
        configs = [0, *args.workers]
        runs: dict[int, list[dict]] = {w: [] for w in configs}
        for rep in range(args.repeats):
            for w in configs:  # round-robin: drift on a shared machine hits every configuration alike
                got = one_run(encoders, videos, w, tmp / f"g{w}_{rep}", args.batch)
                runs[w].append(got)
                print(f"{'sequential' if w == 0 else f'pipeline, {w} workers'}: {json.dumps(got)}", flush=True)
    rows = []
    base = None
    for w in configs:
        r = sorted(runs[w], key=lambda x: x["wall_s"])[len(runs[w]) // 2]  # the median run
        wall = r["wall_s"]
        row = {"model": label, "what": "BEFORE: sequential (add_video per camera)" if w == 0 else
               f"AFTER: pipeline, {w} worker{'s' if w > 1 else ''} (add_videos)",
               "frames_per_s": round(r["frames"] / wall, 1), "crops_per_s": round(r["crops"] / wall, 1),
               "rtf_per_camera": round(video_seconds / len(videos) / wall, 2),
               "rtf_all_cameras": round(video_seconds / wall, 2),
               "encoder_busy_pct": round(100 * r["encoder_s"] / wall, 1),
               "crops_per_batch": round(r["crops"] / max(r["batches"], 1), 1),
               "wall_s": round(wall, 1), "rows": r["rows"]}
        base = base or row["frames_per_s"]
        row["speedup"] = round(row["frames_per_s"] / base, 2)
        rows.append(row)
        print(row, flush=True)
    for b, v in ceiling.items():
        rows.append({"model": label, "what": f"encoder alone, batch {b} (ceiling)", "crops_per_s": round(v, 1)})
        print(rows[-1], flush=True)
    stored = {r["rows"] for r in rows if "rows" in r}
    figures = {"engine": str(Path(args.engine).resolve()), "backend": encoders.backend, "model": label,
               "cameras": len(videos), "video_seconds": video_seconds, "fps": sorted(set(fps.values())),
               "batch": args.batch, "repeats": args.repeats, "runs": {str(w): runs[w] for w in configs},
               "encoder_alone_crops_per_s": {str(b): v for b, v in ceiling.items()},
               "same_rows_in_every_run": len(stored) == 1}
    path = write(args.name, figures, rows, ["model", "what", "frames_per_s", "crops_per_s", "rtf_per_camera",
                                            "rtf_all_cameras", "encoder_busy_pct", "crops_per_batch", "speedup",
                                            "wall_s", "rows"],
                 plot=("what", "crops_per_s"))
    print(f"{len(videos)} cameras x {video_seconds / len(videos):.0f} s, backend {encoders.backend} -> {path}")
    if len(stored) != 1:
        print(f"warning: runs stored different row counts {sorted(stored)}", file=sys.stderr)
    return 0


def table_frames(video: Path) -> int:
    """Frames OpenCV decodes from `video` (what the ingest sees)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


if __name__ == "__main__":
    sys.exit(main())
