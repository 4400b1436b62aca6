"""Synthetic surveillance video: SynthPEDES people walking through static camera scenes.

    python -m sen_train.data.synth_video --out DIR --cameras 2 --seconds 20 --seed S

writes, per camera `camK`: `camK.mp4` (mp4v), `camK.gt.txt` (MOT ground truth:
`frame,id,x,y,w,h,conf,class,visibility`, 1-based frames, full-extent boxes that may leave the
frame, visibility = visible share of the figure), `camK.background.png` (the empty scene), and one
`identities.json` with the cameras, the tracks (track id -> pid, camera, frames) and every
identity's attributes and captions. People enter and leave at the frame edges, walk at different
depths (farther = smaller and drawn first), so they occlude each other; some appear in several cameras.

`--difficulty hard` adds what real footage has and `standard` (the default, unchanged) lacks: groups
of two or three walking side by side, crowds crossing (about twice the walkers), pillars in front of
the walkers (scenery occlusion, counted in the visibility column), a slow lighting drift, stronger
sensor noise and heavy JPEG compression of every frame.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sen_train.data.attributes import PersonAttributes, sample_attributes
from sen_train.data.captions import make_caption
from sen_train.data.render import Pose, make_background, paste, render_person


class VideoWriteError(RuntimeError):
    """OpenCV could not open or write the video file (codec missing, path not writable)."""


@dataclass(frozen=True)
class VideoConfig:
    cameras: int = 2
    seconds: float = 20.0
    seed: int = 0
    fps: int = 15
    width: int = 640
    height: int = 360
    people: int = 8  # identities available to walk through the cameras
    tracks_per_camera: int = 0  # 0: about one new walker every 2.5 s
    start_time: float = 1_700_000_000.0  # unix time of frame 1 of every camera
    difficulty: str = "standard"  # standard | hard (groups, crowds, pillars, lighting, noise, compression)


DIFFICULTIES = ("standard", "hard")


@dataclass
class Track:
    track: int  # globally unique track id
    camera: int
    pid: int
    start_frame: int  # 1-based
    direction: int  # +1 walks left->right, -1 right->left
    y_bottom: float  # feet position in the frame (depth)
    height: int  # person height in pixels (larger when nearer)
    speed: float  # pixels per frame
    phase0: float

    def x_at(self, frame: int, width: int) -> float:
        start = -0.3 * self.height if self.direction > 0 else width + 0.3 * self.height
        return start + self.direction * self.speed * (frame - self.start_frame)

    def end_frame(self, width: int) -> int:
        span = width + 0.6 * self.height
        return self.start_frame + int(math.ceil(span / self.speed))


def plan_tracks(cfg: VideoConfig, pids: list[int]) -> list[Track]:
    rng = np.random.default_rng([cfg.seed, 10])
    n_frames = int(round(cfg.seconds * cfg.fps))
    per_cam = cfg.tracks_per_camera or max(2, int(cfg.seconds / 2.5))
    tracks = []
    for cam in range(1, cfg.cameras + 1):
        for _ in range(per_cam):
            y = float(rng.uniform(0.72, 0.98)) * cfg.height
            h = int(y * rng.uniform(0.55, 0.7))  # perspective: lower in the frame = nearer = taller
            tracks.append(Track(
                track=len(tracks) + 1, camera=cam, pid=int(pids[int(rng.integers(len(pids)))]),
                start_frame=int(rng.integers(1, max(2, int(n_frames * 0.7)))),
                direction=1 if rng.random() < 0.5 else -1, y_bottom=y, height=h,
                speed=float(rng.uniform(2.5, 5.0)) * cfg.height / 360 * 15 / cfg.fps,
                phase0=float(rng.uniform(0, 2 * np.pi)),
            ))
    if cfg.difficulty == "hard":  # drawn from their own stream: the standard walkers stay as they were
        tracks += _hard_tracks(cfg, pids, tracks, n_frames)
    return tracks


def _hard_tracks(cfg: VideoConfig, pids: list[int], tracks: list[Track], n_frames: int) -> list[Track]:
    """Companions walking beside some walkers (groups), and as many extra walkers again (crowds)."""
    rng = np.random.default_rng([cfg.seed, 13])
    extra = []

    def add(**kw):
        extra.append(Track(track=len(tracks) + len(extra) + 1, **kw))

    for t in list(tracks):
        if rng.random() < 0.5:  # a group of 2 or 3
            for k in range(int(rng.integers(1, 3))):
                dy = float(rng.uniform(-0.03, 0.03)) * cfg.height
                y = min(0.99 * cfg.height, t.y_bottom + dy)
                lag = int(rng.integers(2, 8)) * (k + 1)  # a step behind, beside: the boxes overlap
                add(camera=t.camera, pid=int(pids[int(rng.integers(len(pids)))]), start_frame=t.start_frame + lag,
                    direction=t.direction, y_bottom=y, height=int(y * t.height / t.y_bottom),
                    speed=t.speed * float(rng.uniform(0.97, 1.03)), phase0=float(rng.uniform(0, 2 * np.pi)))
    per_cam = cfg.tracks_per_camera or max(2, int(cfg.seconds / 2.5))
    for cam in range(1, cfg.cameras + 1):
        for _ in range(per_cam):
            y = float(rng.uniform(0.72, 0.98)) * cfg.height
            add(camera=cam, pid=int(pids[int(rng.integers(len(pids)))]),
                start_frame=int(rng.integers(1, max(2, int(n_frames * 0.7)))),
                direction=1 if rng.random() < 0.5 else -1, y_bottom=y, height=int(y * rng.uniform(0.55, 0.7)),
                speed=float(rng.uniform(2.5, 5.0)) * cfg.height / 360 * 15 / cfg.fps,
                phase0=float(rng.uniform(0, 2 * np.pi)))
    return extra


def plan_pillars(cfg: VideoConfig, camera: int) -> list[tuple[int, int, int, int]]:
    """Scenery in front of the walkers (x, y, w, h): one or two pillars from the top to the ground."""
    if cfg.difficulty != "hard":
        return []
    rng = np.random.default_rng([cfg.seed, 14, camera])
    out = []
    for _ in range(int(rng.integers(1, 3))):
        w = int(cfg.width * rng.uniform(0.03, 0.06))
        x = int(rng.uniform(0.15, 0.85) * cfg.width)
        out.append((x, 0, w, cfg.height))
    return out


def degrade(img: np.ndarray, frame: int, cfg: VideoConfig, rng: np.random.Generator) -> np.ndarray:
    """Hard mode's camera: lighting drift (+-18 % over ~9 s), sensor noise (sigma 6), JPEG quality 35."""
    gain = 1.0 + 0.18 * math.sin(2 * math.pi * frame / (9.0 * cfg.fps))
    noisy = img.astype(np.float32) * gain + rng.normal(0, 6, size=img.shape)
    out = np.clip(noisy, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 35])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else out


