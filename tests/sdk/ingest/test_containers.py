"""Containers whose headers are wrong: a frame count that is not what the file holds must neither lose
footage nor make every run decode the file again."""

import struct

import cv2
import numpy as np

from sen_infer import Retriever
from sen_infer.vision.decode import VideoTracks, readable_at


def _avi_stating(path, frames: int, fps: float, stated_frames: int, size=(160, 120)) -> None:
    """An MJPG AVI of `frames` frames whose headers (avih dwTotalFrames, strh dwLength) state
    `stated_frames`: what a recorder that wrote its header first and stopped early leaves."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * 5) % 256, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    strh, avih = data.find(b"strh"), data.find(b"avih")
    assert strh > 0 and avih > 0
    data[strh + 40 : strh + 44] = struct.pack("<I", stated_frames)  # dwLength, after 9 fields of strh
    data[avih + 24 : avih + 28] = struct.pack("<I", stated_frames)  # dwTotalFrames
    path.write_bytes(bytes(data))


def test_a_header_stating_twice_the_frames_is_complete_on_the_second_run_not_decoded_forever(engine, tmp_path):
    video = tmp_path / "rec 2026-03-05 (copy).avi"  # spaces and brackets: a name as operators make them
    _avi_stating(video, 40, 25, 80)
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 80  # the decoder believes the header
    cap.release()
    assert readable_at(video, 39) and not readable_at(video, 40)
    r = Retriever(engine, gallery=tmp_path / "g")
    first = r.gallery.add_video(video, camera="cam1", detector="mog2")
    # the clock (1.56 s) is short of the stated duration (3.16 s) too: a truncated file, as far as can be told
    assert first.frames == 40 and str(video) in first.incomplete
    second = r.gallery.add_video(video, camera="cam1", detector="mog2")
    assert not second.incomplete and second.added == 0 and r.gallery.source_done(str(video.resolve()))
    third = r.gallery.add_video(video, camera="cam1", detector="mog2")
    assert third.skipped_existing == 1 and third.frames == 0  # not decoded again


def test_a_clock_that_reaches_the_stated_duration_means_a_whole_file_whatever_the_count():
    """341 frames of a 13.6 s recording whose container states 682 frames at 50 fps: complete. The same
    count with a clock that stops at half the stated duration: a cut file, incomplete."""
    whole = VideoTracks([], 50.0, 341, 682, np.arange(341) * 0.04)  # 13.6 s of 25 fps footage
    cut = VideoTracks([], 50.0, 341, 682, np.arange(341) * 0.02)  # 6.8 s: half of what is stated
    assert not whole.incomplete and cut.incomplete
