"""Video → person tracks: OpenCV decode, a detector, a tracker, and a few good crops per track.

Detectors (`sen_infer.vision.detection`): "default" (the neural "ssdlite" where installed, else
"mog2-split"; $SEN_DETECTOR overrides), "mog2" (background subtraction, for static cameras), "mog2-split"
(its blobs split into people), "hog", a MOT-format detections file, or an ONNX person detector. Trackers (`sen_infer.vision.tracking`): "iou" or "motion" (Kalman + ByteTrack
association, the default). Tracks are embedded from a handful of large, sharp crops, not covered by other
people's boxes, spread over their lifetime rather than every frame.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import VideoReadError
from sen_infer.engine.preprocess import is_regular_file

from sen_infer.vision.detection import make_detector
from sen_infer.vision.tracking import make_tracker, pick_crops


@dataclass
class VideoTracks:
    """What one chunk of a video holds (the whole video when it is one chunk)."""
    tracks: list  # (Track, chosen crops)
    fps: float  # the container's stated rate (25 when it states none)
    frames: int  # frames decoded so far (the end of this chunk)
    expected: int  # frames the container announces (0 when unknown)
    times: np.ndarray  # seconds from the video's start, for frames [start, frames)
    notes: list[str] = field(default_factory=list)  # timing disagreements and the like, one line each
    start: int = 0  # first frame of this chunk
    final: bool = True  # the last chunk: decoding reached the end of what can be read

    @property
    def incomplete(self) -> bool:
        """Decoding stopped before the container's announced end (a truncated or damaged file, or one
        still being written). One frame of slack: containers often round their count. A file whose
        decoder clock reached the container's stated duration is whole, whatever its frame count says
        (a recording that states 50 fps and 682 frames and holds 341 frames of 13.6 s)."""
        if not (self.final and self.expected > 0 and self.frames < self.expected - 1):
            return False
        if len(self.times) > 1:
            interval = float(self.times[-1] - self.times[0]) / (len(self.times) - 1)
            slack = 2 * max(interval, 1.0 / self.fps)
            if float(self.times[-1]) + slack >= (self.expected - 1) / self.fps:
                return False
        return True

    def time(self, frame: int) -> float:
        """Seconds from the video's start of `frame`, a frame of this chunk (from the decoder's clock)."""
        return float(self.times[frame - self.start])


# a decoder position this many median frame intervals past the previous good one is garbage (a spike),
# not a pause: variable-rate recordings pause for a few frames, not for ten
MAX_STEP = 10.0


def good_positions(t: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Indices of the decoder positions (seconds from frame 0) that can be trusted: finite, not the 0 a
    decoder reports for a frame it has no time for (real recordings do so for their last frame), strictly
    increasing, and not a spike far beyond what the median frame interval allows."""
    finite = np.flatnonzero(np.isfinite(t) & ~((t <= 0) & (frames > 0)))
    steps = np.diff(t[finite]) / np.maximum(np.diff(frames[finite]), 1)
    dt = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0
    kept: list[int] = []
    for i in finite:
        if not kept:
            kept.append(i)
            continue
        last = kept[-1]
        if t[i] > t[last] and (dt == 0.0 or t[i] - t[last] <= MAX_STEP * dt * (frames[i] - frames[last])):
            kept.append(i)
    return np.asarray(kept, np.intp)


def frame_times(positions_ms: list[float], fps: float, notes: list[str], first: int = 0,
                origin_ms: float | None = None, before: tuple[int, float, float] | None = None) -> np.ndarray:
    """Seconds from the video's start of frames first, first+1, ... The decoder's position
    (CAP_PROP_POS_MSEC, relative to frame 0's `origin_ms`) is the truth: real containers state rates
    their frames do not keep (a '50 fps' file with frames 40 ms apart). Missing or garbage positions are
    interpolated between the good ones and extrapolated at the rate the good ones keep, never a reason to
    discard the good ones; `notes` says so. With fewer than two good positions the chunk continues from
    `before` (the previous chunk's last frame, its time and frame interval), else from frame / fps."""
    pos = np.asarray(positions_ms, np.float64) / 1000.0
    frames = first + np.arange(len(pos))
    origin = pos[0] if origin_ms is None and len(pos) else (origin_ms or 0.0) / 1000.0
    t = pos - origin
    kept = good_positions(t, frames) if len(pos) > 1 else np.zeros(0, np.intp)
    if len(kept) < 2:
        if before is not None:
            last_frame, last_time, dt = before
            if len(pos) > 1:
                notes.append(f"decoder gives no usable frame times for frames {first}-{first + len(pos) - 1}; "
                             f"they continue at the {1 / dt:.3g} fps of the frames before")
            return last_time + (frames - last_frame) * dt
        if len(pos) > 1:
            notes.append(f"decoder gives no usable frame times; timestamps are frame / {fps:g} fps")
        return frames / fps
    kf, kt = frames[kept], t[kept]
    dt = float((kt[-1] - kt[0]) / (kf[-1] - kf[0]))  # the rate the good positions keep
    times = np.interp(frames, kf, kt)
    times[frames < kf[0]] = kt[0] - (kf[0] - frames[frames < kf[0]]) * dt
    times[frames > kf[-1]] = kt[-1] + (frames[frames > kf[-1]] - kf[-1]) * dt
    if len(kept) < len(pos):
        notes.append(f"{len(pos) - len(kept)} of {len(pos)} decoder frame times were missing or out of order "
                     f"(frames {first}-{first + len(pos) - 1}); interpolated at {1 / dt:.3g} fps")
    stated = (frames[-1] - frames[0]) / fps
    span = times[-1] - times[0]
    if stated > 0 and abs(span - stated) > 0.1 * stated:
        notes.append(f"container states {fps:g} fps but frames span {span:.1f} s, not {stated:.1f} s: "
                     f"timestamps follow the frames (about {(len(pos) - 1) / span:.3g} fps)")
    return times


