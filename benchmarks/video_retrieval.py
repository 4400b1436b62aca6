"""Track-level retrieval on synthetic camera video with ground truth.

    python -m benchmarks.video_retrieval --engine ENGINE_DIR --video VIDEO_DIR [--backend onnx-cpu]
        [--pipelines mog2+iou,mog2-split+motion]

Ingests every camera of VIDEO_DIR (written by sen_train.data.synth_video) into a fresh gallery,
labels each gallery track with the ground-truth identity its representative box overlaps
(IoU > 0.5), then queries every caption of every identity seen on camera: R@1 / R@5 = share of
queries whose top 1 / top 5 tracks include one of that identity. Also reports ingest speed.
With several `--pipelines` (detector+tracker) each gets a fresh gallery and a row, side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import write
from sen_infer import Retriever
from sen_infer.vision.tracking import iou


def label_rows(gallery, video: Path, table: dict) -> dict:
    """key -> (row, ground-truth pid or None) for every gallery row: the identity whose true box its
    stored box overlaps with IoU > 0.5 in the same frame."""
    track_pid = {t["track"]: t["pid"] for t in table["tracks"]}
    out = {}
    for cam, info in table["cameras"].items():
        gt = np.loadtxt(video / info["ground_truth"], delimiter=",", ndmin=2)
        for key, row in gallery.rows(gallery.keys(camera=cam)).items():
            here = gt[gt[:, 0] == row.frame + 1]
            best = max(((iou(row.bbox, tuple(int(v) for v in g[2:6])), int(g[1])) for g in here),
                       default=(0.0, None))
            out[key] = (row, track_pid.get(best[1]) if best[0] > 0.5 else None)
    return out


def run(engine: str, video: Path, backend: str, detector: str, tracker: str) -> dict:
    table = json.loads((video / "identities.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        r = Retriever(engine, gallery=Path(tmp) / "g", backend=backend)
        frames, seconds, video_seconds = 0, 0.0, 0.0
        for cam, info in table["cameras"].items():
            t0 = time.perf_counter()
            rep = r.gallery.add_video(video / info["video"], camera=cam, detector=detector, tracker=tracker)
            seconds += time.perf_counter() - t0
            frames += rep.frames
            video_seconds += rep.frames / info["fps"]
        label = {key: pid for key, (_, pid) in label_rows(r.gallery, video, table).items()}
        seen = sorted({p for p in label.values() if p is not None})
        hits1 = hits5 = n = 0
        for pid in seen:
            for caption in table["identities"][str(pid)]["captions"]:
                ranked = [label.get(h.key) for h in r.query(caption, k=5)]
                hits1 += ranked[:1] == [pid]
                hits5 += pid in ranked
                n += 1
        return {"tracks": len(label), "labelled_tracks": sum(v is not None for v in label.values()),
                "identities_queried": len(seen), "queries": n, "R1": 100.0 * hits1 / max(1, n),
                "R5": 100.0 * hits5 / max(1, n), "frames": frames, "ingest_seconds": seconds,
                "frames_per_s": frames / seconds, "real_time_factor": video_seconds / seconds,
                "backend": r.backend, "detector": detector, "tracker": tracker}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.video_retrieval")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--video", required=True, help="dir written by python -m sen_train.data.synth_video")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--detector", default="mog2")
    ap.add_argument("--tracker", default="motion")
    ap.add_argument("--pipelines", help="several detector+tracker pairs side by side, e.g. mog2+iou,mog2-split+motion")
    ap.add_argument("--name", default="video_retrieval", help="results file name under benchmarks/results")
    args = ap.parse_args(argv)
    video = Path(args.video)
    pairs = [p.split("+", 1) for p in args.pipelines.split(",")] if args.pipelines else [[args.detector, args.tracker]]
    results = [run(args.engine, video, args.backend, det, trk) for det, trk in pairs]
    if len(results) == 1:
        figures = results[0]
        rows = [{"measure": "track R@1 (%)", "value": figures["R1"]},
                {"measure": "track R@5 (%)", "value": figures["R5"]},
                {"measure": "ingest real-time factor", "value": figures["real_time_factor"]}]
        path = write(args.name, figures, rows, ["measure", "value"], plot=("measure", "value"))
    else:
        rows = [{"pipeline": f"{f['detector']} + {f['tracker']}", **f} for f in results]
        path = write(args.name, {"video": str(video)}, rows,
                     ["pipeline", "R1", "R5", "tracks", "labelled_tracks", "queries", "real_time_factor"],
                     plot=("pipeline", "R1"))
    for f in results:
        print(f"{f['detector']} + {f['tracker']}: " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in f.items()
            if k not in ("detector", "tracker")))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
