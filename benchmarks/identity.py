"""Cross-camera identity linking measured: pairwise link precision / recall against ground truth.

    python -m benchmarks.identity --engine ENGINE_DIR --dataset SYNTHPEDES_DIR [--cameras 3] [--seconds 30]
    python -m benchmarks.identity --engine ENGINE_DIR --video VIDEO_DIR

Videos come from `sen_train.data.synth_video` (generated here from `--people` held-out identities of a
SynthPEDES dir, so that people recur across cameras), are ingested into a fresh gallery with the chosen
detector and tracker, and every gallery track is labelled with the ground-truth identity its stored
crop's box overlaps (IoU > 0.5). Linking is then run at each threshold: precision = share of linked
track pairs that are one identity, recall = share of same-identity pairs that are linked. The
synthetic cameras all film at once and have no route between them, so the same person may be in two
of them at the same time: linking runs with `overlapping_views=True` here. The generator also sometimes
walks one identity through one camera twice at once; such pairs (impossible for a real person) are
left out of precision and recall.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.report import write
from benchmarks.video_retrieval import label_rows
from sen_infer import Retriever
from sen_infer.identity.linking import DEFAULT_MAX_GAP, DEFAULT_THRESHOLD, conflict, link_tracks, pairwise_scores

THRESHOLDS = [round(t, 2) for t in np.arange(0.50, 0.991, 0.02)]


def make_videos(dataset: Path, out: Path, cameras: int, seconds: float, people: int, seed: int) -> Path:
    from sen_train.data.synth_video import VideoConfig, generate, identities_from_dataset

    held_out = identities_from_dataset(dataset, "test")
    chosen = dict(sorted(held_out.items())[:people])
    generate(VideoConfig(cameras=cameras, seconds=seconds, seed=seed), out, identities=chosen, progress=False)
    return out


def label_tracks(gallery, video: Path) -> dict[int, int]:
    """gallery track -> ground-truth pid, for tracks whose stored box overlaps a true box by IoU > 0.5."""
    table = json.loads((video / "identities.json").read_text())
    return {row.track: pid for row, pid in label_rows(gallery, video, table).values()
            if pid is not None and row.track is not None}


def plot(path: Path, curve: list[dict], chosen: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([c["recall"] for c in curve], [c["precision"] for c in curve], "-o", ms=3, color="#4c72b0")
    for c in curve:
        if abs(c["threshold"] * 10 - round(c["threshold"] * 10)) < 1e-9 or c["threshold"] == chosen:
            ax.annotate(f"{c['threshold']:.2f}", (c["recall"], c["precision"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    at = next(c for c in curve if c["threshold"] == chosen)
    ax.plot([at["recall"]], [at["precision"]], "o", ms=9, mfc="none", mec="#c44e52", label=f"default {chosen:.2f}")
    ax.set_xlabel("link recall (same-identity track pairs linked)")
    ax.set_ylabel("link precision (linked pairs that are one identity)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title("cross-camera identity linking, synthetic video", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.identity", description=__doc__.split("\n")[0])
    ap.add_argument("--engine", required=True)
    ap.add_argument("--dataset", help="SynthPEDES dir whose test identities walk through generated videos")
    ap.add_argument("--video", help="an existing synth_video dir instead of generating one")
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--people", type=int, default=8, help="identities in the generated videos (fewer = more recur)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--detector", default="mog2-split")
    ap.add_argument("--tracker", default="motion")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", default=None, help="results dir (default: benchmarks/results)")
    args = ap.parse_args(argv)
    if not args.video and not args.dataset:
        ap.error("give --dataset (to generate videos) or --video")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(args.video) if args.video else make_videos(Path(args.dataset), Path(tmp) / "video",
                                                                args.cameras, args.seconds, args.people, args.seed)
        table = json.loads((video / "identities.json").read_text())
        r = Retriever(args.engine, gallery=Path(tmp) / "gallery", backend=args.backend)
        for cam, info in table["cameras"].items():
            r.gallery.add_video(video / info["video"], camera=cam, start_time=info["start_time"],
                                detector=args.detector, tracker=args.tracker)
        truth = label_tracks(r.gallery, video)
        summaries = r.gallery.store.track_summaries()
        by_track = {s.track: s for s in summaries}

        def possible(a: int, b: int) -> bool:  # the generator may walk one identity twice through one view at once
            return not conflict(by_track[a], by_track[b], None, overlapping_views=True)

        curve = []
        for t in THRESHOLDS:
            person = link_tracks(summaries, t, DEFAULT_MAX_GAP, overlapping_views=True)
            p, rec, linked, true = pairwise_scores(person, truth, possible)
            f1 = 2 * p * rec / (p + rec) if p + rec else 0.0
            curve.append({"threshold": t, "precision": p, "recall": rec, "F1": f1, "linked_pairs": linked,
                          "true_pairs": true, "persons": len(set(person.values()))})
    chosen = min(THRESHOLDS, key=lambda t: abs(t - DEFAULT_THRESHOLD))
    at = next(c for c in curve if c["threshold"] == chosen)
    best = max(curve, key=lambda c: (c["F1"], c["threshold"]))
    figures = {"tracks": len(summaries), "labelled_tracks": len(truth), "identities": len(set(truth.values())),
               "default_threshold": chosen, "at_default": at, "best_F1": best, "detector": args.detector,
               "tracker": args.tracker, "backend": r.backend, "cameras": len(table["cameras"]),
               "overlapping_views": True}
    path = write("identity", figures, curve, ["threshold", "precision", "recall", "F1", "linked_pairs", "true_pairs",
                                              "persons"], out_dir=Path(args.out) if args.out else None)
    plot(path.with_suffix(".png"), curve, chosen)
    print(f"{len(summaries)} tracks ({len(truth)} labelled, {figures['identities']} identities); "
          f"at the default {chosen:.2f}: precision {at['precision']:.3f}, recall {at['recall']:.3f}; "
          f"best F1 {best['F1']:.3f} at {best['threshold']:.2f}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
