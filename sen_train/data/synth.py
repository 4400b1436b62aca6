"""SynthPEDES: a procedural text-to-person dataset written in the CUHK-PEDES format.

    python -m sen_train.data.synth --out DIR --ids N --seed S

writes `DIR/reid_raw.json` + `DIR/imgs/synth/*.jpg` (read by the real CUHK-PEDES reader) and
`DIR/attributes.json`, the ground truth behind every image and caption (identity attributes,
hard-negative links, per-image view/pose/scale/occlusion). Output is a pure function of the
arguments: every image has its own random stream seeded by (seed, pid, image index).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sen_train.data.attributes import (DIFFICULTIES, PersonAttributes, check_difficulty, hard_negative,
                                       sample_attributes)
from sen_train.data.captions import make_caption
from sen_train.data.render import Pose, adjust_lighting, make_background, paste, render_person

FORMAT_VERSION = 1
IMAGE_DIR = "synth"


@dataclass(frozen=True)
class SynthConfig:
    ids: int = 200
    seed: int = 0
    images_per_id: int = 4
    captions_per_image: int = 2
    hard_negative_rate: float = 0.3  # share of identities that copy another but for one attribute
    split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train / val / test, by identity
    occlusion_rate: float = 0.2
    height: int = 384
    width: int = 128
    difficulty: str = "standard"  # "hard": near shades, patterned tops, fine-grained negatives, typos

    def __post_init__(self):
        if self.ids < 3:
            raise ValueError(f"need at least 3 identities (one per split), got {self.ids}")
        if self.images_per_id < 2:
            raise ValueError("need at least 2 images per identity (retrieval needs a positive)")
        if self.captions_per_image < 1:
            raise ValueError("need at least 1 caption per image")
        if len(self.split_ratios) != 3 or min(self.split_ratios) < 0 or sum(self.split_ratios) <= 0:
            raise ValueError(f"split_ratios must be 3 non-negative numbers, got {self.split_ratios}")
        if not 0 <= self.hard_negative_rate <= 1 or not 0 <= self.occlusion_rate <= 1:
            raise ValueError("rates must lie in [0, 1]")
        check_difficulty(self.difficulty)


@dataclass(frozen=True)
class Identity:
    pid: int  # 1-based, as in CUHK-PEDES
    split: str
    attributes: PersonAttributes
    hard_negative_of: int | None = None
    changed: str | None = None


def split_sizes(n: int, ratios) -> tuple[int, int, int]:
    """Identities per split; each non-zero ratio gets at least one identity."""
    r = np.asarray(ratios, float) / sum(ratios)
    val = max(1, int(round(n * r[1]))) if r[1] > 0 else 0
    test = max(1, int(round(n * r[2]))) if r[2] > 0 else 0
    return n - val - test, val, test


def plan_identities(cfg: SynthConfig) -> list[Identity]:
    """Attributes and split of every identity, hard negatives kept within their base's split."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_train, n_val, _ = split_sizes(cfg.ids, cfg.split_ratios)
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * (cfg.ids - n_train - n_val)
    splits = [splits[i] for i in rng.permutation(cfg.ids)]
    people: list[Identity] = []
    for i, split in enumerate(splits):
        bases = [p for p in people if p.split == split and p.hard_negative_of is None]
        if bases and rng.random() < cfg.hard_negative_rate:
            base = bases[int(rng.integers(len(bases)))]
            attrs, changed = hard_negative(base.attributes, rng, cfg.difficulty)
            people.append(Identity(i + 1, split, attrs, base.pid, changed))
        else:
            people.append(Identity(i + 1, split, sample_attributes(rng, cfg.difficulty)))
    return people


def render_image(attrs: PersonAttributes, cfg: SynthConfig, pid: int, index: int):
    """One dataset image of identity `pid` and its per-image metadata (deterministic)."""
    rng = np.random.default_rng([cfg.seed, pid, index, 1])
    H, W = cfg.height, cfg.width
    img = make_background(rng, H, W)
    pose = Pose(view="front" if rng.random() < 0.6 else "back", phase=float(rng.uniform(0, 2 * np.pi)))
    scale = float(rng.uniform(0.78, 0.96))
    person, mask = render_person(attrs, pose, int(round(scale * H)))
    x = W / 2 + rng.normal(0, 0.05 * W)
    y = H * rng.uniform(0.97, 1.0)
    paste(img, person, mask, x, y)
    occluded = None
    if rng.random() < cfg.occlusion_rate:
        colour = tuple(int(c) for c in rng.uniform(40, 200, size=3))
        if rng.random() < 0.5:  # something in front of the legs (a bench, a car)
            top = int(H * rng.uniform(0.72, 0.85))
            cv2.rectangle(img, (0, top), (W, H), colour, -1)
            occluded = "bottom"
        else:  # a pole or another passer-by at one side
            w = int(W * rng.uniform(0.15, 0.3))
            x0 = 0 if rng.random() < 0.5 else W - w
            cv2.rectangle(img, (x0, 0), (x0 + w, H), colour, -1)
            occluded = "side"
    img = adjust_lighting(img, rng)
    meta = {"view": pose.view, "phase": round(pose.phase, 4), "scale": round(scale, 4), "occluded": occluded}
    return img, meta


