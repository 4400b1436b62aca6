"""Image preprocessing with OpenCV/NumPy: the test transform that the SDK reproduces exactly.

BGR file -> RGB -> resize to (H, W) (area filter when shrinking, bicubic when enlarging)
-> float32 in [0, 1] -> (x - mean) / std -> CHW.
"""

from __future__ import annotations

import cv2
import numpy as np


class ImageReadError(OSError):
    """An image file that is missing or cannot be decoded."""


def read_rgb(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = rgb.shape[0] >= h and rgb.shape[1] >= w
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def normalise(rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W]."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def eval_batch(paths, model) -> np.ndarray:
    """float32 [N, 3, H, W] of the image files at `paths`, sized and normalised for `model`, no augmentation."""
    size = tuple(model.image_size)
    return np.stack([normalise(resize(read_rgb(str(p)), size), model.mean, model.std) for p in paths])