def open_video(path: str | Path):
    """(cv2.VideoCapture, stated fps, announced frame count) after the checks OpenCV does not make."""
    try:
        str(path).encode("utf-8")  # OpenCV crashes on names that are not UTF-8
    except UnicodeEncodeError:
        raise VideoReadError(f"video file name is not valid UTF-8: {os.fsencode(str(path))!r}") from None
    if not is_regular_file(path):  # a FIFO would block the decoder forever
        raise VideoReadError(f"{path} is not a regular file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoReadError(f"cannot open video {path} (damaged, cut short, or not a video OpenCV reads)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else 25.0
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return cap, fps, int(count) if math.isfinite(count) and count > 0 else 0


def readable_at(path: str | Path, index: int) -> bool:
    """Whether the decoder yields a frame at `index` (a seek, not a decode from the start): how an ingest
    that ended short of a container's frame count tells, on the next run, a real end from more to read.

    Raises:
        VideoReadError: the file cannot be opened as a video.
    """
    cap, _, _ = open_video(path)
    try:
        if index > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        return bool(cap.read()[0])
    finally:
        cap.release()


WARMUP_FRAMES = 150  # frames a chunk's background model sees before the chunk starts


def iter_chunks(path: str | Path, detector: str = "default", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                min_observations: int = 3, crops_per_track: int = 4, chunk_seconds: float | None = None,
                start_frame: int = 0, progress=None, tracker: str = "motion"):
    """Yield the video's tracks chunk by chunk: every `chunk_seconds` of footage (at the container's stated
    rate; None: one chunk) the tracker is closed and its
    tracks handed over, so memory is bounded by a chunk, not by the video. A track crossing a chunk
    boundary becomes two tracks. With `start_frame` the frames before it are decoded but not tracked
    (the background model sees the last WARMUP_FRAMES of them): a resumed ingest adds nothing twice.

    Every chunk gets a background model of its own, started WARMUP_FRAMES before the chunk (the next
    one runs beside the current one for those frames). A chunk's people therefore depend only on its
    own frames and the WARMUP_FRAMES before it, never on where an earlier run was interrupted: a
    resumed ingest stores exactly the rows of an uninterrupted one."""
    det = make_detector(detector, min_box)  # a bad detections file is the caller's error, not the video's
    cap, fps, expected = open_video(path)
    chunk_frames = max(1, int(round(chunk_seconds * fps))) if chunk_seconds else None
    warm_from = max(0, start_frame - WARMUP_FRAMES)
    every_frame = getattr(det, "needs_every_frame", False)  # a background model sees every frame
    per_chunk = chunk_frames is not None and every_frame
    upcoming: dict[int, object] = {}  # chunk start -> its background model, warming up

    def warm_next(index: int, frame) -> None:
        """Feed `frame` to the models of the chunks that start within WARMUP_FRAMES after it."""
        first = (index // chunk_frames + 1) * chunk_frames
        for b in range(first, index + WARMUP_FRAMES + 1, chunk_frames):
            if b > start_frame:
                upcoming.setdefault(b, make_detector(detector, min_box))(frame, index)

    def new_tracker():
        return make_tracker(tracker_kind, stride, fps)

    clock: list = []  # (last frame, its time, frame interval) of the previous chunk

    def chunk(tracker, start, end, positions, final):
        notes: list[str] = []
        times = frame_times(positions, fps, notes, start, origin, clock[-1] if clock else None)
        if len(times):
            interval = float((times[-1] - times[0]) / (len(times) - 1)) if len(times) > 1 else 0.0
            interval = interval if interval > 0 else 1.0 / fps
            clock.append((start + len(times) - 1, float(times[-1]), interval))
        tracks = [t for t in tracker.close() if len(t.observations) >= min_observations]
        return VideoTracks([(t, pick_crops(t, crops_per_track)) for t in tracks], fps, end, expected, times,
                           notes, start, final)

    tracker_kind = tracker
    make_tracker(tracker_kind, stride)  # an unknown tracker name fails before any decoding
    tracker, index, origin, positions, start = new_tracker(), 0, None, [], start_frame
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            pos = cap.get(cv2.CAP_PROP_POS_MSEC)
            origin = pos if origin is None else origin
            if per_chunk and index >= warm_from:
                if index % chunk_frames == 0 and index in upcoming:
                    det = upcoming.pop(index)  # this chunk's own model, warmed on the frames before it
                warm_next(index, frame)
            if index >= start_frame:
                positions.append(pos)
                if every_frame or index % stride == 0:
                    boxes = det(frame, index)  # the background model must see every frame
                    if index % stride == 0:
                        tracker.update(index, boxes, frame)
            elif index >= warm_from and every_frame:
                det(frame, index)  # background only: no tracks before the resume point
            index += 1
            if progress is not None:
                progress(1)
            if chunk_frames and index - start >= chunk_frames and index > start_frame:
                yield chunk(tracker, start, index, positions, False)
                tracker, positions, start = new_tracker(), [], index
    finally:
        cap.release()
    if index == 0:
        raise VideoReadError(f"no frame could be decoded from {path}")
    yield chunk(tracker, start, max(index, start), positions, True)


def extract_tracks(path: str | Path, detector: str = "default", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                   min_observations: int = 3, crops_per_track: int = 4, progress=None,
                   tracker: str = "motion") -> VideoTracks:
    """The whole video as one chunk. Raises VideoReadError if it cannot be read."""
    return next(iter_chunks(path, detector, stride, min_box, min_observations, crops_per_track, None, 0, progress,
                            tracker))
