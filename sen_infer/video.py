"""Video → person tracks: OpenCV decode, a detector, an IoU tracker, and a few good crops per track.

Detectors: "mog2" (background subtraction, for static cameras; the default), "hog" (OpenCV's HOG
people detector), or a MOT-format detections file (`frame,id,x,y,w,h,conf,...`, 1-based frames)
from any detector a user already runs. Tracks are embedded from a handful of large, sharp crops
spread over their lifetime rather than every frame.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import DetectionsError, IngestError, VideoReadError, require_utf8
from sen_infer.preprocess import is_regular_file

BOX = tuple[int, int, int, int]  # x, y, w, h


@dataclass
class Observation:
    frame: int  # 0-based frame index
    box: BOX
    quality: float
    crop: np.ndarray | None = None


@dataclass
class Track:
    id: int
    observations: list[Observation] = field(default_factory=list)
    last_frame: int = 0

    @property
    def box(self) -> BOX:
        return self.observations[-1].box


def iou(a: BOX, b: BOX) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = min(ax1, bx1) - max(a[0], b[0]), min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


class Mog2Detector:
    """Foreground blobs of a static camera that are person-shaped (taller than wide, big enough)."""

    def __init__(self, min_box: tuple[int, int], warmup: int = 5):
        self.sub = cv2.createBackgroundSubtractorMOG2(history=300, varThreshold=25, detectShadows=True)
        self.min_w, self.min_h = min_box
        self.warmup, self.seen = warmup, 0
        self.open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self.join = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 15))  # joins head, torso and legs

    def __call__(self, frame: np.ndarray, index: int) -> list[BOX]:
        fg = self.sub.apply(frame)
        self.seen += 1
        if self.seen <= self.warmup:
            return []
        mask = (fg > 200).astype(np.uint8) * 255  # shadows are 127
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.open)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.join)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes = []
        for x, y, w, h, area in stats[1:]:
            if w >= self.min_w and h >= self.min_h and h >= 1.2 * w and area >= 0.3 * w * h:
                boxes.append((int(x), int(y), int(w), int(h)))
        return boxes


class HogDetector:
    def __init__(self, min_box: tuple[int, int]):
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_w, self.min_h = min_box

    def __call__(self, frame: np.ndarray, index: int) -> list[BOX]:
        rects, weights = self.hog.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.05)
        return [tuple(int(v) for v in r) for r, wt in zip(rects, np.ravel(weights))
                if r[2] >= self.min_w and r[3] >= self.min_h and wt > 0.3]


class MotDetections:
    """Detections read from a MOT file; frames in the file are 1-based."""

    def __init__(self, path: str | Path, min_box: tuple[int, int]):
        self.by_frame: dict[int, list[BOX]] = {}
        rows = read_mot(path)
        for r in rows:
            box = (int(round(r[2])), int(round(r[3])), int(round(r[4])), int(round(r[5])))
            if box[2] >= min_box[0] and box[3] >= min_box[1]:
                self.by_frame.setdefault(int(r[0]) - 1, []).append(box)

    def __call__(self, frame: np.ndarray, index: int) -> list[BOX]:
        return self.by_frame.get(index, [])


def read_mot(path: str | Path) -> np.ndarray:
    """The rows of a MOT detections file as float64 [N, >=6], or DetectionsError naming the file."""
    path = str(path)
    require_utf8(path, "detections file name", DetectionsError)
    if not os.path.exists(path):
        raise DetectionsError(f"detections file {path} does not exist")
    if not is_regular_file(path):
        raise DetectionsError(f"detections file {path} is not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; an empty file is no detections
            rows = np.loadtxt(path, delimiter=",", ndmin=2, usecols=None)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DetectionsError(f"detections file {path} is not MOT rows (frame,id,x,y,w,h,...): "
                              f"{' '.join(str(e).split())[:200]}") from None
    if rows.size and rows.shape[1] < 6:
        raise DetectionsError(f"detections file {path}: MOT rows need at least frame,id,x,y,w,h "
                              f"(found {rows.shape[1]} columns)")
    if rows.size and not np.isfinite(rows[:, :6]).all():
        raise DetectionsError(f"detections file {path}: non-finite numbers in frame,id,x,y,w,h")
    if rows.size and (rows[:, 0] < 1).any():
        raise DetectionsError(f"detections file {path}: frame numbers are 1-based (found {rows[:, 0].min():g})")
    return rows


def make_detector(detector: str, min_box: tuple[int, int]):
    if detector == "mog2":
        return Mog2Detector(min_box)
    if detector == "hog":
        return HogDetector(min_box)
    if isinstance(detector, str) and detector.startswith("mot:"):
        return MotDetections(detector[4:], min_box)
    raise IngestError(f"unknown detector {detector!r} (mog2, hog or mot:PATH)")


def check_detector(detector: str) -> None:
    """IngestError / DetectionsError now, for a detector spec that would fail on every video."""
    make_detector(detector, (1, 1))


def _clip(box: BOX, width: int, height: int) -> BOX | None:
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(width, box[0] + box[2]), min(height, box[1] + box[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


def crop_quality(crop: np.ndarray, box: BOX, width: int, height: int) -> float:
    """Large, sharp and whole: area x Laplacian variance, penalised when cut by the frame border."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharp = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    x, y, w, h = box
    cut = x <= 1 or y <= 1 or x + w >= width - 1 or y + h >= height - 1
    return w * h * (1.0 + sharp) * (0.2 if cut else 1.0)


