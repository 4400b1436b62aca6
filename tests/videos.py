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


def distinct_copy(src: Path, out: Path, mark: int) -> Path:
    """Another recording of the same scene: `src` re-encoded (mp4v) with a 4x4 corner block whose grey
    level changes with `mark` and the frame number. Galleries know recordings by content, so a byte copy
    is one recording under two names; tests that need two sources with the same people use this. The
    block is far below the detector's smallest box, so the people and tracks are those of `src`."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    writer, n = None, 0
    while (got := cap.read())[0]:
        frame = got[1]
        if writer is None:
            h, w = frame.shape[:2]
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        frame[:4, :4] = (37 * mark + 11 * n) % 256
        writer.write(frame)
        n += 1
    cap.release()
    writer.release()
    return out