def _render_job(job):
    cfg, root, pid, index, attrs = job
    img, meta = render_image(attrs, cfg, pid, index)
    rel = f"{IMAGE_DIR}/{pid:05d}_{index:02d}.jpg"
    if not cv2.imwrite(str(Path(root) / "imgs" / rel), img, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write image {Path(root) / 'imgs' / rel}")
    rng = np.random.default_rng([cfg.seed, pid, index, 2])
    hard = cfg.difficulty == "hard"
    captions = [make_caption(attrs, meta["view"], rng, hard) for _ in range(cfg.captions_per_image)]
    return pid, index, rel, captions, meta


def tokenize_simple(text: str) -> list[str]:
    """Lower-case word tokens, as in CUHK-PEDES' `processed_tokens`."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def generate(cfg: SynthConfig, out: str | os.PathLike, workers: int = 0, progress: bool = True) -> dict:
    """Write the dataset to `out`; returns its statistics. `workers=0` uses every CPU."""
    root = Path(out)
    (root / "imgs" / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    people = plan_identities(cfg)
    jobs = [(cfg, str(root), p.pid, k, p.attributes) for p in people for k in range(cfg.images_per_id)]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="SynthPEDES images", unit="img", disable=not progress)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_render_job(job))
            bar.update()
    else:
        with get_context("spawn").Pool(workers) as pool:
            for r in pool.imap(_render_job, jobs, chunksize=16):
                results.append(r)
                bar.update()
    bar.close()

    split_of = {p.pid: p.split for p in people}
    records, images = [], []
    for pid, index, rel, captions, meta in results:
        records.append({"split": split_of[pid], "captions": captions, "file_path": rel,
                        "processed_tokens": [tokenize_simple(c) for c in captions], "id": pid})
        images.append({"file_path": rel, "id": pid, **meta})
    truth = {
        "format_version": FORMAT_VERSION,
        "generator": "SynthPEDES",
        "config": asdict(cfg),
        "identities": [{"id": p.pid, "split": p.split, "attributes": p.attributes.to_dict(),
                        "hard_negative_of": p.hard_negative_of, "changed": p.changed} for p in people],
        "images": images,
    }
    _write_json(root / "reid_raw.json", records)
    _write_json(root / "attributes.json", truth)
    return statistics(root)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def statistics(root: str | os.PathLike) -> dict:
    """Counts per split, caption lengths, vocabulary and attribute balance of a SynthPEDES dir."""
    from sen_train.data.readers import read_dataset  # the real reader, on purpose

    root = Path(root)
    data = read_dataset(root)
    truth = json.loads((root / "attributes.json").read_text())
    out = {"splits": {}}
    words = Counter()
    lengths = []
    for split, samples in data.items():
        out["splits"][split] = {
            "identities": len({s.pid for s in samples}),
            "images": len({s.image for s in samples}),
            "captions": len(samples),
        }
        for s in samples:
            toks = tokenize_simple(s.caption)
            lengths.append(len(toks))
            words.update(toks)
    ids = truth["identities"]
    out["hard_negatives"] = sum(1 for p in ids if p["hard_negative_of"] is not None)
    out["caption_words"] = {"mean": round(float(np.mean(lengths)), 1), "min": int(min(lengths)),
                            "max": int(max(lengths))}
    out["vocabulary"] = len(words)
    out["occluded_images"] = sum(1 for im in truth["images"] if im["occluded"])
    out["back_view_images"] = sum(1 for im in truth["images"] if im["view"] == "back")
    for key in ("top_type", "top_pattern", "bottom_type", "bag_type", "hat_type"):
        out[key] = dict(Counter(p["attributes"].get(key, "plain") for p in ids).most_common())
    out["difficulty"] = truth["config"].get("difficulty", "standard")
    return out


def format_statistics(stats: dict) -> str:
    lines = ["split   identities  images  captions"]
    for split, s in stats["splits"].items():
        lines.append(f"{split:<7} {s['identities']:>10}  {s['images']:>6}  {s['captions']:>8}")
    cw = stats["caption_words"]
    lines.append(f"caption words: mean {cw['mean']}, min {cw['min']}, max {cw['max']}; "
                 f"vocabulary {stats['vocabulary']} words")
    lines.append(f"hard-negative identities: {stats['hard_negatives']}; occluded images: "
                 f"{stats['occluded_images']}; back views: {stats['back_view_images']}")
    lines.append(f"difficulty: {stats['difficulty']}")
    for key in ("top_type", "top_pattern", "bottom_type", "bag_type", "hat_type"):
        lines.append(f"{key}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sen_train.data.synth", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--ids", type=int, default=SynthConfig.ids, help="number of identities")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images-per-id", type=int, default=SynthConfig.images_per_id)
    ap.add_argument("--captions-per-image", type=int, default=SynthConfig.captions_per_image)
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default="standard",
                    help="hard: near colour shades, striped/checked/printed tops, fine-grained hard negatives, "
                         "colour-after-noun phrasing and typos in captions")
    ap.add_argument("--hard-negative-rate", type=float, default=None,
                    help=f"share of one-attribute look-alikes (default {SynthConfig.hard_negative_rate}; 0.5 with "
                         "--difficulty hard)")
    ap.add_argument("--occlusion-rate", type=float, default=SynthConfig.occlusion_rate)
    ap.add_argument("--split-ratios", type=float, nargs=3, default=SynthConfig.split_ratios,
                    metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--workers", type=int, default=0, help="processes (0 = all CPUs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    rate = args.hard_negative_rate
    if rate is None:
        rate = 0.5 if args.difficulty == "hard" else SynthConfig.hard_negative_rate
    try:
        cfg = SynthConfig(ids=args.ids, seed=args.seed, images_per_id=args.images_per_id,
                          captions_per_image=args.captions_per_image,
                          hard_negative_rate=rate, occlusion_rate=args.occlusion_rate,
                          split_ratios=tuple(args.split_ratios), difficulty=args.difficulty)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    stats = generate(cfg, args.out, workers=args.workers, progress=not args.quiet)
    n = cfg.ids * cfg.images_per_id
    print(f"SynthPEDES: {n} images of {cfg.ids} identities in {time.perf_counter() - t0:.1f} s -> {args.out}")
    print(format_statistics(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
