"""Video files the tests build from the synthetic cameras (a helper module, not tests)."""

from pathlib import Path


def looped_avi(video_dir: Path, out: Path, times: int, camera: str = "cam1") -> Path:
    """A camera's clip played `times` times over in one MJPG AVI: a long recording built from the short
    one (MJPG can be read while it grows, unlike an mp4 whose index is written at the end)."""
    import cv2

    cap = cv2.VideoCapture(str(video_dir / f"{camera}.mp4"))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return out
