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
    """Another recording of the same scene (`sen_train.data.synth_video.new_footage`: `src` re-encoded with a small
    corner block that changes with `mark`). Galleries know recordings by content, so a byte copy is one
    recording under two names; tests that need two sources with the same people use this. The block is far
    below the detector's smallest box, so the people and tracks are those of `src`."""
    from sen_train.data.synth_video import new_footage

    out.parent.mkdir(parents=True, exist_ok=True)
    return new_footage(src, out, mark)
