"""Detection and tracking: ONNX detector outputs decoded end to end through onnxruntime, the blob
split/join logic on constructed masks, the trackers on scripted trajectories, the tracking benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sen_infer.vision.detection import OnnxDetector, join_fragments, make_detector, people_in_mask
from sen_infer.errors import DetectionsError, IngestError
from sen_infer.vision.tracking import IouTracker, MotionTracker

from helpers import ROOT  # noqa: E402

# ---- ONNX person detectors ------------------------------------------------------------------------

FRAME_HW = (720, 1280)  # letterboxed into 640x640: scale 0.5, 140 px of padding above and below
PERSON = (100, 200, 80, 240)  # x, y, w, h in the frame
OTHER = (900, 300, 60, 180)


def _graph(path: Path, output: np.ndarray) -> Path:
    """An ONNX model with a [1, 3, 640, 640] input whose output is `output` (+ 0 x the input's mean)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Constant", [], ["raw"], value=numpy_helper.from_array(output.astype(np.float32), "raw")),
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.zeros((), np.float32), "zero")),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "detector",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _letterboxed(box):
    """cx, cy, w, h of a frame box in the 640x640 letterboxed input."""
    x, y, w, h = box
    return (x + w / 2) * 0.5, (y + h / 2) * 0.5 + 140, w * 0.5, h * 0.5


def _rows(classes: int, with_objectness: bool, normalised: bool = False):
    """Candidate rows: the person (0.9), a shifted duplicate (0.6, NMS removes it), a faint person
    (0.05, below threshold), and another class's object (0.95)."""
    def row(box, cls, score):
        if normalised:
            x, y, w, h = box
            geo = [(x + w / 2) / 1280, (y + h / 2) / 720, w / 1280, h / 720]
        else:
            geo = list(_letterboxed(box))
        scores = [0.0] * classes
        scores[cls] = score
        return geo + ([1.0] if with_objectness else []) + scores

    shifted = (PERSON[0] + 4, PERSON[1] + 6, PERSON[2], PERSON[3])
    return [row(PERSON, 0, 0.9), row(shifted, 0, 0.6), row((500, 100, 50, 150), 0, 0.05), row(OTHER, 2, 0.95)]


def _check(dets, nms=True):
    persons = [d for d in dets if d[4] >= 0.1]
    assert len(persons) == (1 if nms else 2), dets
    x, y, w, h, s = persons[0]
    assert max(abs(x - PERSON[0]), abs(y - PERSON[1]), abs(w - PERSON[2]), abs(h - PERSON[3])) <= 1
    assert s == pytest.approx(0.9, abs=1e-6)


def test_onnx_yolov8_output_decoded_with_letterbox_and_nms(tmp_path):
    rows = np.zeros((100, 4 + 80), np.float32)  # 100 candidates, COCO's 80 classes, most empty
    rows[:4] = _rows(80, with_objectness=False)
    model = _graph(tmp_path / "yolo11n.onnx", rows.T[None])  # [1, 84, 100]
    det = make_detector(f"onnx:{model}", (1, 1))
    _check(det(np.zeros((*FRAME_HW, 3), np.uint8), 0))
    assert det.fmt == "yolov8"


def test_onnx_yolox_output_objectness_times_class(tmp_path):
    rows = np.zeros((50, 5 + 80), np.float32)
    rows[:4] = _rows(80, with_objectness=True)
    rows[0, 4] = 0.5  # objectness 0.5 x class 0.9 = 0.45
    model = _graph(tmp_path / "yolox_s.onnx", rows[None])
    dets = make_detector(f"onnx:{model}", (1, 1))(np.zeros((*FRAME_HW, 3), np.uint8), 0)
    assert dets[0][4] == pytest.approx(0.6, abs=1e-6)  # the duplicate (objectness 1) now ranks first
    assert len(dets) == 1  # NMS keeps the better-scoring of the two overlapping boxes only


def test_onnx_rtdetr_normalised_boxes_no_nms(tmp_path):
    rows = np.zeros((300, 4 + 80), np.float32)
    rows[:4] = _rows(80, with_objectness=False, normalised=True)
    model = _graph(tmp_path / "rtdetr-l.onnx", rows[None])
    det = make_detector(f"onnx:{model}", (1, 1))
    _check(det(np.zeros((*FRAME_HW, 3), np.uint8), 0), nms=False)  # DETR outputs are not NMS-ed
    assert det.fmt == "rtdetr"


def test_onnx_single_class_export_needs_its_format_named(tmp_path):
    rows = np.zeros((40, 6), np.float32)  # a person-only YOLOX export: [1, N, 5 + 1]
    rows[:4] = [r[:6] for r in _rows(3, with_objectness=True)]
    rows[3, 5] = 0.0  # its "other class" row had class 2, absent here
    model = _graph(tmp_path / "person.onnx", rows[None])
    frame = np.zeros((*FRAME_HW, 3), np.uint8)
    with pytest.raises(DetectionsError, match="onnx-yolox"):
        make_detector(f"onnx:{model}", (1, 1))(frame, 0)
    _check(make_detector(f"onnx-yolox:{model}", (1, 1))(frame, 0))


