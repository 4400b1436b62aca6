"""Trackers: detections of consecutive processed frames → person tracks, and the crops kept per track.

    iou     greedy IoU association with the last box (the original tracker; no motion model)
    motion  a constant-velocity Kalman filter per track and ByteTrack's two-stage association: boxes
            scoring >= 0.5 are matched first (IoU with the predicted box, optimal assignment), the
            tracks left over are matched to the low-scoring boxes; lost tracks are kept, predicted,
            for `max_age` processed frames, so a person hidden for a moment keeps their track

The assignment is `lap.lapjv` (the solver ByteTrack itself uses; one small compiled dependency, numpy
only); the Kalman filter is the 8-state one of SORT/ByteTrack, 40 lines of numpy, which no light,
maintained package offers on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

BOX = tuple[int, int, int, int]  # x, y, w, h
SIGNATURE = 128  # length of a colour signature: 16 hues x 4 saturations, upper and lower body
TRACKERS = ("iou", "motion")


@dataclass
class Observation:
    """One sighting of a tracked person: the box in one processed frame, the crop while it is among the
    track's best candidates (None once dropped), and how good a crop it is."""
    frame: int  # 0-based frame index
    box: BOX
    quality: float  # for ranking a track's crops: size x sharpness x `score`
    crop: np.ndarray | None = None
    covered: float = 0.0  # `covered_share`: how much another detection shares the box
    confidence: float = 1.0  # the detector's score for the box (1 for detectors without scores)
    score: float = 1.0  # `crop_score`: how surely the crop shows one whole person, in [0, 1]; stored per row
    look: np.ndarray | None = None  # `colour_signature` of the box


@dataclass
class Track:
    """One person followed through a chunk: its sightings in frame order (`id` is local to the tracker)."""
    id: int
    observations: list[Observation] = field(default_factory=list)
    last_frame: int = 0

    @property
    def box(self) -> BOX:
        """The last box seen."""
        return self.observations[-1].box