def render_frame(background: np.ndarray, people: dict[int, PersonAttributes], tracks: list[Track],
                 frame: int, rng: np.random.Generator, pillars=()):
    """Frame `frame` and its ground truth rows [(track, x, y, w, h, visibility)]."""
    img = background.copy()
    label = np.zeros(img.shape[:2], np.int32)
    H, W = img.shape[:2]
    live = [t for t in tracks if t.start_frame <= frame <= t.end_frame(W)]
    live.sort(key=lambda t: t.y_bottom)  # far first, so nearer people occlude them
    drawn = []
    for t in live:
        x = t.x_at(frame, W)
        phase = t.phase0 + 2 * math.pi * t.speed * (frame - t.start_frame) / (0.8 * t.height)
        person, mask = render_person(people[t.pid], Pose("front" if t.direction < 0 else "back", phase),
                                     t.height)
        box = paste(img, person, mask, x, t.y_bottom, label, t.track)
        drawn.append((t.track, box, int((mask > 0).sum())))
    for x, y, w, h in pillars:  # scenery in front: the background's own pixels, hiding who is behind
        img[y : y + h, x : x + w] = background[y : y + h, x : x + w]
        label[y : y + h, x : x + w] = 0
    rows = []
    counts = np.bincount(label.ravel(), minlength=max([0] + [t.track for t in live]) + 1)
    for track, box, area in drawn:
        visible = int(counts[track]) if track < len(counts) else 0
        if visible > 0 and area > 0:
            rows.append((track, *box, visible / area))
    img = np.clip(img.astype(np.int16) + rng.integers(-2, 3, size=img.shape), 0, 255).astype(np.uint8)
    return img, rows


