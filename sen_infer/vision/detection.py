"""Person detectors for video ingest. Each is a callable `(frame, index) -> [(x, y, w, h, score), ...]`.

    default          `default_detector()`: $SEN_DETECTOR when set, else ssdlite where it is installed,
                     else mog2-split (with one line on stderr saying so and why)
    ssdlite[:RxC]    the installed neural person detector (SSDLite MobileNetV2), on the whole frame and
                     RxC overlapping tiles (default: `auto_grid` of the frame size; 1x1: whole frame only)

    mog2             background subtraction for static cameras; person-shaped foreground blobs
    mog2-split       the same blobs, with groups split at the dips between heads and fragments joined
    hog              OpenCV's HOG + linear SVM people detector
    mot:PATH         detections a user's own detector wrote in MOT format
    onnx:PATH        a neural person detector exported to ONNX (YOLOv8/YOLO11, YOLOX or RT-DETR output;
                     onnx-yolov8:, onnx-yolox:, onnx-rtdetr: name the format where it is ambiguous)

Scores lie in [0, 1]. The motion tracker associates high-scoring boxes first and low ones second
(ByteTrack); the IoU tracker uses only boxes scoring at least 0.5.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import DetectionsError, IngestError, require_utf8
from sen_infer.engine.preprocess import is_regular_file

DET = tuple  # (x, y, w, h, score)
DEFAULT = "default"
ENV = "SEN_DETECTOR"  # a deployment's (or a test run's) own default detector spec
FALLBACK = "mog2-split"  # the best detector without the neural one (benchmarks/results/tracking.md)
_told: list[str] = []


def default_detector() -> str:
    """The detector spec `default` stands for: $SEN_DETECTOR when set; else "ssdlite" where its package is
    installed; else FALLBACK, saying so once per process on stderr (one line, with the reason).

    Returns:
        A detector spec for `make_detector`.
    """
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        return chosen
    from sen_infer.errors import DetectorUnavailable
    from sen_infer.vision.ssdlite import graph_path

    try:
        graph = graph_path()
        if not graph.is_file():
            raise DetectorUnavailable(f"{graph}: the person detector's graph is missing (reinstall its package)")
        return "ssdlite"
    except DetectorUnavailable as e:
        if not _told:
            _told.append(str(e))
            import sys

            print(f"person detector: {FALLBACK} (background subtraction), because {e}", file=sys.stderr)
        return FALLBACK
SPLIT_AT = 1.0  # blobs wider than this many person widths are looked at for several heads
ONNX_FORMATS = ("yolov8", "yolox", "rtdetr")


class Mog2Detector:
    """Foreground blobs of a static camera that are person-shaped (taller than wide, big enough)."""

    needs_every_frame = True  # the background model must see every frame, tracked or not

    def __init__(self, min_box: tuple[int, int], warmup: int = 5):
        self.sub = cv2.createBackgroundSubtractorMOG2(history=300, varThreshold=25, detectShadows=True)
        self.min_w, self.min_h = min_box
        self.warmup, self.seen = warmup, 0
        self.open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self.join = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 15))  # joins head, torso and legs

    def foreground(self, frame: np.ndarray) -> np.ndarray | None:
        """The cleaned foreground mask (uint8 0/255), or None while the model warms up."""
        fg = self.sub.apply(frame)
        self.seen += 1
        if self.seen <= self.warmup:
            return None
        mask = (fg > 200).astype(np.uint8) * 255  # shadows are 127
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.open)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.join)

    def __call__(self, frame: np.ndarray, index: int) -> list[DET]:
        mask = self.foreground(frame)
        if mask is None:
            return []
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes = []
        for x, y, w, h, area in stats[1:]:
            if w >= self.min_w and h >= self.min_h and h >= 1.2 * w and area >= 0.3 * w * h:
                boxes.append((int(x), int(y), int(w), int(h), 1.0))
        return boxes


class Mog2SplitDetector(Mog2Detector):
    """MOG2 blobs made into people: fragments of one person (stacked, overlapping in x) are joined, and a
    blob wider than one person is cut at the dips of its top contour between heads.

    The top contour is each column's highest foreground pixel: a group walking side by side shows one
    peak per head with the shoulders between, even where their bodies overlap and the column counts
    have no gap. Parts too narrow to be a person are not cut off."""

    def __init__(self, min_box: tuple[int, int], warmup: int = 5, person_aspect: float = 0.3):
        super().__init__(min_box, warmup)
        self.person_aspect = person_aspect  # a person's width / height, arms included

    def __call__(self, frame: np.ndarray, index: int) -> list[DET]:
        mask = self.foreground(frame)
        return [] if mask is None else people_in_mask(mask, (self.min_w, self.min_h), self.person_aspect)


def join_fragments(boxes: list[tuple[int, int, int, int]], gap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """Boxes stacked vertically that overlap by half the narrower width, with a vertical gap under
    `gap` x the taller height, merged until nothing more merges (a head cut from its body, legs
    cut by a bench)."""
    boxes = [tuple(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlap_x = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
                gap_y = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])
                if overlap_x >= 0.5 * min(a[2], b[2]) and gap_y <= gap * max(a[3], b[3]):
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    boxes[i] = (x0, y0, x1 - x0, y1 - y0)
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def head_cuts(top: np.ndarray, height: int, min_width: int, rise: float = 0.03) -> list[int]:
    """Columns at which to cut a blob, from its top contour `top` (row of the highest foreground pixel
    per column, large = low): one cut at the deepest dip between each pair of neighbouring heads.

    A head is a local top at least `rise` x the blob height above the dip on each side (3 %: chosen on
    the synthetic videos, where 8 % missed the lower head of a person walking behind); neighbouring
    cuts are at least `min_width` apart and from the blob's ends."""
    w = len(top)
    if w < 2 * min_width:
        return []
    k = max(1, int(round(0.04 * height)) | 1)
    smooth = np.convolve(np.pad(top.astype(np.float64), k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    rise = rise * height
    heads = []
    for c in range(w):
        lo, hi = max(0, c - min_width // 2), min(w, c + min_width // 2 + 1)
        if smooth[c] <= smooth[lo:hi].min() + 1e-9 and (not heads or c - heads[-1] >= min_width):
            heads.append(c)
    cuts = []
    for a, b in zip(heads, heads[1:]):
        dip = a + int(np.argmax(smooth[a : b + 1]))
        if (smooth[dip] - smooth[a] >= rise and smooth[dip] - smooth[b] >= rise and
                dip - (cuts[-1] if cuts else 0) >= min_width and w - dip >= min_width):
            cuts.append(dip)
    return cuts


def people_in_mask(mask: np.ndarray, min_box: tuple[int, int], person_aspect: float = 0.3) -> list[DET]:
    """Person boxes in a foreground mask: components joined (`join_fragments`), then each one wider than
    a person cut at the dips between heads (`head_cuts`), each part shrunk to its own pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_w, min_h = min_box
    parts = [(int(x), int(y), int(w), int(h)) for x, y, w, h, area in stats[1:] if area >= 0.3 * min_w * min_h / 4]
    out = []
    fg = mask > 0
    for x, y, w, h in join_fragments(parts):
        region = fg[y : y + h, x : x + w]
        pieces = [(0, w)]
        if w > SPLIT_AT * person_aspect * h:
            has = region.any(axis=0)
            top = np.where(has, region.argmax(axis=0), h)
            cuts = head_cuts(top, h, max(2, int(0.5 * person_aspect * h)))
            bounds = [0] + cuts + [w]
            pieces = list(zip(bounds, bounds[1:]))
        for c0, c1 in pieces:
            sub = region[:, c0:c1]
            rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
            if not len(rows):
                continue
            bx, by = x + c0 + int(cols[0]), y + int(rows[0])
            bw, bh = int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
            fill = float(sub.sum()) / max(1, bw * bh)
            if bw >= min_w and bh >= min_h and bh >= 1.2 * bw and fill >= 0.3:
                out.append((bx, by, bw, bh, 1.0))
            elif bw >= min_w // 2 and bh >= min_h // 2 and fill >= 0.2:
                out.append((bx, by, bw, bh, 0.3))  # a weak candidate: only the motion tracker's second stage
    return out


class HogDetector:
    """OpenCV's HOG + linear SVM people detector: needs no background model, so it also works where the
    camera moves; people smaller than its 64 x 128 window are missed. SVM weights become scores in (0, 1)."""

    def __init__(self, min_box: tuple[int, int]):
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_w, self.min_h = min_box

    def __call__(self, frame: np.ndarray, index: int) -> list[DET]:
        rects, weights = self.hog.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.05)
        out = []
        for r, wt in zip(rects, np.ravel(weights)):
            if r[2] >= self.min_w and r[3] >= self.min_h and wt > 0.3:
                out.append((*(int(v) for v in r), float(1.0 / (1.0 + math.exp(-2.0 * (wt - 0.5))))))
        return out


class MotDetections:
    """Detections read from a MOT file; frames in the file are 1-based; the conf column is the score
    (1 where it is missing or -1)."""

    def __init__(self, path: str | Path, min_box: tuple[int, int]):
        self.by_frame: dict[int, list[DET]] = {}
        rows = read_mot(path)
        for r in rows:
            box = (int(round(r[2])), int(round(r[3])), int(round(r[4])), int(round(r[5])))
            score = float(r[6]) if len(r) > 6 and 0 <= r[6] <= 1 else 1.0
            if box[2] >= min_box[0] and box[3] >= min_box[1]:
                self.by_frame.setdefault(int(r[0]) - 1, []).append((*box, score))

    def __call__(self, frame: np.ndarray, index: int) -> list[DET]:
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


class OnnxDetector:
    """A person detector exported to ONNX, run by onnxruntime (CUDA or TensorRT providers where present).

    Output formats (batch 1):
      yolov8  [1, 4+C, N]  cx, cy, w, h in input pixels, then C class scores (YOLOv8/YOLO11 exports)
      yolox   [1, N, 5+C]  cx, cy, w, h in input pixels, objectness, C class scores (decoded export)
      rtdetr  [1, N, 4+C]  cx, cy, w, h normalised to [0, 1], C class scores (no NMS needed)
    YOLO inputs are letterboxed (aspect kept, grey 114 padding), RT-DETR inputs stretched, both RGB / 255.
    Boxes of class `person_class` scoring at least `min_score` are kept, then NMS at `nms_iou`."""

    def __init__(self, path: str | Path, fmt: str = "auto", min_box: tuple[int, int] = (1, 1),
                 person_class: int = 0, min_score: float = 0.1, nms_iou: float = 0.45, providers=None):
        import onnxruntime as ort

        path = str(path)
        if fmt not in ("auto",) + ONNX_FORMATS:
            raise DetectionsError(f"unknown detector output format {fmt!r} (auto, {', '.join(ONNX_FORMATS)})")
        require_utf8(path, "detector model file name", DetectionsError)
        if not is_regular_file(path):
            raise DetectionsError(f"detector model {path} does not exist or is not a regular file")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        chosen = [p for p in (providers or ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider"]) if p in available]
        try:
            self.session = ort.InferenceSession(path, opts, providers=chosen)
        except Exception as e:
            raise DetectionsError(f"detector model {path}: onnxruntime cannot load it "
                                  f"({' '.join(str(e).split())[:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise DetectionsError(f"detector model {path}: expected one image input, found {len(inputs)}")
        self.input = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise DetectionsError(f"detector model {path}: input {self.input} is {shape}, not [1, 3, H, W]")
        self.size = tuple(int(s) if isinstance(s, int) else 640 for s in shape[2:])  # (H, W); 640 if dynamic
        self.path, self.fmt = path, fmt
        self.min_w, self.min_h = min_box
        self.person_class, self.min_score, self.nms_iou = person_class, min_score, nms_iou

    def _format(self, out: np.ndarray) -> str:
        if self.fmt != "auto":
            return self.fmt
        if out.ndim == 3 and out.shape[2] == 85:
            return "yolox"  # COCO: 4 + objectness + 80 per row
        if out.ndim == 3 and out.shape[2] == 84:
            return "rtdetr"  # COCO: 4 + 80 per row, a few hundred queries
        if out.ndim == 3 and out.shape[1] < out.shape[2]:
            return "yolov8"  # [1, 4 + C, thousands of anchors]
        raise DetectionsError(f"detector model {self.path}: cannot tell the format of output {list(out.shape)}; "
                              f"name it: onnx-yolov8:, onnx-yolox: or onnx-rtdetr:")

    def preprocess(self, frame: np.ndarray, stretch: bool) -> tuple[np.ndarray, float, float, float, float]:
        """(input [1, 3, H, W], x scale, y scale, x pad, y pad) for a BGR frame."""
        H, W = self.size
        h, w = frame.shape[:2]
        if stretch:
            img, sx, sy, px, py = cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR), W / w, H / h, 0.0, 0.0
        else:
            s = min(W / w, H / h)
            nw, nh = int(round(w * s)), int(round(h * s))
            px, py = (W - nw) / 2, (H - nh) / 2
            img = np.full((H, W, 3), 114, np.uint8)
            top, left = int(round(py - 0.1)), int(round(px - 0.1))
            img[top : top + nh, left : left + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
            sx = sy = s
            px, py = float(left), float(top)
        x = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(x), sx, sy, px, py

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.session.run(None, {self.input: x})[0], np.float32)
        except Exception as e:
            raise DetectionsError(f"detector model {self.path}: inference failed "
                                  f"({' '.join(str(e).split())[:200]})") from None

    def __call__(self, frame: np.ndarray, index: int) -> list[DET]:
        x, sx, sy, px, py = self.preprocess(frame, stretch=self.fmt == "rtdetr")
        out = self._run(x)
        if self.fmt == "auto":  # told by the first output's shape, then fixed
            self.fmt = self._format(out)
            if self.fmt == "rtdetr":  # RT-DETR takes a stretched input, not a letterboxed one
                x, sx, sy, px, py = self.preprocess(frame, stretch=True)
                out = self._run(x)
        return self.decode(out, self.fmt, frame.shape[:2], sx, sy, px, py)

    def decode(self, out: np.ndarray, fmt: str, frame_hw, sx, sy, px, py) -> list[DET]:
        """Frame-pixel boxes of the person class from one raw output."""
        rows = out[0].T if fmt == "yolov8" else out[0]
        if rows.ndim != 2 or rows.shape[1] < (6 if fmt == "yolox" else 5):
            raise DetectionsError(f"detector model {self.path}: output {list(out.shape)} is not {fmt}")
        if fmt == "yolox":
            scores = rows[:, 4:5] * rows[:, 5:]
        else:
            scores = rows[:, 4:]
        if self.person_class >= scores.shape[1]:
            raise DetectionsError(f"detector model {self.path}: person class {self.person_class} but only "
                                  f"{scores.shape[1]} classes")
        score = scores[:, self.person_class]
        keep = score >= self.min_score
        cx, cy, bw, bh = (rows[keep, i].astype(np.float64) for i in range(4))
        score = score[keep].astype(np.float64)
        H, W = frame_hw
        if fmt == "rtdetr":  # normalised to the (stretched) input, so to the frame
            cx, bw, cy, bh = cx * W, bw * W, cy * H, bh * H
        else:
            cx, cy, bw, bh = (cx - px) / sx, (cy - py) / sy, bw / sx, bh / sy
        x0, y0 = np.clip(cx - bw / 2, 0, W), np.clip(cy - bh / 2, 0, H)
        x1, y1 = np.clip(cx + bw / 2, 0, W), np.clip(cy + bh / 2, 0, H)
        boxes = [(float(a), float(b), float(c - a), float(d - b)) for a, b, c, d in zip(x0, y0, x1, y1)]
        order = list(range(len(boxes)))
        if fmt != "rtdetr" and boxes:
            order = [int(i) for i in np.ravel(cv2.dnn.NMSBoxes(boxes, score.tolist(), self.min_score, self.nms_iou))]
        out_boxes = []
        for i in sorted(order, key=lambda i: -score[i]):
            x, y, w, h = (int(round(v)) for v in boxes[i])
            if w >= self.min_w and h >= self.min_h:
                out_boxes.append((x, y, w, h, float(score[i])))
        return out_boxes


class SsdLiteDetector:
    """The neural person detector (`sen_infer.vision.ssdlite`) behind the detectors' call: boxes of at least
    `min_box` (w, h), in frame pixels, with their scores. DetectorUnavailable when it is not installed.

    Args:
        min_box: smallest (w, h) kept.
        min_score: lowest score kept: 0.1, so that the motion tracker's second stage (ByteTrack) can keep a
            person through frames where they are half hidden; new tracks need 0.6.
        grid: (rows, columns) of tiles besides the whole frame; None picks `auto_grid` of each frame's size,
            (1, 1) runs the whole frame alone.
        threads: onnxruntime's threads.
    """

    def __init__(self, min_box: tuple[int, int], min_score: float = 0.1, grid: tuple[int, int] | None = None,
                 threads: int | None = None):
        from sen_infer.vision.ssdlite import SsdLite

        self.model = SsdLite(min_score=min_score, threads=threads)
        self.min_box, self.grid = min_box, grid

    def __call__(self, frame: np.ndarray, index: int) -> list[DET]:
        """People in `frame` (its number is not needed: each frame is seen on its own)."""
        grid = self.grid or auto_grid(frame.shape[:2])
        return [(x, y, w, h, s) for x, y, w, h, s in self.model.detect(frame, None if grid == (1, 1) else grid)
                if w >= self.min_box[0] and h >= self.min_box[1]]


TILE_SIDE = 375  # px: the most a tile may have per side, 1.25 x the network's 300 (people 35 px wide stay visible)
MAX_GRID = (2, 3)  # the most tiles chosen automatically (7 views a frame); name ssdlite:RxC for more


def auto_grid(frame_hw: tuple[int, int], overlap: float = 0.25) -> tuple[int, int]:
    """The fewest tiles (rows, columns), up to MAX_GRID, whose sides are at most TILE_SIDE: 2x2 for
    640x480, 2x3 for 768x576, 1x1 for frames that already are about the network's size."""
    def count(side: int, most: int) -> int:
        n = 1
        while n < most and side / (n - (n - 1) * overlap) > TILE_SIDE:
            n += 1
        return n

    return count(frame_hw[0], MAX_GRID[0]), count(frame_hw[1], MAX_GRID[1])


def make_detector(detector: str, min_box: tuple[int, int]):
    """The detector a spec names ("ssdlite", "mog2", "mog2-split", "hog", "mot:PATH", "onnx[-FORMAT]:PATH"), keeping
    boxes of at least `min_box` (w, h). IngestError for an unknown spec, DetectionsError for a bad file."""
    if detector in (None, DEFAULT):
        detector = default_detector()
    if detector == "mog2":
        return Mog2Detector(min_box)
    if detector == "mog2-split":
        return Mog2SplitDetector(min_box)
    if detector == "hog":
        return HogDetector(min_box)
    if detector == "ssdlite" or (isinstance(detector, str) and detector.startswith("ssdlite:")):
        grid = detector.partition(":")[2]
        rows, _, cols = grid.partition("x")
        if grid and not (rows.isdigit() and cols.isdigit() and 1 <= int(rows) <= 4 and 1 <= int(cols) <= 4):
            raise IngestError(f"detector {detector!r}: write ssdlite:RxC with 1 to 4 rows and columns of tiles")
        return SsdLiteDetector(min_box, grid=(int(rows), int(cols)) if grid else None)  # None: auto_grid
    if isinstance(detector, str) and detector.startswith("mot:"):
        return MotDetections(detector[4:], min_box)
    if isinstance(detector, str) and detector.startswith("onnx"):
        kind, _, path = detector.partition(":")
        fmt = kind[5:] if kind.startswith("onnx-") else "auto"
        if kind != "onnx" and fmt not in ONNX_FORMATS or not path:
            raise IngestError(f"unknown detector {detector!r} (onnx:PATH, or onnx-yolov8:, onnx-yolox:, onnx-rtdetr:)")
        return OnnxDetector(path, fmt, min_box)
    raise IngestError(f"unknown detector {detector!r} (ssdlite, mog2, mog2-split, hog, mot:PATH or onnx:PATH)")


def check_detector(detector: str) -> None:
    """IngestError / DetectionsError now, for a detector spec that would fail on every video."""
    make_detector(detector, (1, 1))