def iou(a, b) -> float:
    """IoU of two (x, y, w, h, ...) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = min(ax1, bx1) - max(a[0], b[0]), min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [N, >=4] with every box of `b` [M, >=4] (x, y, w, h)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = np.asarray(a, np.float64)[:, :4], np.asarray(b, np.float64)[:, :4]
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def colour_signature(frame: np.ndarray, box) -> np.ndarray:
    """A unit vector describing a person's colours: hue-saturation histograms of the upper and lower half of
    the box's middle (background at the sides left out), square-rooted so that the dot product of two
    signatures is their Bhattacharyya coefficient (1 = the same colours)."""
    H, W = frame.shape[:2]
    x, y, w, h = (float(v) for v in box[:4])
    x0, x1 = int(max(0, x + 0.2 * w)), int(min(W, x + 0.8 * w))
    parts = []
    for top, bottom in ((0.1, 0.5), (0.5, 0.9)):
        y0, y1 = int(max(0, y + top * h)), int(min(H, y + bottom * h))
        if x1 - x0 < 1 or y1 - y0 < 1:
            parts.append(np.full(64, 1 / 8.0, np.float32))
            continue
        hsv = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [16, 4], [0, 180, 0, 256]).ravel()
        parts.append(np.sqrt(hist / max(1.0, float(hist.sum()))))
    v = np.concatenate(parts)
    return v / max(1e-12, float(np.linalg.norm(v)))


def covered_share(box, others) -> float:
    """How much one of `others` shares `box` (0 when none overlaps): the larger of the share of `box`'s
    area it covers and the share of its own area inside `box` (someone walking behind a person is mostly
    inside their box, and in their crop, while covering little of it: on PETS that took the crops holding
    two people from 2.6 % to 0 %, on the synthetic hard set with perfect boxes from 13.8 % to 2.4 %)."""
    if not len(others):
        return 0.0
    x0, y0, w, h = (float(v) for v in box[:4])
    best = 0.0
    for o in others:
        iw = min(x0 + w, o[0] + o[2]) - max(x0, o[0])
        ih = min(y0 + h, o[1] + o[3]) - max(y0, o[1])
        if iw > 0 and ih > 0:
            best = max(best, iw * ih / max(1.0, min(w * h, float(o[2]) * float(o[3]))))
    return best


def clip_box(box, width: int, height: int) -> BOX | None:
    """`box` cut to the frame, as ints; None when less than 2 pixels wide or high are left (nothing to crop)."""
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(width, int(box[0]) + int(box[2])), min(height, int(box[1]) + int(box[3]))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


PERSON_ASPECT = (0.2, 0.75)  # width / height of a standing or walking person's box, arms and bags included


def crop_score(box: BOX, width: int, height: int, confidence: float = 1.0, covered: float = 0.0) -> float:
    """How surely a crop shows one whole person, in [0, 1], the product of: the detector's confidence; the
    box's shape (1 inside PERSON_ASPECT, falling to 0 at half and twice its bounds: a wide box is a group or
    a car, a thin one a fragment); 0.5 when the frame border cuts the box; (1 - covered)^2, covered being
    `covered_share` (a crop of two people matches neither)."""
    x, y, w, h = box
    aspect = w / max(1, h)
    low, high = PERSON_ASPECT
    shape = 1.0 if low <= aspect <= high else max(0.0, 2 * aspect / low - 1 if aspect < low else 2 - aspect / high)
    cut = x <= 1 or y <= 1 or x + w >= width - 1 or y + h >= height - 1
    whole = 0.5 if cut else 1.0
    return float(min(1.0, max(0.0, confidence)) * min(1.0, shape) * whole * (1.0 - min(1.0, covered)) ** 2)


def crop_quality(crop: np.ndarray, box: BOX, width: int, height: int, covered: float = 0.0,
                 confidence: float = 1.0) -> float:
    """For choosing a track's best crops: large and sharp (area x Laplacian variance) x `crop_score`."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharp = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    return box[2] * box[3] * (1.0 + sharp) * crop_score(box, width, height, confidence, covered)


class _CropKeeper:
    """What both trackers share: observations with crops, the worst crops dropped past `candidates`."""

    candidates: int

    def _observe(self, t: Track, index: int, box, frame: np.ndarray, others) -> None:
        H, W = frame.shape[:2]
        clipped = clip_box(box, W, H)
        if clipped is None:
            return
        x, y, w, h = clipped
        crop = frame[y : y + h, x : x + w].copy()
        covered = covered_share(clipped, others)
        confidence = float(box[4]) if len(box) >= 5 else 1.0
        obs = Observation(index, clipped, crop_quality(crop, clipped, W, H, covered, confidence), crop, covered,
                          confidence, crop_score(clipped, W, H, confidence, covered), colour_signature(frame, clipped))
        t.observations.append(obs)
        t.last_frame = index
        kept = [o for o in t.observations if o.crop is not None]
        if len(kept) > self.candidates:  # keep memory bounded: drop the worst crop
            min(kept, key=lambda o: o.quality).crop = None


class IouTracker(_CropKeeper):
    """Greedy IoU association; a track ends after `max_age` processed frames without a match."""

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 8, candidates: int = 24, min_score: float = 0.5):
        self.iou_threshold, self.max_age, self.candidates = iou_threshold, max_age, candidates
        self.min_score = min_score
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self.next_id = 1

    def update(self, index: int, boxes, frame: np.ndarray) -> None:
        """Associate the boxes of processed frame `index` with the tracks, start a track for each box left,
        and end tracks unmatched for more than `max_age` frames. Boxes scoring under `min_score` are ignored."""
        boxes = [b for b in boxes if len(b) < 5 or b[4] >= self.min_score]
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
            self._observe(self.active[ti], index, boxes[bi], frame, boxes[:bi] + boxes[bi + 1 :])
        for bi, b in enumerate(boxes):
            if bi not in used_b:
                t = Track(self.next_id)
                self.next_id += 1
                self._observe(t, index, b, frame, boxes[:bi] + boxes[bi + 1 :])
                self.active.append(t)
        still = []
        for t in self.active:
            (still if index - t.last_frame <= self.max_age else self.finished).append(t)
        self.active = still

    def close(self) -> list[Track]:
        """End every track (the chunk or video is over) and return all of them, finished ones first."""
        self.finished += self.active
        self.active = []
        return self.finished


