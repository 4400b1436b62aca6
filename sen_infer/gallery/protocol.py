"""The one interface every gallery kind offers (`Gallery`, `ShardedGallery`), so that queries, the CLI and
the service never ask which kind they hold: what a kind cannot do is said by `capabilities`, and its
method raises `GalleryError` with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from sen_infer.store import Row


@dataclass(frozen=True)
class Capabilities:
    """What a gallery kind can do beyond search and ingest.

    Attributes:
        identities: tracks can be linked into persons (`link_identities`, `timeline`, `per_person`).
        tune_index: the search width can be tuned and stored (`tune_index`).
        sharded: many galleries under one root (keys carry the shard in their high bits).
    """
    identities: bool
    tune_index: bool
    sharded: bool


@runtime_checkable
class GalleryLike(Protocol):
    """A gallery: rows of person crops with their embeddings, searched by vector, filled by ingest.

    Keys are the gallery's row keys (ints). Methods that take a key raise `UnknownKey` for a key the
    gallery does not hold. Ingest methods return an `IngestReport`.
    """
    capabilities: Capabilities

    @property
    def dir(self) -> Path: ...

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def search(self, query: np.ndarray, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
               superseded: bool = False, per_person: bool = False) -> list[Row]: ...

    def nearest(self, query: np.ndarray, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
                superseded: bool = False, per_person: bool = False) -> list[tuple[int, float]]: ...

    def rows(self, keys) -> dict[int, Row]: ...

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]: ...

    def embedding(self, key: int) -> np.ndarray: ...

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]: ...

    def source_record(self, row: Row) -> dict | None: ...

    def camera_summary(self) -> list[dict]: ...

    def stats(self) -> dict: ...

    def check(self) -> dict: ...

    def add_images(self, items, camera: str | None = None, timestamp: float | None = None, **kw): ...

    def add_video(self, path, camera: str | None = None, start_time: float | None = None, **kw): ...

    def add_videos(self, paths, camera: str | None = None, start_time: float | None = None, **kw): ...

    def link_identities(self, threshold: float | None = None, max_gap: float | None = None,
                        overlapping_views: bool = False) -> dict: ...

    def timeline(self, person: int) -> list: ...

    def tune_index(self, target: float = 0.99, queries: np.ndarray | None = None) -> dict: ...

    def close(self) -> None: ...
