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

    Attributes:
        capabilities: what this kind can do beyond search and ingest; callers test it, never the type.
    """
    capabilities: Capabilities

    @property
    def dir(self) -> Path:
        """The folder the gallery lives in (a gallery folder or a sharded root)."""

    @property
    def dim(self) -> int:
        """The size of its embeddings (the model's `embed_dim`)."""

    def __len__(self) -> int: ...

    def search(self, query: np.ndarray, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
               superseded: bool = False, per_person: bool = False, min_quality: float | None = None) -> list[Row]:
        """The best k rows for a query vector under the filters, best first, each with its cosine `score`."""

    def nearest(self, query: np.ndarray, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
                superseded: bool = False, per_person: bool = False,
                min_quality: float | None = None) -> list[tuple[int, float]]:
        """What `search` finds, as (key, cosine) pairs, without reading the rows."""

    def rows(self, keys) -> dict[int, Row]:
        """The stored rows of `keys` by key, leaving out keys it does not hold (no UnknownKey here)."""

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        """Every row's key, of one camera when given; rows of replaced files only with superseded=True."""

    def embedding(self, key: int) -> np.ndarray:
        """Row `key`'s stored unit vector (float32 [dim]); UnknownKey when it holds no such row."""

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        """(keys of row `key`'s track, keys of up to `nearby` rows of its camera nearest in time)."""

    def source_record(self, row: Row) -> dict | None:
        """The ingest record of the file `row` came from (path, content identity), None if it has none."""

    def camera_summary(self) -> list[dict]:
        """Each camera as {"name", "rows", "first", "last"}, sorted by name (no camera last)."""

    def stats(self) -> dict:
        """Counts (rows, sources, tracks, damaged rows), cameras, time span and index size."""

    def check(self) -> dict:
        """The consistency check of `info --check`: {"ok", "problems", ...figures}; problems listed, not raised."""

    def add_images(self, items, camera: str | None = None, timestamp: float | None = None, **kw):
        """Store pictures (paths, folders, BGR arrays) as rows; return the `IngestReport`."""

    def add_video(self, path, camera: str | None = None, start_time: float | None = None, **kw):
        """Detect, track and store the people of one video, resuming where it ended; return the `IngestReport`."""

    def add_videos(self, paths, camera: str | None = None, start_time: float | None = None, **kw):
        """`add_video` for many videos, one failing without stopping the others; return the merged report."""

    def link_identities(self, threshold: float | None = None, max_gap: float | None = None,
                        overlapping_views: bool = False) -> dict:
        """Link tracks into persons across cameras and store the links, or GalleryError where it cannot."""

    def timeline(self, person: int) -> list:
        """The `Appearance`s of `person` in time order, or GalleryError where identities are not linked."""

    def tune_index(self, target: float = 0.99, queries: np.ndarray | None = None) -> dict:
        """Store the smallest search width reaching `target` recall@10; GalleryError where it cannot."""

    def close(self) -> None:
        """Release what it holds open (database connections, shards, threads)."""