class KalmanBox:
    """Constant-velocity Kalman filter on (cx, cy, aspect w/h, h) and their velocities, with noise
    proportional to the box height (SORT / ByteTrack's formulation)."""

    POS, VEL = 1.0 / 20, 1.0 / 160

    def __init__(self, box):
        x, y, w, h = (float(v) for v in box[:4])
        self.mean = np.array([x + w / 2, y + h / 2, w / max(h, 1e-6), h, 0, 0, 0, 0], np.float64)
        std = [2 * self.POS * h, 2 * self.POS * h, 1e-2, 2 * self.POS * h,
               10 * self.VEL * h, 10 * self.VEL * h, 1e-5, 10 * self.VEL * h]
        self.cov = np.diag(np.square(std))
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def predict(self) -> None:
        """Move the state one processed frame ahead (constant velocity); uncertainty grows."""
        h = self.mean[3]
        std = [self.POS * h, self.POS * h, 1e-2, self.POS * h, self.VEL * h, self.VEL * h, 1e-5, self.VEL * h]
        self.mean = self.F @ self.mean
        self.cov = self.F @ self.cov @ self.F.T + np.diag(np.square(std))

    def update(self, box) -> None:
        """Correct the state with a matched (x, y, w, h) box."""
        x, y, w, h = (float(v) for v in box[:4])
        z = np.array([x + w / 2, y + h / 2, w / max(h, 1e-6), h])
        r = np.diag(np.square([self.POS * self.mean[3], self.POS * self.mean[3], 1e-1, self.POS * self.mean[3]]))
        s = self.H @ self.cov @ self.H.T + r
        gain = np.linalg.solve(s, self.H @ self.cov).T
        self.mean = self.mean + gain @ (z - self.H @ self.mean)
        self.cov = self.cov - gain @ s @ gain.T

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The estimated (x, y, w, h), at least one pixel wide and high."""
        cx, cy, a, h = self.mean[:4]
        h = max(h, 1.0)
        w = max(a * h, 1.0)
        return cx - w / 2, cy - h / 2, w, h


def _assign(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs (row, col) with cost <= limit."""
    if cost.size == 0:
        return []
    import lap

    _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    return [(i, int(j)) for i, j in enumerate(x) if j >= 0]


