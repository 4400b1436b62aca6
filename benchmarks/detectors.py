"""Person detectors' speed per core, side by side, at the frame sizes cameras send.

    python -m benchmarks.detectors [--video ../shared/data/realmot/pets-s3mf1/pets.avi] [--frames 60]
                                   [--detectors mog2,mog2-split,ssdlite,ssdlite:2x2,ssdlite:2x3]

Every detector runs on the same decoded frames, resized to 640x480 and to 768x576, held to one thread
(OpenCV's `setNumThreads(1)`, onnxruntime's intra-op threads): figures are per core, the way a camera per
core is planned. Reported per detector and size: detector frames/s, and what a camera needs at `--stride 2` (detect on every second
frame): the camera frame rate one core sustains, decode and tracking included.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from benchmarks.report import write
from sen_infer.vision.detection import SsdLiteDetector, make_detector
from sen_infer.vision.tracking import make_tracker

SIZES = ((640, 480), (768, 576))


def frames_of(video: str | None, n: int) -> list[np.ndarray]:
    """`n` frames of the video (or, without one, of the synthetic generator's first camera)."""
    if video is None:
        import tempfile
        from pathlib import Path

        from sen_train.data.synth_video import VideoConfig, generate

        tmp = Path(tempfile.mkdtemp())
        generate(VideoConfig(cameras=1, seconds=n / 15 + 1, seed=3), tmp, progress=False)
        video = str(tmp / "cam1.mp4")
    cap, out = cv2.VideoCapture(video), []
    while len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    if not out:
        raise SystemExit(f"error: no frame could be decoded from {video}")
    return out


def one_core(spec: str):
    """The detector a spec names, held to one thread (onnxruntime's own threads for the neural one)."""
    det = make_detector(spec, (16, 48))
    if isinstance(det, SsdLiteDetector):
        det = SsdLiteDetector((16, 48), grid=det.grid, threads=1)  # grid None: auto_grid, as ingest does
    return det


def measure(spec: str, frames: list[np.ndarray], stride: int) -> dict:
    """Detector frames/s, and camera frames/s at `stride` with decode (re-encoded JPEG) and tracking."""
    det = one_core(spec)
    for f in frames[:3]:  # warm-up: first calls allocate
        det(f, 0)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        det(f, i)
    detect_s = (time.perf_counter() - t0) / len(frames)
    encoded = [cv2.imencode(".jpg", f)[1] for f in frames]  # MJPG-like decode cost per camera frame
    det, tracker = one_core(spec), make_tracker("motion", stride, 25.0)
    t0 = time.perf_counter()
    for i, data in enumerate(encoded):
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if getattr(det, "needs_every_frame", False) or i % stride == 0:
            boxes = det(frame, i)
            if i % stride == 0:
                tracker.update(i, boxes, frame)
    camera_s = (time.perf_counter() - t0) / len(encoded)
    return {"detector_fps": 1.0 / detect_s, "camera_fps_at_stride": 1.0 / camera_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.detectors", description=__doc__.split("\n")[0])
    ap.add_argument("--video", help="a video to take frames from (default: a synthetic camera)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--detectors", default="mog2,mog2-split,ssdlite,ssdlite:1x1,ssdlite:2x2,ssdlite:2x3",
                    help="comma-separated specs; ssdlite = its automatic tiles (2x2 at 640x480, 2x3 at 768x576)")
    ap.add_argument("--name", default="detectors", help="results file name under benchmarks/results")
    args = ap.parse_args(argv)
    source = frames_of(args.video, args.frames)
    rows, threads = [], cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for w, h in SIZES:
            frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in source]
            for spec in args.detectors.split(","):
                r = {"detector": spec, "size": f"{w}x{h}", **measure(spec, frames, args.stride)}
                rows.append(r)
                print(f"{spec:>12} {w}x{h}: detector {r['detector_fps']:6.1f} frames/s per core; a camera at "
                      f"stride {args.stride}: {r['camera_fps_at_stride']:6.1f} frames/s per core", flush=True)
    finally:
        cv2.setNumThreads(threads)  # the caller's OpenCV as it was (the tests run benchmarks in-process)
    figures = {"threads": 1, "stride": args.stride, "frames": len(source), "video": args.video or "synthetic"}
    print(f"-> {write(args.name, figures, rows, ['detector', 'size', 'detector_fps', 'camera_fps_at_stride'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