class IouTracker:
    """Greedy IoU association; a track ends after `max_age` processed frames without a match."""

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 8, candidates: int = 24):
        self.iou_threshold, self.max_age, self.candidates = iou_threshold, max_age, candidates
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self.next_id = 1

    def update(self, index: int, boxes: list[BOX], frame: np.ndarray) -> None:
        H, W = frame.shape[:2]
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.active) for bi, b in enumerate(boxes)),
                       reverse=True)
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            self._observe(self.active[ti], index, boxes[bi], frame, W, H)
        for bi, b in enumerate(boxes):
            if bi not in used_b:
                t = Track(self.next_id)
                self.next_id += 1
                self._observe(t, index, b, frame, W, H)
                self.active.append(t)
        still = []
        for t in self.active:
            (still if index - t.last_frame <= self.max_age else self.finished).append(t)
        self.active = still

    def _observe(self, t: Track, index: int, box: BOX, frame: np.ndarray, W: int, H: int) -> None:
        clipped = _clip(box, W, H)
        if clipped is None:
            return
        x, y, w, h = clipped
        crop = frame[y : y + h, x : x + w].copy()
        obs = Observation(index, clipped, crop_quality(crop, clipped, W, H), crop)
        t.observations.append(obs)
        t.last_frame = index
        kept = [o for o in t.observations if o.crop is not None]
        if len(kept) > self.candidates:  # keep memory bounded: drop the worst crop
            min(kept, key=lambda o: o.quality).crop = None

    def close(self) -> list[Track]:
        self.finished += self.active
        self.active = []
        return self.finished


def pick_crops(track: Track, n: int) -> list[Observation]:
    """Up to n crops, best quality first, at least a fair share of the track's life apart."""
    cands = sorted((o for o in track.observations if o.crop is not None), key=lambda o: -o.quality)
    if not cands:
        return []
    span = track.observations[-1].frame - track.observations[0].frame
    gap = span / (2 * n) if n > 1 else 0
    chosen: list[Observation] = []
    for o in cands:
        if all(abs(o.frame - c.frame) >= gap for c in chosen):
            chosen.append(o)
        if len(chosen) == n:
            break
    return chosen


@dataclass
class VideoTracks:
    """What one chunk of a video holds (the whole video when it is one chunk)."""
    tracks: list  # (Track, chosen crops)
    fps: float  # the container's stated rate (25 when it states none)
    frames: int  # frames decoded so far (the end of this chunk)
    expected: int  # frames the container announces (0 when unknown)
    times: np.ndarray  # seconds from the video's start, for frames [start, frames)
    notes: list[str] = field(default_factory=list)  # timing disagreements and the like, one line each
    start: int = 0  # first frame of this chunk
    final: bool = True  # the last chunk: decoding reached the end of what can be read

    @property
    def incomplete(self) -> bool:
        """Decoding stopped before the container's announced end (a truncated or damaged file, or one
        still being written). One frame of slack: containers often round their count."""
        return self.final and self.expected > 0 and self.frames < self.expected - 1

    def time(self, frame: int) -> float:
        return float(self.times[frame - self.start])


def frame_times(positions_ms: list[float], fps: float, notes: list[str], first: int = 0,
                origin_ms: float | None = None) -> np.ndarray:
    """Seconds from the video's start of frames first, first+1, ... The decoder's position
    (CAP_PROP_POS_MSEC, relative to frame 0's `origin_ms`) is the truth: real containers state rates
    their frames do not keep (a '50 fps' file with frames 40 ms apart). Falls back to frame / fps when
    the positions are missing or not increasing, and says so in `notes`."""
    pos = np.asarray(positions_ms, np.float64) / 1000.0
    by_rate = (first + np.arange(len(pos))) / fps
    origin = pos[0] if origin_ms is None and len(pos) else (origin_ms or 0.0) / 1000.0
    usable = len(pos) > 1 and np.isfinite(pos).all() and (np.diff(pos) > 0).all()
    if not usable:
        if len(pos) > 1:
            notes.append(f"decoder gives no usable frame times; timestamps are frame / {fps:g} fps")
        return by_rate
    pos = pos - origin
    span, stated = pos[-1] - pos[0], by_rate[-1] - by_rate[0]
    if stated > 0 and abs(span - stated) > 0.1 * stated:
        notes.append(f"container states {fps:g} fps but frames span {span:.1f} s, not {stated:.1f} s: "
                     f"timestamps follow the frames (about {(len(pos) - 1) / span:.3g} fps)")
    return pos


