"""Detection and tracking scored on MOT ground truth, every detector x tracker on the same videos.

    python -m benchmarks.tracking --synthetic standard hard            # generate the test videos, score all
    python -m benchmarks.tracking --video DIR [--video DIR2] [--detectors mog2,hog] [--trackers iou,motion]

A video dir is what `python -m sen_train.data.synth_video` writes (camK.mp4 + camK.gt.txt). Metrics
come from py-motmetrics over all cameras of a set: MOTA, IDF1, ID switches, fragmentations, box
precision / recall (IoU >= 0.5), plus what decides retrieval: the share of the crops a gallery would
store (`pick_crops`) that hold more than one person. A ground-truth person is *in* a crop when at
least half of their box lies inside it.

Scored frames are the processed ones (every `--stride`-th). Ground-truth people less than 25 %
visible (behind others or scenery, or mostly outside the frame) are "don't care": missing them costs
nothing and a box on them is not a false positive. The `oracle` detector feeds the ground truth's
boxes to the tracker: what a perfect detector would reach with the same tracker and crop choice.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import write
from sen_infer.ingest.video import VideoOptions
from sen_infer.vision.tracking import iou_matrix
from sen_infer.vision.decode import extract_tracks

MIN_VISIBILITY = 0.25
INSIDE = 0.5  # share of a person's box inside a crop for them to count as in it
SYNTHETIC = {"standard": dict(cameras=4, seconds=20.0, seed=101), "hard": dict(cameras=4, seconds=20.0, seed=202)}


def load_truth(video_dir: Path) -> dict:
    table = json.loads((video_dir / "identities.json").read_text())
    cams = {}
    for cam, info in table["cameras"].items():
        gt = np.loadtxt(video_dir / info["ground_truth"], delimiter=",", ndmin=2)
        cams[cam] = {"video": video_dir / info["video"], "gt": gt, "width": info["width"], "height": info["height"]}
    return cams


def _clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    x0, y0 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height)
    x1, y1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width), np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def people_in(crop, boxes: np.ndarray) -> int:
    """How many of `boxes` [N, 4] have at least INSIDE of their area inside `crop`."""
    if not len(boxes):
        return 0
    x0, y0, w, h = crop
    iw = np.clip(np.minimum(x0 + w, boxes[:, 0] + boxes[:, 2]) - np.maximum(x0, boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(y0 + h, boxes[:, 1] + boxes[:, 3]) - np.maximum(y0, boxes[:, 1]), 0, None)
    area = np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
    return int(((iw * ih) / area >= INSIDE).sum())


def oracle_file(info: dict, folder: Path) -> str:
    """The ground truth's boxes of people at least MIN_VISIBILITY visible, as a MOT detections file: the
    `oracle` detector, a perfect detector's score (the floor of what tracking and crop choice allow)."""
    gt = info["gt"]
    rows = gt[gt[:, 8] >= MIN_VISIBILITY]
    path = folder / f"{Path(info['video']).stem}.oracle.txt"
    path.write_text("".join(f"{int(r[0])},-1,{r[2]:.0f},{r[3]:.0f},{r[4]:.0f},{r[5]:.0f},1\n" for r in rows))
    return f"mot:{path}"