class MotionTracker(_CropKeeper):
    """Kalman prediction + two-stage association (ByteTrack). A track is born from an unmatched box
    scoring >= `new_score` and confirmed by a second match; unconfirmed tracks that miss are dropped;
    confirmed ones survive `max_age` processed frames unmatched, coasting on their prediction."""

    def __init__(self, max_age: int = 15, candidates: int = 24, high: float = 0.5, low: float = 0.1,
                 new_score: float = 0.6, first_iou: float = 0.2, second_iou: float = 0.5, confirm: int = 2,
                 appearance: float = 0.5, app_gate: float = 0.5, app_momentum: float = 0.9):
        self.max_age, self.candidates = max_age, candidates
        self.appearance, self.app_gate, self.app_momentum = appearance, app_gate, app_momentum
        self.looks: dict[int, np.ndarray] = {}
        self.high, self.low, self.new_score = high, low, new_score
        self.first_iou, self.second_iou, self.confirm = first_iou, second_iou, confirm
        self.tracks: list[tuple[Track, KalmanBox, list]] = []  # (track, filter, [hits, misses])
        self.finished: list[Track] = []
        self.next_id = 1

    def update(self, index: int, boxes, frame: np.ndarray) -> None:
        """Predict every track to processed frame `index`, match the boxes in two stages (confident, then
        weak), keep each matched track's crop, age the others, and start tracks from confident boxes left."""
        dets = [tuple(b) if len(b) >= 5 else (*b, 1.0) for b in boxes]
        dets = [d for d in dets if d[4] >= self.low]
        for _, kf, _ in self.tracks:
            kf.predict()
        high = [i for i, d in enumerate(dets) if d[4] >= self.high]
        low = [i for i, d in enumerate(dets) if d[4] < self.high]
        predicted = np.array([kf.box for _, kf, _ in self.tracks]).reshape(-1, 4)
        det_boxes = np.array([d[:4] for d in dets], np.float64).reshape(-1, 4)
        matched: dict[int, int] = {}
        # stage 1: every track against the confident boxes
        ious = iou_matrix(predicted, det_boxes[high])
        cost, limit = 1.0 - ious, 1.0 - self.first_iou
        feats = np.zeros((len(dets), SIGNATURE))
        if self.appearance:
            feats = np.array([colour_signature(frame, d) for d in dets]).reshape(len(dets), SIGNATURE)
            looks = np.array([self.looks[t.id] for t, _, _ in self.tracks]).reshape(len(self.tracks), SIGNATURE)
            apart = 1.0 - np.clip(looks @ feats[high].T, 0, 1) if len(high) else np.zeros((len(self.tracks), 0))
            gated = (apart > self.app_gate) | (cost > limit)
            cost = cost + self.appearance * apart
            limit = limit + self.appearance * self.app_gate
            cost[gated] = limit + 1.0
        for ti, j in _assign(cost, limit):
            matched[ti] = high[j]
        # stage 2: the tracks left against the weak boxes (a person partly hidden, a blurred frame)
        rest = [ti for ti in range(len(self.tracks)) if ti not in matched]
        if rest and low:
            ious = iou_matrix(predicted[rest], det_boxes[low])
            for r, j in _assign(1.0 - ious, 1.0 - self.second_iou):
                matched[rest[r]] = low[j]
        all_boxes = [d[:4] for d in dets]
        # people the detector lost this frame, most often merged into a neighbour's box: their predicted
        # boxes count as others when judging whether a crop shows one person alone
        coasting = [tuple(predicted[ti]) for ti, (_, _, state) in enumerate(self.tracks)
                    if ti not in matched and state[0] >= self.confirm]
        kept = []
        for ti, (track, kf, state) in enumerate(self.tracks):
            if ti in matched:
                d = dets[matched[ti]]
                kf.update(d)
                state[0], state[1] = state[0] + 1, 0
                if self.appearance:
                    f = feats[matched[ti]]
                    m = self.app_momentum
                    mixed = m * self.looks[track.id] + (1 - m) * f
                    self.looks[track.id] = mixed / max(1e-12, float(np.linalg.norm(mixed)))
                others = [b for k, b in enumerate(all_boxes) if k != matched[ti]] + coasting
                self._observe(track, index, d, frame, others)
                kept.append((track, kf, state))
            else:
                state[1] += 1
                if state[0] >= self.confirm and state[1] <= self.max_age:
                    kept.append((track, kf, state))
                elif state[0] >= self.confirm:
                    self.finished.append(track)
        used = set(matched.values())
        for i in high:
            if i not in used and dets[i][4] >= self.new_score:
                t = Track(self.next_id)
                self.next_id += 1
                self._observe(t, index, dets[i], frame, [b for k, b in enumerate(all_boxes) if k != i])
                kept.append((t, KalmanBox(dets[i]), [1, 0]))
                if self.appearance:
                    self.looks[t.id] = feats[i]
        self.tracks = kept

    def close(self) -> list[Track]:
        """End every track and return the confirmed ones (unconfirmed tracks are dropped)."""
        self.finished += [t for t, _, state in self.tracks if state[0] >= self.confirm]
        self.tracks = []
        return self.finished


