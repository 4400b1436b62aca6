"""Training and evaluation inputs: (image, caption) pairs as tensors, tokenised the open_clip way."""

from __future__ import annotations

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
                 prune_p: float = 0.0, pruned: dict[str, str] | None = None, seed: int = 0, cache: bool = True):
        if prune_p > 0 and pruned is None:
            raise ValueError("prune_p > 0 needs the pruned captions")
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
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < self.flip_p:
                img = img[:, ::-1]
            if self.prune_p > 0 and rng.random() < self.prune_p:
                caption = self.pruned[caption]
        x = torch.from_numpy(normalise(img, self.mean, self.std))
        return x, tokenize([caption])[0], s.pid


def collate(batch):
    images, tokens, pids = zip(*batch)
    return torch.stack(images), torch.stack(tokens), torch.tensor(pids, dtype=torch.long)