def test_onnx_detector_bad_specs(tmp_path):
    with pytest.raises(DetectionsError, match="does not exist"):
        make_detector(f"onnx:{tmp_path / 'missing.onnx'}", (1, 1))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(DetectionsError, match="cannot load"):
        make_detector(f"onnx:{tmp_path / 'junk.onnx'}", (1, 1))
    with pytest.raises(IngestError, match="unknown detector"):
        make_detector(f"onnx-yolov5:{tmp_path / 'junk.onnx'}", (1, 1))
    with pytest.raises(IngestError, match="unknown detector"):
        make_detector("blobs", (1, 1))


def test_onnx_person_class_beyond_the_outputs(tmp_path):
    rows = np.zeros((40, 5), np.float32)
    model = _graph(tmp_path / "one.onnx", rows.T[None])
    det = OnnxDetector(model, "yolov8", person_class=3)
    with pytest.raises(DetectionsError, match="person class 3 but only 1 classes"):
        det(np.zeros((100, 100, 3), np.uint8), 0)


# ---- splitting and joining foreground blobs -------------------------------------------------------

def _person(mask, x, feet, height, head_drop=0):
    """A stick figure of `height` px: head (0.14 h, narrower), body (0.27 h wide), feet at `feet`."""
    w, head = int(0.27 * height), int(0.14 * height)
    top = feet - height
    hx = x + w // 2 - head // 3
    mask[top + head_drop : top + head, hx : hx + 2 * head // 3] = 255
    mask[top + head : feet, x : x + w] = 255
    return x, top + head_drop, w, height - head_drop


def test_two_people_side_by_side_are_cut_between_their_heads():
    mask = np.zeros((400, 400), np.uint8)
    a = _person(mask, 100, 380, 300)
    b = _person(mask, 150, 360, 260)  # behind and overlapping: one blob, no empty column between
    boxes = people_in_mask(mask, (16, 48))
    assert len([d for d in boxes if d[4] == 1.0]) == 2, boxes
    left, right = sorted(boxes)[:2]
    assert abs(left[0] - a[0]) <= 2 and abs(right[0] + right[2] - (b[0] + b[2])) <= 2
    assert left[0] + left[2] <= b[0] + b[2] // 2 + 8  # the cut lies between the two heads


def test_one_person_cut_in_two_is_joined_and_a_lone_person_kept_whole():
    mask = np.zeros((400, 300), np.uint8)
    x, y, w, h = _person(mask, 100, 380, 300)
    mask[y + 150 : y + 156] = 0  # a bench hides a band across the legs: two components
    boxes = people_in_mask(mask, (16, 48))
    assert len(boxes) == 1 and boxes[0][:4] == (x, y, w, h)
    assert join_fragments([(10, 10, 20, 40), (12, 55, 18, 60), (100, 10, 20, 40)]) == \
        [(10, 10, 20, 105), (100, 10, 20, 40)]


# ---- trackers on scripted trajectories -----------------------------------------------------------

def _run(tracker, frames, people):
    """Feed `tracker` the boxes of `people` (fn frame -> box or None) over `frames`; returns, per track,
    the set of people its observations came from."""
    blank = np.zeros((360, 640, 3), np.uint8)
    owner = {}
    for f in frames:
        boxes = []
        for name, fn in people.items():
            box = fn(f)
            if box is not None:
                boxes.append((*box, 0.9))
                owner[(f, box)] = name
        tracker.update(f, boxes, blank)
    return [{owner[(o.frame, o.box)] for o in t.observations} for t in tracker.close()]


def _walker(x0, vx, y=100, w=30, h=90, hidden=()):
    def fn(f):
        if any(a <= f < b for a, b in hidden):
            return None
        x = int(round(x0 + vx * f))
        return (x, y, w, h) if 0 <= x <= 610 else None
    return fn


def test_motion_tracker_keeps_identities_through_a_crossing():
    people = {"A": _walker(100, 6), "B": _walker(460, -6, y=106)}  # at frame 30 the boxes overlap (IoU 0.88)
    tracks = _run(MotionTracker(max_age=15), range(0, 60, 2), people)
    assert sorted(map(sorted, tracks)) == [["A"], ["B"]]


def test_motion_tracker_bridges_an_occlusion_gap_and_ends_after_max_age():
    people = {"A": _walker(50, 4, hidden=[(20, 36)])}  # hidden for 8 processed frames
    assert _run(MotionTracker(max_age=15), range(0, 80, 2), people) == [{"A"}]
    # the IoU tracker has no prediction: the moved person starts a new track
    assert len(_run(IouTracker(max_age=15), range(0, 80, 2), {"A": _walker(50, 4, hidden=[(20, 36)])})) == 2
    # gone longer than max_age: a re-appearance is a new track (linking it is the identity step's job)
    people = {"A": _walker(50, 4, hidden=[(20, 60)])}
    assert len(_run(MotionTracker(max_age=15), range(0, 120, 2), people)) == 2


def test_motion_tracker_uses_weak_boxes_only_to_continue_tracks():
    blank = np.zeros((360, 640, 3), np.uint8)
    t = MotionTracker()
    for f in range(0, 10, 2):
        t.update(f, [(100 + f, 100, 30, 90, 0.3)], blank)  # weak boxes alone never start a track
    assert t.close() == []
    t = MotionTracker()
    for f in range(0, 20, 2):
        score = 0.9 if f < 6 else 0.3  # partly hidden later: weaker boxes, same person
        t.update(f, [(100 + f, 100, 30, 90, score)], blank)
    (track,) = t.close()
    assert len(track.observations) == 10


def test_crops_avoid_moments_covered_by_another_person():
    from sen_infer.vision.tracking import pick_crops

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    t = IouTracker(max_age=30)
    for f in range(0, 40, 2):
        boxes = [(200, 100, 40, 120, 0.9)]
        if f < 30:  # someone stands half across the person until frame 30
            boxes.append((220, 100, 40, 120, 0.9))
        t.update(f, boxes, frame)
    track = next(tr for tr in t.close() if tr.observations[0].box[0] == 200)
    chosen = pick_crops(track, 2)
    assert chosen and all(o.frame >= 30 for o in chosen)


# ---- the benchmark and the harder synthetic videos -----------------------------------------------

def test_hard_synthetic_video_adds_groups_pillars_and_noise(tmp_path):
    from sen_train.data.synth_video import VideoConfig, generate

    std = generate(VideoConfig(cameras=1, seconds=8, seed=4, width=320, height=180), tmp_path / "s", progress=False)
    hard = generate(VideoConfig(cameras=1, seconds=8, seed=4, width=320, height=180, difficulty="hard"),
                    tmp_path / "h", progress=False)
    assert std["cameras"]["cam1"]["pillars"] == [] and hard["cameras"]["cam1"]["pillars"]
    assert len(hard["tracks"]) > len(std["tracks"])
    # the standard walkers are still there, unchanged, in the hard video
    assert hard["tracks"][: len(std["tracks"])] == std["tracks"]
    gt = np.loadtxt(tmp_path / "h" / "cam1.gt.txt", delimiter=",", ndmin=2)
    x, _, w, _ = hard["cameras"]["cam1"]["pillars"][0]
    behind = gt[(gt[:, 2] < x) & (gt[:, 2] + gt[:, 4] > x + w)]  # boxes spanning the pillar
    assert len(behind) and (behind[:, 8] < 1.0).all()


def test_tracking_benchmark_scores_pipelines_and_an_oracle(tmp_path):
    from sen_train.data.synth_video import VideoConfig, generate

    generate(VideoConfig(cameras=1, seconds=6, seed=5), tmp_path / "v", progress=False)
    r = subprocess.run([sys.executable, "-m", "benchmarks.tracking", "--video", str(tmp_path / "v"),
                        "--detectors", "mog2,oracle", "--trackers", "iou,motion", "--out", str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "out" / "tracking.json").read_text())
    rows = {(row["detector"], row["tracker"]): row for row in doc["rows"]}
    assert set(rows) == {("mog2", "iou"), ("mog2", "motion"), ("oracle", "iou"), ("oracle", "motion")}
    oracle = rows[("oracle", "motion")]
    # the ground truth's own boxes: every box is right, and every counted person is found but for
    # the first processed frame of each (a track is confirmed on its second match)
    assert oracle["precision"] == pytest.approx(1.0) and oracle["recall"] > 0.9
    assert all(0 <= row["multi-person crops %"] <= 100 for row in doc["rows"])
    assert (tmp_path / "out" / "tracking.png").stat().st_size > 0


@pytest.mark.parametrize("fps, stride", [(7.0, 1), (25.0, 2)])
def test_tracker_parameters_are_seconds_at_any_frame_rate(fps, stride):
    """A person hidden for 1.5 s keeps their track (motion keeps tracks 2 s) and one hidden for 3 s gets a
    new one, whether the camera runs at 7 fps or at 25 fps processed every 2nd frame."""
    from sen_infer.vision.tracking import make_tracker

    frame = np.zeros((240, 320, 3), np.uint8)

    def run(hidden_s: float) -> int:
        tracker = make_tracker("motion", stride, fps)
        step = stride / fps  # seconds between processed frames
        t, index = 0.0, 0
        while t < 6.0 + hidden_s:
            hidden = 2.0 <= t < 2.0 + hidden_s
            x = 20 + 20 * t  # 20 px per second: the box overlaps its predicted self at any rate
            tracker.update(index, [] if hidden else [(x, 60, 30, 90, 0.9)], frame)
            t, index = t + step, index + stride
        return len(tracker.close())

    assert run(1.5) == 1
    assert run(3.0) == 2