def open_video(path: str | Path):
    """(cv2.VideoCapture, stated fps, announced frame count) after the checks OpenCV does not make."""
    try:
        str(path).encode("utf-8")  # OpenCV crashes on names that are not UTF-8
    except UnicodeEncodeError:
        raise VideoReadError(f"video file name is not valid UTF-8: {os.fsencode(str(path))!r}") from None
    if not is_regular_file(path):  # a FIFO would block the decoder forever
        raise VideoReadError(f"{path} is not a regular file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoReadError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else 25.0
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return cap, fps, int(count) if math.isfinite(count) and count > 0 else 0


WARMUP_FRAMES = 150  # frames a chunk's background model sees before the chunk starts


def iter_chunks(path: str | Path, detector: str = "mog2", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                min_observations: int = 3, crops_per_track: int = 4, chunk_seconds: float | None = None,
                start_frame: int = 0, progress=None):
    """Yield the video's tracks chunk by chunk: every `chunk_seconds` of footage (at the container's stated
    rate; None: one chunk) the tracker is closed and its
    tracks handed over, so memory is bounded by a chunk, not by the video. A track crossing a chunk
    boundary becomes two tracks. With `start_frame` the frames before it are decoded but not tracked
    (the background model sees the last WARMUP_FRAMES of them): a resumed ingest adds nothing twice.

    Every chunk gets a background model of its own, started WARMUP_FRAMES before the chunk (the next
    one runs beside the current one for those frames). A chunk's people therefore depend only on its
    own frames and the WARMUP_FRAMES before it, never on where an earlier run was interrupted: a
    resumed ingest stores exactly the rows of an uninterrupted one."""
    det = make_detector(detector, min_box)  # a bad detections file is the caller's error, not the video's
    cap, fps, expected = open_video(path)
    chunk_frames = max(1, int(round(chunk_seconds * fps))) if chunk_seconds else None
    warm_from = max(0, start_frame - WARMUP_FRAMES)
    per_chunk = chunk_frames is not None and isinstance(det, Mog2Detector)
    upcoming: dict[int, Mog2Detector] = {}  # chunk start -> its background model, warming up

    def warm_next(index: int, frame) -> None:
        """Feed `frame` to the models of the chunks that start within WARMUP_FRAMES after it."""
        first = (index // chunk_frames + 1) * chunk_frames
        for b in range(first, index + WARMUP_FRAMES + 1, chunk_frames):
            if b > start_frame:
                upcoming.setdefault(b, make_detector(detector, min_box))(frame, index)

    def new_tracker():
        return IouTracker(max_age=max(4, 12 // max(1, stride)))

    def chunk(tracker, start, end, positions, final):
        notes: list[str] = []
        times = frame_times(positions, fps, notes, start, origin)
        tracks = [t for t in tracker.close() if len(t.observations) >= min_observations]
        return VideoTracks([(t, pick_crops(t, crops_per_track)) for t in tracks], fps, end, expected, times,
                           notes, start, final)

    tracker, index, origin, positions, start = new_tracker(), 0, None, [], start_frame
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            pos = cap.get(cv2.CAP_PROP_POS_MSEC)
            origin = pos if origin is None else origin
            if per_chunk and index >= warm_from:
                if index % chunk_frames == 0 and index in upcoming:
                    det = upcoming.pop(index)  # this chunk's own model, warmed on the frames before it
                warm_next(index, frame)
            if index >= start_frame:
                positions.append(pos)
                if isinstance(det, Mog2Detector) or index % stride == 0:
                    boxes = det(frame, index)  # the background model must see every frame
                    if index % stride == 0:
                        tracker.update(index, boxes, frame)
            elif index >= warm_from and isinstance(det, Mog2Detector):
                det(frame, index)  # background only: no tracks before the resume point
            index += 1
            if progress is not None:
                progress(1)
            if chunk_frames and index - start >= chunk_frames and index > start_frame:
                yield chunk(tracker, start, index, positions, False)
                tracker, positions, start = new_tracker(), [], index
    finally:
        cap.release()
    if index == 0:
        raise VideoReadError(f"no frame could be decoded from {path}")
    yield chunk(tracker, start, max(index, start), positions, True)


def extract_tracks(path: str | Path, detector: str = "mog2", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                   min_observations: int = 3, crops_per_track: int = 4, progress=None) -> VideoTracks:
    """The whole video as one chunk. Raises VideoReadError if it cannot be read."""
    return next(iter_chunks(path, detector, stride, min_box, min_observations, crops_per_track, None, 0, progress))
