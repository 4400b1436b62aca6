"""Uploaded pictures: JPEG or PNG only, their size read from the header before anything is decoded,
so a small file that would decompress into gigabytes of pixels is refused rather than allocated; then
decoded off the event loop (`Decoder`), on a few threads within a memory budget, so one large upload
never stalls other requests and eight never swap the machine."""

from __future__ import annotations

import asyncio
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from sen_infer.serve.errors import Busy, PictureTooLarge, UnsupportedUpload, UploadError

MAX_PIXELS = 40_000_000  # 40 MP: larger than any camera frame a person crop comes from


def header_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from a PNG or JPEG header, read without decoding a pixel.

    Raises:
        UnsupportedUpload: neither PNG nor JPEG (a 415).
        UploadError: a JPEG without a frame header (truncated).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return "jpeg", w, h
            i += 2 + length
        raise UploadError("the uploaded JPEG has no frame header (truncated or not a JPEG)")
    raise UnsupportedUpload("upload a JPEG or PNG picture")


def decode_upload(data: bytes) -> np.ndarray:
    """The uploaded picture as BGR uint8, after the format and size checks.

    Raises:
        UploadError: empty, or damaged so that it cannot be decoded (a 400).
        UnsupportedUpload: not a JPEG or PNG (a 415).
        PictureTooLarge: more than MAX_PIXELS stated in its header (a 413).
    """
    kind, w, h = checked_size(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[reduction(w, h)])
    if img is None:
        raise UploadError(f"the uploaded {kind.upper()} cannot be decoded (damaged or truncated)")
    return img


def checked_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) of an upload the service accepts.

    Raises:
        UploadError: empty, or a picture of no pixels (0 wide or high).
        UnsupportedUpload: not a JPEG or PNG.
        PictureTooLarge: more than MAX_PIXELS stated in its header.
    """
    if not data:
        raise UploadError("the uploaded file is empty")
    kind, w, h = header_size(data)
    if w < 1 or h < 1:
        raise UploadError(f"the uploaded {kind.upper()} is {w}x{h}: it has no pixels")
    if w * h > MAX_PIXELS:
        raise PictureTooLarge(f"the uploaded {kind.upper()} is {w}x{h}; at most {MAX_PIXELS // 1_000_000} MP")
    return kind, w, h


# A query picture is resized to the model's input (a few hundred pixels high), so a huge one is decoded at
# 1/2, 1/4 or 1/8 scale: JPEG decoders scale while decoding (less memory and time); PNG's decode in full
# and then shrink. Pictures up to FULL_DECODE_PIXELS are decoded as they are.
REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}
FULL_DECODE_PIXELS = 4_000_000


def reduction(w: int, h: int) -> int:
    """The decode scale divisor for a w x h picture: the largest that keeps at least FULL_DECODE_PIXELS / 4."""
    r = 1
    while w * h > FULL_DECODE_PIXELS and r < 8 and w * h / (2 * r) ** 2 >= FULL_DECODE_PIXELS / 4:
        r *= 2
    return r


def decode_cost(kind: str, w: int, h: int, size: int) -> int:
    """Bytes a decode of this upload holds at its peak: the decoded pixels (full size for a PNG, scaled for
    a JPEG), plus the upload itself."""
    r = 1 if kind == "png" else reduction(w, h)
    return 3 * (w // r + 1) * (h // r + 1) + size


class Decoder:
    """Decodes uploads on `workers` threads, with at most `budget` bytes of pixels in flight; an upload that
    would pass the budget is refused at once (`Busy`, a 503 with Retry-After) rather than queued in memory.

    Args:
        workers: decoding threads (OpenCV releases the GIL while decoding).
        budget: bytes of decoded pixels (`decode_cost`) held at once.
    """

    def __init__(self, workers: int, budget: int):
        self.budget, self.in_use = budget, 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sen-decode")

    async def decode(self, data: bytes) -> np.ndarray:
        """The upload as BGR uint8, decoded on the pool (the event loop only reads its header).

        Raises:
            UploadError, UnsupportedUpload, PictureTooLarge: as `decode_upload`.
            Busy: the budget is taken by other uploads being decoded now.
        """
        kind, w, h = checked_size(data)
        cost = decode_cost(kind, w, h, len(data))
        with self._lock:
            if self.in_use + cost > self.budget:
                raise Busy(f"the server is decoding other pictures ({self.in_use >> 20} of "
                           f"{self.budget >> 20} MiB in use); try again in a second")
            self.in_use += cost
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, decode_upload, data)
        finally:
            with self._lock:
                self.in_use -= cost

    def close(self) -> None:
        """Stops the threads once the decodes in flight are done."""
        self._pool.shutdown(wait=True)