def generate(cfg: VideoConfig, out: str | Path, identities: dict[int, PersonAttributes] | None = None,
             progress: bool = True, hard_captions: bool = False) -> dict:
    """Write the videos and ground truth to `out`; returns the content of identities.json.

    `hard_captions`: describe people as a `hard` SynthPEDES does (patterns, shades, typos)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if identities is None:
        rng = np.random.default_rng([cfg.seed, 11])
        identities = {i + 1: sample_attributes(rng) for i in range(cfg.people)}
    tracks = plan_tracks(cfg, sorted(identities))
    n_frames = int(round(cfg.seconds * cfg.fps))
    cameras = {}
    for cam in range(1, cfg.cameras + 1):
        rng = np.random.default_rng([cfg.seed, 20, cam])
        background = make_background(rng, cfg.height, cfg.width, clutter=12)
        pillars = plan_pillars(cfg, cam)
        for x, y, w, h in pillars:
            shade = np.random.default_rng([cfg.seed, 15, cam, x]).uniform(40, 110, size=3)
            background[y : y + h, x : x + w] = shade.astype(np.uint8)
            background[y : y + h, x : x + max(1, w // 5)] = np.clip(shade * 1.4, 0, 255).astype(np.uint8)
        cv2.imwrite(str(out / f"cam{cam}.background.png"), background)
        path = out / f"cam{cam}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (cfg.width, cfg.height))
        if not writer.isOpened():
            raise VideoWriteError(f"OpenCV cannot open {path} for writing with codec mp4v")
        cam_tracks = [t for t in tracks if t.camera == cam]
        gt_lines = []
        try:
            for f in tqdm(range(1, n_frames + 1), desc=f"cam{cam}", unit="frame", disable=not progress):
                img, rows = render_frame(background, identities, cam_tracks, f, rng, pillars)
                if cfg.difficulty == "hard":
                    img = degrade(img, f, cfg, rng)
                writer.write(img)
                gt_lines += [f"{f},{tr},{x},{y},{w},{h},1,1,{vis:.3f}" for tr, x, y, w, h, vis in rows]
        finally:
            writer.release()
        if not path.is_file() or path.stat().st_size == 0:
            raise VideoWriteError(f"OpenCV wrote nothing to {path}")
        (out / f"cam{cam}.gt.txt").write_text("\n".join(gt_lines) + "\n")
        cameras[f"cam{cam}"] = {"video": path.name, "ground_truth": f"cam{cam}.gt.txt",
                                "background": f"cam{cam}.background.png", "fps": cfg.fps,
                                "frames": n_frames, "width": cfg.width, "height": cfg.height,
                                "start_time": cfg.start_time, "pillars": [list(p) for p in pillars]}
    seen = sorted({t.pid for t in tracks})
    cap_rng = np.random.default_rng([cfg.seed, 12])
    table = {
        "config": asdict(cfg),
        "cameras": cameras,
        "tracks": [{"track": t.track, "camera": f"cam{t.camera}", "pid": t.pid, "start_frame": t.start_frame,
                    "end_frame": min(n_frames, t.end_frame(cfg.width))} for t in tracks
                   if t.start_frame <= n_frames],
        "identities": {str(pid): {"attributes": identities[pid].to_dict(),
                                  "captions": [make_caption(identities[pid], v, cap_rng, hard_captions) for v in ("front", "back")]}
                       for pid in seen},
    }
    (out / "identities.json").write_text(json.dumps(table, indent=1))
    return table


def dataset_difficulty(root: str | Path) -> str:
    """'standard' or 'hard', as the SynthPEDES dir at `root` was generated."""
    return json.loads((Path(root) / "attributes.json").read_text())["config"].get("difficulty", "standard")


def identities_from_dataset(root: str | Path, split: str = "test") -> dict[int, PersonAttributes]:
    """Identities of one split of a SynthPEDES dir, so videos can show people held out from training."""
    truth = json.loads((Path(root) / "attributes.json").read_text())
    return {p["id"]: PersonAttributes.from_dict(p["attributes"]) for p in truth["identities"] if p["split"] == split}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sen_train.data.synth_video", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cameras", type=int, default=VideoConfig.cameras)
    ap.add_argument("--seconds", type=float, default=VideoConfig.seconds)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=VideoConfig.fps)
    ap.add_argument("--size", type=int, nargs=2, default=(VideoConfig.width, VideoConfig.height), metavar=("W", "H"))
    ap.add_argument("--people", type=int, default=VideoConfig.people, help="identities to sample (without --dataset)")
    ap.add_argument("--dataset", help="take identities from this SynthPEDES dir instead of sampling new ones")
    ap.add_argument("--split", default="test", help="split of --dataset to take identities from")
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default="standard",
                    help="hard: groups, crowds crossing, pillars, lighting drift, noise and JPEG compression")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.cameras < 1 or args.seconds <= 0 or args.fps < 1:
        print("error: --cameras, --seconds and --fps must be positive", file=sys.stderr)
        return 2
    cfg = VideoConfig(cameras=args.cameras, seconds=args.seconds, seed=args.seed, fps=args.fps,
                      width=args.size[0], height=args.size[1], people=args.people, difficulty=args.difficulty)
    try:
        identities = identities_from_dataset(args.dataset, args.split) if args.dataset else None
        if identities is not None and not identities:
            raise ValueError(f"{args.dataset}: no identities in split '{args.split}'")
        hard = bool(args.dataset) and dataset_difficulty(args.dataset) == "hard"
        table = generate(cfg, args.out, identities, progress=not args.quiet, hard_captions=hard)
    except (OSError, ValueError, KeyError, VideoWriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_statistics(table, Path(args.out)))
    return 0


def format_statistics(table: dict, out: Path) -> str:
    lines = [f"synthetic video -> {out}"]
    for cam, info in table["cameras"].items():
        gt = np.loadtxt(out / info["ground_truth"], delimiter=",", ndmin=2)
        tracks = [t for t in table["tracks"] if t["camera"] == cam]
        lines.append(f"{cam}: {info['frames']} frames @ {info['fps']} fps ({info['width']}x{info['height']}), "
                     f"{len(tracks)} tracks, {len(gt)} boxes, {int((gt[:, 8] < 0.9).sum()) if len(gt) else 0} "
                     f"partly hidden (visibility < 0.9)")
    cams_per_pid = {}
    for t in table["tracks"]:
        cams_per_pid.setdefault(t["pid"], set()).add(t["camera"])
    multi = sum(1 for c in cams_per_pid.values() if len(c) > 1)
    lines.append(f"identities: {len(cams_per_pid)} seen, {multi} in more than one camera")
    return "\n".join(lines)


def new_footage(src: Path, out: Path, n: int) -> Path:
    """`src` re-encoded with a 4x4 corner block whose grey level depends on `n` and the frame: new content
    with the same people (a gallery knows recordings by content, so a byte copy would add nothing). The
    block is far below a detector's smallest box.

    Args:
        src: a video OpenCV reads. out: the mp4 to write (its folder must exist). n: which variant.

    Returns:
        `out`.
    """
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    writer, i = None, 0
    while (got := cap.read())[0]:
        frame = got[1]
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
        frame[:4, :4] = (37 * n + 11 * i) % 256
        writer.write(frame)
        i += 1
    cap.release()
    if writer is not None:
        writer.release()
    return out


if __name__ == "__main__":
    sys.exit(main())

