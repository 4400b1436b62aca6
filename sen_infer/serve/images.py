"""Uploaded pictures: JPEG or PNG only, their size read from the header before anything is decoded,
so a small file that would decompress into gigabytes of pixels is refused rather than allocated."""

from __future__ import annotations

import struct

import cv2
import numpy as np

from sen_infer.serve.errors import PictureTooLarge, UnsupportedUpload, UploadError

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
    if not data:
        raise UploadError("the uploaded file is empty")
    kind, w, h = header_size(data)
    if w < 1 or h < 1 or w * h > MAX_PIXELS:
        raise PictureTooLarge(f"the uploaded {kind.upper()} is {w}x{h}; at most {MAX_PIXELS // 1_000_000} MP")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise UploadError(f"the uploaded {kind.upper()} cannot be decoded (damaged or truncated)")
    return img
