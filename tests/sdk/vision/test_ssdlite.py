"""The neural person detector: its anchors, decoding and outputs against the original TensorFlow graph's
(recorded once by scripts/ssdlite_reference.py), and its pinning."""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import ROOT, run_cli
from sen_infer.errors import DetectorUnavailable
from sen_infer.vision import ssdlite
from sen_infer.vision.detection import make_detector

DATA = Path(__file__).resolve().parent / "data"
PETS = ROOT.parent / "shared" / "data" / "realmot" / "pets-s3mf1"
FEATURE_MAPS = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]  # of the 300 x 300 input


def test_anchors_equal_the_graphs_own():
    """The graph computes its 1,917 anchors in float32; ours are float64: equal to float32 rounding."""
    a = ssdlite.anchors(FEATURE_MAPS, (300, 300))
    corners = np.stack([a[:, 0] - a[:, 2] / 2, a[:, 1] - a[:, 3] / 2, a[:, 0] + a[:, 2] / 2, a[:, 1] + a[:, 3] / 2], 1)
    theirs = np.load(DATA / "ssdlite_tf_anchors.npy").astype(np.float64)
    assert corners.shape == theirs.shape == (1917, 4)
    np.testing.assert_allclose(corners, theirs, atol=1e-4)


def test_preprocess_is_tensorflow_s_legacy_bilinear_resize():
    """A ramp image resized the graph's way: source position = destination index x scale, no half pixel."""
    ramp = np.tile((np.arange(600) % 251).astype(np.uint8)[None, :, None], (4, 1, 3))  # 4 x 600
    x = ssdlite.preprocess(ramp, (2, 300))[0, 0]  # R channel (the frame is BGR: identical here)
    src = np.arange(300) * 2.0  # exactly on source pixels, so no interpolation at all
    np.testing.assert_allclose(x[0], (src % 251) * (2 / 255) - 1, atol=1e-6)


@pytest.fixture(scope="module")
def detector():
    return ssdlite.SsdLite(min_score=0.05, exact=True)


@pytest.fixture(scope="module")
def fast_detector():
    return ssdlite.SsdLite(min_score=0.05)


def test_the_converted_model_is_valid_onnx_and_the_pinned_one():
    """What onnxruntime runs is what onnx's own checker accepts, and its bytes are the pinned ones."""
    import hashlib

    onnx = pytest.importorskip("onnx", reason="the export extra (onnx's checker) is not installed")
    from sen_infer.vision.tf_to_onnx import convert

    model = convert(ssdlite.graph_path().read_bytes(), ssdlite.INPUT_NODE, [f"{o}/BiasAdd" for o in ssdlite.OUTPUTS])
    onnx.checker.check_model(onnx.load_from_string(model))
    assert hashlib.sha256(model).hexdigest() == ssdlite.MANIFEST["onnx_sha256"]


@pytest.mark.skipif(not PETS.is_dir(), reason=f"real footage not here ({PETS}); CI and the team have it")
def test_detections_equal_the_original_graph_s_on_real_frames(detector):
    """Every detection TensorFlow's run of the graph made (score >= 0.05) on 4 PETS frames is ours too.
    Tolerances: onnxruntime and TensorFlow sum convolutions in different orders (float32), measured 2e-5
    on the logits here; 1e-3 on scores bounds other SIMD paths. Boxes must overlap at IoU >= 0.99."""
    _compare_with_tensorflow(detector, score_tol=1e-3, min_iou=0.99)


@pytest.mark.skipif(not PETS.is_dir(), reason=f"real footage not here ({PETS}); CI and the team have it")
def test_the_fast_resize_keeps_the_original_graph_s_detections(fast_detector):
    """The default resize (OpenCV's remap, weights in 1/32 pixel) moved scores by at most 0.0083 and boxes to
    IoU 0.9908 here; the bounds leave room for other SIMD paths, and still catch a shifted or mis-scaled
    resize (half a pixel moved scores by 0.1)."""
    _compare_with_tensorflow(fast_detector, score_tol=0.03, min_iou=0.97)


def _compare_with_tensorflow(detector, score_tol: float, min_iou: float) -> None:
    ref = json.loads((DATA / "ssdlite_tf_reference.json").read_text())
    cap, index, checked = cv2.VideoCapture(str(PETS / "pets.avi")), 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        index += 1
        if str(index) not in ref["frames"]:
            continue
        h, w = frame.shape[:2]
        ours = detector.detect(frame)
        theirs = [((x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h), score)
                  for y0, x0, y1, x1, score in ref["frames"][str(index)]]
        for box, score in theirs:
            best = max(ours, key=lambda o: _iou(o, box))
            assert _iou(best, box) >= min_iou and abs(best[4] - score) <= score_tol, (index, box, score, best)
            checked += 1
        # and nothing of ours that they lack (a score within the tolerance of the threshold may go either way)
        extra = [o for o in ours if o[4] >= ref["min_score"] + score_tol and
                 not any(_iou(o, b) >= min_iou for b, _ in theirs)]
        assert not extra, (index, extra)
    assert checked == sum(map(len, ref["frames"].values())) > 20


def test_a_changed_graph_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "frozen_inference_graph.pb"
    shutil.copy(ssdlite.graph_path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(DetectorUnavailable, match=str(bad)):
        ssdlite.SsdLite(graph=bad)
    with pytest.raises(DetectorUnavailable, match="cannot read"):
        ssdlite.SsdLite(graph=tmp_path / "missing.pb")


def test_the_detector_spec_finds_people_on_a_frame():
    """`--detector ssdlite` through the detectors' common call: boxes of at least min_box, scored."""
    det = make_detector("ssdlite", (16, 48))
    frame = np.full((480, 640, 3), 127, np.uint8)
    assert det(frame, 0) == []  # a grey frame holds nobody
    if PETS.is_dir():
        cap = cv2.VideoCapture(str(PETS / "pets.avi"))
        for _ in range(90):
            ok, frame = cap.read()
        boxes = det(frame, 89)
        assert len(boxes) >= 3 and all(w >= 16 and h >= 48 and 0.1 <= s <= 1 for _, _, w, h, s in boxes)


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_the_default_detector_is_the_neural_one_where_installed_else_mog2_split_with_one_line(tmp_path):
    """What `--detector default` stands for, in fresh processes: ssdlite with the package installed; with a
    broken install (the package found without its graph: an empty package earlier on the path) mog2-split,
    and one line on stderr saying so and why; $SEN_DETECTOR overrides both."""
    code = "from sen_infer.ingest.video import VideoOptions; print(VideoOptions().detector); " \
           "print(VideoOptions().detector)"
    env = {k: v for k, v in os.environ.items() if k != "SEN_DETECTOR"}
    got = run_cli("-c", code, module=None, env=env)
    assert got.returncode == 0 and got.stdout.split() == ["ssdlite", "ssdlite"] and got.stderr == "", got.stderr
    broken = tmp_path / "site" / ssdlite.PACKAGE
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    got = run_cli("-c", code, module=None, env={**env, "PYTHONPATH": str(tmp_path / "site")})
    assert got.returncode == 0 and got.stdout.split() == ["mog2-split", "mog2-split"], got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("person detector: mog2-split") and "graph is missing" in lines[0]
    got = run_cli("-c", code, module=None, env={**env, "SEN_DETECTOR": "hog"})
    assert got.stdout.split() == ["hog", "hog"] and got.stderr == ""
