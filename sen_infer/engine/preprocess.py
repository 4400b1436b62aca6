"""Image preprocessing in OpenCV/NumPy: the training test transform, reproduced without torch.

BGR -> RGB -> resize to (H, W) (area filter when shrinking, bicubic when enlarging) -> [0, 1]
-> (x - mean) / std -> CHW float32. sen_train.transforms is the twin on the training side (the
import rules keep the two packages apart); a test holds them to cosine >= 0.999.
"""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np

from sen_infer.errors import QueryError


def check_image_array(img) -> np.ndarray:
    """`img` if it is a picture OpenCV can process (uint8 [h, w] or [h, w, 3|4], non-empty), else QueryError."""
    ok = isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.size > 0 and \
        (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4)))
    if not ok:
        desc = f"{img.dtype} {list(img.shape)}" if isinstance(img, np.ndarray) else type(img).__name__
        raise QueryError(f"an image must be a non-empty uint8 [h, w, 3] BGR array, not {desc}")
    return img


def is_regular_file(path) -> bool:
    """True for a regular file. FIFOs, devices and sockets are never opened: reading one can block forever."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bytes(path: str) -> np.ndarray | None:
    """The bytes of a regular file (never a FIFO or device), None when it cannot be read or is empty."""
    if not is_regular_file(path):
        return None
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return data if data.size else None


def read_bgr(path: str) -> np.ndarray | None:
    """The image at `path`, or None when it is missing, not a regular file, unreadable or truncated."""
    data = read_bytes(path)
    return None if data is None else cv2.imdecode(data, cv2.IMREAD_COLOR)


def to_input(bgr: np.ndarray, size: tuple[int, int], mean, std) -> np.ndarray:
    """BGR uint8 [h, w, 3] -> normalised float32 [3, H, W]."""
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    rgb = cv2.cvtColor(np.ascontiguousarray(bgr[..., :3]), cv2.COLOR_BGR2RGB)
    h, w = size
    if rgb.shape[:2] != (h, w):
        shrink = rgb.shape[0] >= h and rgb.shape[1] >= w
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