def picture(path: Path, video_path: Path, tracks: list) -> None:
    """What a pipeline keeps, to look at: the frame with the most tracked people, each box labelled with its
    track, above the crops the gallery would store (every track's chosen crops, in track order)."""
    import cv2

    seen: dict[int, list] = {}
    for track, _ in tracks:
        for o in track.observations:
            seen.setdefault(o.frame, []).append((track.id, o.box))
    if not seen:
        return
    best = max(seen, key=lambda f: len(seen[f]))
    cap = cv2.VideoCapture(str(video_path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, best)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        return
    colours = [(66, 135, 245), (60, 180, 75), (230, 25, 75), (245, 130, 48), (145, 30, 180), (70, 240, 240),
               (240, 50, 230), (0, 128, 128), (170, 110, 40), (128, 0, 0)]
    for tid, (x, y, w, h) in seen[best]:
        c = colours[tid % len(colours)]
        cv2.rectangle(frame, (x, y), (x + w, y + h), c, 2)
        cv2.putText(frame, str(tid), (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, c, 2)
    cv2.putText(frame, f"frame {best + 1}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    strip_h, width = 112, frame.shape[1]
    rows, row, used = [], np.zeros((strip_h + 16, width, 3), np.uint8), 0
    for track, chosen in tracks:
        for o in chosen:
            if o.crop is None:
                continue
            crop = cv2.resize(o.crop, (max(1, int(o.crop.shape[1] * strip_h / o.crop.shape[0])), strip_h))
            if used + crop.shape[1] > width:
                rows.append(row)
                row, used = np.zeros((strip_h + 16, width, 3), np.uint8), 0
            row[16:, used : used + crop.shape[1]] = crop[:, : width - used]
            cv2.putText(row, f"{track.id}", (used + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        colours[track.id % len(colours)], 1)
            used += crop.shape[1] + 4
    rows.append(row)
    cv2.imwrite(str(path), np.vstack([frame, *rows]))


def score(cams: dict, detector: str, tracker: str, stride: int, picture_to: Path | None = None) -> dict:
    """One pipeline on one set of cameras: motmetrics summary + crop purity + speed; with `picture_to`, the
    first camera's `picture` is written there."""
    import motmetrics as mm

    accs, names = [], []
    crops = multi = empty = tracks = frames = 0
    seconds = 0.0
    scratch = tempfile.TemporaryDirectory()
    for cam, info in cams.items():
        spec = oracle_file(info, Path(scratch.name)) if detector == "oracle" else detector
        t0 = time.perf_counter()
        video = extract_tracks(info["video"], detector=spec, stride=stride, tracker=tracker)
        seconds += time.perf_counter() - t0
        frames += video.frames
        if picture_to is not None and not names:
            picture(picture_to, info["video"], video.tracks)
        W, H = info["width"], info["height"]
        gt = info["gt"]
        hyp: dict[int, list] = {}
        for track, chosen in video.tracks:
            tracks += 1
            for o in track.observations:
                hyp.setdefault(o.frame, []).append((track.id, o.box))
            for o in chosen:
                rows = gt[(gt[:, 0] == o.frame + 1) & (gt[:, 8] >= MIN_VISIBILITY)]
                n = people_in(o.box, _clip(rows[:, 2:6], W, H))
                crops += 1
                multi += n > 1
                empty += n == 0
        acc = mm.MOTAccumulator(auto_id=True)
        for f in range(0, video.frames, stride):
            rows = gt[gt[:, 0] == f + 1]
            boxes = _clip(rows[:, 2:6], W, H)
            care = rows[:, 8] >= MIN_VISIBILITY
            h_ids = [i for i, _ in hyp.get(f, [])]
            h_boxes = np.array([b for _, b in hyp.get(f, [])], np.float64).reshape(-1, 4)
            if len(h_boxes) and (~care).any():  # boxes on "don't care" people are dropped, not counted
                on_ignored = iou_matrix(h_boxes, boxes[~care]).max(axis=1) >= 0.5
                on_counted = iou_matrix(h_boxes, boxes[care]).max(axis=1) >= 0.5 if care.any() else \
                    np.zeros(len(h_boxes), bool)
                keep = ~(on_ignored & ~on_counted)
                h_ids, h_boxes = [i for i, k in zip(h_ids, keep) if k], h_boxes[keep]
            overlap = iou_matrix(boxes[care], h_boxes)  # motmetrics' own helper uses numpy < 2 only
            dist = np.where(overlap >= 0.5, 1.0 - overlap, np.nan)
            acc.update(rows[care, 1].astype(int).tolist(), h_ids, dist)
        accs.append(acc)
        names.append(cam)
    scratch.cleanup()
    mh = mm.metrics.create()
    summary = mh.compute_many(accs, names=names, metrics=["mota", "idf1", "num_switches", "num_fragmentations",
                                                          "precision", "recall", "num_unique_objects"],
                              generate_overall=True)
    overall = summary.loc["OVERALL"]
    return {"MOTA": float(overall["mota"]), "IDF1": float(overall["idf1"]), "ID switches": int(overall["num_switches"]),
            "fragmentations": int(overall["num_fragmentations"]), "precision": float(overall["precision"]),
            "recall": float(overall["recall"]), "crops": crops,
            "multi-person crops %": 100.0 * multi / max(1, crops), "empty crops %": 100.0 * empty / max(1, crops),
            "tracks": tracks, "gt people": int(overall["num_unique_objects"]),
            "frames/s": frames / max(seconds, 1e-9)}


def synthetic_sets(names: list[str], root: Path) -> dict[str, Path]:
    """The benchmark's own videos (fixed seeds), generated once into `root`."""
    from sen_train.data.synth_video import VideoConfig, generate

    out = {}
    for name in names:
        d = root / name
        if not (d / "identities.json").is_file():
            generate(VideoConfig(difficulty=name, **SYNTHETIC[name]), d, progress=False)
        out[name] = d
    return out


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['videos']}: {r['detector']} + {r['tracker']}" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.32 * len(rows) + 1.6), sharey=True)
    for ax, key, colour in zip(axes, ("IDF1", "MOTA", "multi-person crops %"), ("#4c72b0", "#55a868", "#c44e52")):
        ax.barh(range(len(rows)), [r[key] for r in rows], color=colour)
        ax.set_title(key, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("tracking on synthetic camera video (MOT ground truth)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tracking", description=__doc__.split("\n")[0])
    ap.add_argument("--video", action="append", default=[], help="a synth_video dir (repeatable)")
    ap.add_argument("--synthetic", nargs="*", choices=sorted(SYNTHETIC), default=None,
                    help="generate the benchmark's own videos at these difficulties (default with no --video: both)")
    ap.add_argument("--detectors", default="mog2,mog2-split,hog,oracle",
                    help="comma-separated detector specs; oracle = the ground truth's own boxes (the floor); "
                         "default = what `ingest` uses by default")
    ap.add_argument("--trackers", default="iou,motion", help="comma-separated; default = what `ingest` uses")
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--name", default="tracking", help="results file name under benchmarks/results")
    ap.add_argument("--out", default=None, help="results dir (default: benchmarks/results)")
    ap.add_argument("--picture", action="store_true",
                    help="also write, per set, what the first pipeline keeps: NAME_SET.png (boxes and crops)")
    args = ap.parse_args(argv)
    sets = {Path(v).name: Path(v) for v in args.video}
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic is not None or not sets:
            sets.update(synthetic_sets(args.synthetic or sorted(SYNTHETIC), Path(tmp)))
        rows = []
        out_dir = Path(args.out) if args.out else Path(__file__).resolve().parent / "results"
        for name, d in sets.items():
            cams = load_truth(d)
            defaults = VideoOptions()  # what `python -m sen_infer ingest` uses when no detector or tracker is named
            for det in [defaults.detector if d == "default" else d for d in args.detectors.split(",")]:
                for trk in [defaults.tracker if k == "default" else k for k in args.trackers.split(",")]:
                    first = not any(r["videos"] == name for r in rows)
                    shot = out_dir / f"{args.name}_{name}.png" if args.picture and first else None
                    if shot is not None:
                        out_dir.mkdir(parents=True, exist_ok=True)
                    r = {"videos": name, "detector": det, "tracker": trk,
                         **score(cams, det, trk, args.stride, shot)}
                    rows.append(r)
                    print(f"{name:>10} {det:>10} + {trk:<6} IDF1 {r['IDF1']:.3f}  MOTA {r['MOTA']:.3f}  "
                          f"IDsw {r['ID switches']:4d}  multi {r['multi-person crops %']:5.1f}%  "
                          f"{r['frames/s']:.0f} frames/s", flush=True)
    columns = ["videos", "detector", "tracker", "MOTA", "IDF1", "ID switches", "fragmentations", "precision",
               "recall", "multi-person crops %", "empty crops %", "tracks", "gt people", "frames/s"]
    figures = {"stride": args.stride, "min_visibility": MIN_VISIBILITY, "inside": INSIDE,
               "sets": {k: str(v) for k, v in sets.items()}, "synthetic_config": SYNTHETIC}
    path = write(args.name, figures, rows, columns, out_dir=Path(args.out) if args.out else None)
    plot(path.with_suffix(".png"), rows)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
