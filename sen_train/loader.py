"""Training and evaluation inputs: (image, caption) pairs as tensors, tokenised the open_clip way."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from sen_train.data.readers import Sample
from sen_train.transforms import normalise, read_rgb, resize

CONTEXT_LENGTH = 77


class EmptyCaptionError(ValueError):
    """A caption with no text: it would train the model on nothing but start/end tokens."""


def tokenize(texts: list[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """open_clip BPE ids [N, context_length]; longer captions are cut with end-of-text kept last."""
    import open_clip

    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise EmptyCaptionError(f"caption {i} is empty")
    return open_clip.tokenize(list(texts), context_length=context_length)


class ImageCache:
    """Decoded, resized uint8 images kept in memory: small datasets train at GPU-less speed."""

    def __init__(self, size: tuple[int, int], enabled: bool = True):
        self.size, self.enabled, self._store = tuple(size), enabled, {}

    def get(self, path: str) -> np.ndarray:
        img = self._store.get(path)
        if img is None:
            img = resize(read_rgb(path), self.size)
            if self.enabled:
                self._store[path] = img
        return img


class PairDataset(Dataset):
    """One item per (image, caption) sample. Training randomness (flip, pruning) is a pure function
    of (seed, epoch, index), so it does not depend on worker count and survives resume."""

    def __init__(self, samples: list[Sample], image_size, mean, std, train: bool = False, flip_p: float = 0.0,
                 prune_p: float = 0.0, pruned: dict[str, str] | None = None, seed: int = 0, cache: bool = True,
                 augment: str = "flip"):
        if prune_p > 0 and pruned is None:
            raise ValueError("prune_p > 0 needs the pruned captions")
        if augment not in ("flip", "reference"):
            raise ValueError(f"augment must be flip or reference, not {augment!r}")
        self.augment = augment
        self.samples, self.mean, self.std = samples, mean, std
        self.train, self.flip_p, self.prune_p, self.pruned, self.seed = train, flip_p, prune_p, pruned, seed
        self.images = ImageCache(image_size, cache)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        img = self.images.get(s.image)
        caption = s.caption
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        if self.train:
            if rng.random() < (0.5 if self.augment == "reference" else self.flip_p):
                img = img[:, ::-1]
            if self.prune_p > 0 and rng.random() < self.prune_p:
                caption = self.pruned[caption]
            if self.augment == "reference":
                img = pad_crop(img, 10, rng)
        x = normalise(img, self.mean, self.std)
        if self.train and self.augment == "reference":
            x = random_erasing(x, rng, self.mean)
        x = torch.from_numpy(x)
        return x, tokenize([caption])[0], s.pid


def pad_crop(img: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """torchvision's Pad(pad) (black) then RandomCrop back to the image's size: a random shift by up to
    `pad` pixels each way, the uncovered border black."""
    h, w = img.shape[:2]
    padded = np.zeros((h + 2 * pad, w + 2 * pad, *img.shape[2:]), img.dtype)
    padded[pad : pad + h, pad : pad + w] = img
    top, left = int(rng.integers(0, 2 * pad + 1)), int(rng.integers(0, 2 * pad + 1))
    return padded[top : top + h, left : left + w]


def random_erasing(x: np.ndarray, rng: np.random.Generator, value, p: float = 0.5,
                   scale: tuple[float, float] = (0.02, 0.4), ratio: tuple[float, float] = (0.3, 3.3)) -> np.ndarray:
    """torchvision's RandomErasing(scale, ratio, value) on a normalised CHW image, as the reference
    runs it: with probability p, up to 10 tries to fit a rectangle of area U(scale) x image and aspect
    log-uniform in `ratio`; the first that fits is filled with `value` per channel (the reference passes
    the normalisation mean, so the erased block holds those numbers, not the mean colour)."""
    if rng.random() >= p:
        return x
    _, h, w = x.shape
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if eh < h and ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            x = x.copy()
            x[:, top : top + eh, left : left + ew] = np.asarray(value, x.dtype)[:, None, None]
            return x
    return x


def collate(batch):
    images, tokens, pids = zip(*batch)
    return torch.stack(images), torch.stack(tokens), torch.tensor(pids, dtype=torch.long)
