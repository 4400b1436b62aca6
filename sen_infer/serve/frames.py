"""The full frame behind a hit, with its box drawn: decoded on demand from the source, cached.

A frame is evidence, so it is only shown when it is certainly the frame the crop came from: a video
whose bytes changed since it was ingested (replaced, not grown) is refused rather than decoded, and
the decoded position is checked after seeking.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from sen_infer.engine.preprocess import read_bgr
from sen_infer.errors import VideoReadError
from sen_infer.serve.errors import FrameUnavailable
from sen_infer.store import Row

BOX_COLOUR = (0, 200, 255)  # BGR amber: visible on both dark and light scenes


def draw_box(frame: np.ndarray, bbox, label: str | None = None) -> np.ndarray:
    """`frame` with the row's box (x, y, w, h) drawn in place, and its label above it: the operator sees
    which person of the frame the hit is."""
    x, y, w, h = (int(v) for v in bbox)
    thick = max(2, round(min(frame.shape[:2]) / 240))
    cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), BOX_COLOUR, thick)
    if label:
        cv2.putText(frame, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, BOX_COLOUR, 1, cv2.LINE_AA)
    return frame


def read_video_frame(path: str, frame: int) -> np.ndarray:
    """Frame number `frame` (0-based, in decode order, as the ingest counted) of the video at `path`.
    Seeks, then checks the decoder's position; a container that cannot seek exactly is read from the
    start instead (slow but right)."""
    from sen_infer.vision.decode import open_video

    cap, _, _ = open_video(path)
    try:
        if frame > 0 and cap.set(cv2.CAP_PROP_POS_FRAMES, frame) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == frame:
            ok, img = cap.read()
            if ok:
                return img
        cap.release()
        cap, _, _ = open_video(path)
        for _ in range(frame):
            if not cap.grab():
                raise VideoReadError(f"the video ends before frame {frame}")
        ok, img = cap.read()
        if not ok:
            raise VideoReadError(f"cannot decode frame {frame}")
        return img
    finally:
        cap.release()


def _names(record: dict | None) -> list[str]:
    """Where a source's file may be: the path it was ingested from, then its other names (aliases)."""
    record = record or {}
    return [p for p in (record.get("names") or [record.get("path")]) if p]


def source_file(record: dict | None) -> str | None:
    """The first of a source's names that still holds the content it was ingested with (a recording that
    was moved or copied keeps showing its frames), or None."""
    from sen_infer.ingest.inputs import same_beginning  # the ingest's own content identity

    head = (record or {}).get("head")
    for path in _names(record):
        try:
            if head and Path(path).is_file() and same_beginning(path, head, Path(path).stat().st_size):
                return path
        except OSError:
            continue
    return None


def _signature(row: Row, record: dict | None) -> tuple | None:
    """(path, size, mtime) of the file a row's frame comes from (for a video, the first of its names that
    exists), or None when none is there."""
    path = row.crop_path if row.frame < 0 else next((p for p in _names(record) if os.path.exists(p)), None)
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return None if st is None else (path, st.st_size, st.st_mtime_ns)


class FrameRenderer:
    """`render(row, source_record) -> JPEG bytes`, the last `capacity` frames kept (LRU, thread-safe)."""

    def __init__(self, capacity: int = 64, quality: int = 85):
        self.capacity, self.quality = capacity, quality
        self._cache: OrderedDict[int, tuple[bytes, tuple | None]] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, row: Row, record: dict | None) -> bytes:
        """A cached frame is served only while its source file is unchanged since it was checked (same
        size and modification time); otherwise it is checked and decoded again, and is a 410 if the file
        is gone or its content changed."""
        now = _signature(row, record)
        with self._lock:
            got = self._cache.get(row.key)
            if got is not None and got[1] == now:
                self._cache.move_to_end(row.key)
                return got[0]
            self._cache.pop(row.key, None)
        jpeg = self._encode(draw_box(self._frame(row, record), row.bbox, f"track {row.track}"
                                     if row.track is not None else None))
        with self._lock:
            self._cache[row.key] = (jpeg, now)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return jpeg

    def _encode(self, img: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise FrameUnavailable("cannot encode the frame as JPEG")
        return buf.tobytes()

    @staticmethod
    def _frame(row: Row, record: dict | None) -> np.ndarray:
        if row.frame < 0:  # a picture: the gallery's own copy of it is the frame
            img = read_bgr(row.crop_path) if row.crop_path else None
            if img is None:
                raise FrameUnavailable("the gallery's copy of this picture is missing or unreadable")
            return img
        if record is not None and record.get("superseded") is not None:
            raise FrameUnavailable("the source video was replaced by a newer file since this row was ingested")
        path = source_file(record)
        if path is None:
            if not any(Path(p).is_file() for p in _names(record)):
                raise FrameUnavailable("the source video of this row is no longer where it was ingested from "
                                       "(nor under another name it was seen with)")
            raise FrameUnavailable("the source video's content changed since this row was ingested")
        try:
            return read_video_frame(path, row.frame)
        except VideoReadError as e:
            raise FrameUnavailable(f"the source video cannot give frame {row.frame}: {e}") from None