# how long a track outlives its last match, in seconds of footage (what the per-frame ages of the
# trackers were tuned as on 15 fps footage: 12 and 30 frames), and the fewest processed frames it is
IOU_MAX_AGE_S, IOU_MIN_AGE = 0.8, 4
MOTION_MAX_AGE_S, MOTION_MIN_AGE = 2.0, 6


def make_tracker(kind: str, stride: int, fps: float = 15.0):
    """A tracker for processed frames `stride` apart in footage of `fps` frames per second: its parameters
    are set in seconds (`IOU_MAX_AGE_S`, `MOTION_MAX_AGE_S`) and turned into processed frames here, so a
    7 fps and a 25 fps camera keep a hidden person's track for the same time.

    Raises:
        IngestError: an unknown tracker name.
    """
    per_second = max(fps, 1e-3) / max(1, stride)  # processed frames per second of footage
    if kind == "iou":
        return IouTracker(max_age=max(IOU_MIN_AGE, int(IOU_MAX_AGE_S * per_second)))
    if kind == "motion":
        return MotionTracker(max_age=max(MOTION_MIN_AGE, int(MOTION_MAX_AGE_S * per_second)))
    from sen_infer.errors import IngestError

    raise IngestError(f"unknown tracker {kind!r} ({', '.join(TRACKERS)})")


WEAK = 0.5  # detector scores under this are the motion tracker's second-stage boxes
ODD_LOOK = 0.08  # a crop whose colours are this much less like the track's mean than its median crop is


def _likeness(track: Track) -> dict[int, float]:
    """Per observation (by id), how much more than ODD_LOOK below the track's median its colours' likeness
    to the track's mean colours lies (negative: an odd crop). Something in front of the person (a sign, a
    pole, a parked car) changes the colours of the crops it spoils: on PETS the crops behind a road sign
    were 0.71-0.80 like their track's mean, where the track's median was 0.90."""
    looks = [o for o in track.observations if o.look is not None]
    if len(looks) < 3:
        return {}
    matrix = np.array([o.look for o in looks])
    mean = matrix.mean(axis=0)
    mean /= max(1e-12, float(np.linalg.norm(mean)))
    sims = matrix @ mean
    cut = float(np.median(sims)) - ODD_LOOK
    return {id(o): float(v - cut) for o, v in zip(looks, sims)}
MIN_CROP_SCORE = 0.2  # crops scoring less (`crop_score`) are never stored: fragments, groups, boxes on nobody


def pick_crops(track: Track, n: int) -> list[Observation]:
    """Up to n crops, best quality first, at least a fair share of the track's life apart.

    A crop should show this person, whole and alone: boxes much wider than the track's usual shape (width /
    height over 1.25 x its median: the detector merged them with someone beside them), a third covered by
    another person's box, or scored under WEAK by the detector (a box between two people, a fragment: the
    second association stage keeps the track on them, the gallery should not), or whose colours are odd
    for the track (`_likeness`: scenery in front of the person) are used only when the track has no other
    crop. Crops under MIN_CROP_SCORE are never chosen: a track with only such crops
    stores nothing."""
    usual = float(np.median([o.box[2] / max(1, o.box[3]) for o in track.observations])) if track.observations else 0
    likeness = _likeness(track)

    def crowded(o: Observation) -> bool:
        return (o.box[2] / max(1, o.box[3]) > 1.25 * usual or o.covered > 1 / 3 or o.confidence < WEAK
                or likeness.get(id(o), 1.0) < 0)

    cands = sorted((o for o in track.observations if o.crop is not None and o.score >= MIN_CROP_SCORE),
                   key=lambda o: (crowded(o), -o.quality))
    if not cands:
        return []
    if not crowded(cands[0]):
        cands = [o for o in cands if not crowded(o)]
    span = track.observations[-1].frame - track.observations[0].frame
    gap = span / (2 * n) if n > 1 else 0
    chosen: list[Observation] = []
    for o in cands:
        if all(abs(o.frame - c.frame) >= gap for c in chosen):
            chosen.append(o)
        if len(chosen) == n:
            break
    return chosen
