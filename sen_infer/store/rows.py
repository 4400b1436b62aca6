"""The records a store holds and returns: `Row` (one crop, also a search hit), `SourceRecord` (what was
ingested of a file), and the track views identity linking reads (`TrackSummary`, `Appearance`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Row:
    """One person crop: what is given to `add_embeddings` (key None), what `rows` returns, and what a
    search returns (with its cosine `score`). `superseded`: its source file was later replaced.

    Attributes:
        source: the source key: a file's path ("path#<hex>" for a later version of it), or "array:<sha1>".
        camera: its camera's name, None when none was given.
        frame: the video frame of the crop (-1 for a picture).
        timestamp: seconds from the video's start, or Unix time where a start time was given; None if unknown.
        bbox: (x, y, w, h) of the crop in its frame (the whole picture for an image).
        track: the gallery-wide track id (None for a picture stored without one).
        crop_path: the picture the row shows: the stored copy, or the track's best crop as a JPEG.
        key: the row key (None before it is stored); never reused.
        score: cosine similarity to the query (search hits only).
        superseded: its source file was later replaced (rows kept, hidden from queries unless asked for).
        person: the identity its track is linked to across cameras (`link_identities`).
        quality: how surely the crop shows one whole person, in [0, 1] (`vision.tracking.crop_score`:
            detector confidence x person shape x not cut by the frame x not covered by another); None
            where unknown (pictures, rows stored before scores existed).
    """
    source: str
    camera: str | None = None
    frame: int = -1
    timestamp: float | None = None
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)
    track: int | None = None
    crop_path: str | None = None
    key: int | None = None
    score: float | None = None
    superseded: bool = False
    person: int | None = None  # the identity its track is linked to across cameras (`link_identities`)
    quality: float | None = None  # the crop score, None where unknown

    def to_dict(self) -> dict:
        """The row as JSON-ready values (`bbox` a list), as the CLI prints hits."""
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        return d


Hit = Row  # a search hit is a Row with its score: one type from ingest to the search page


@dataclass
class SourceRecord:
    """What was ingested of one source (a file version); committed with its rows. resume_frame None = done."""
    source: str
    kind: str
    path: str | None = None
    resume_frame: int | None = None
    frames: int | None = None
    size: int | None = None
    mtime_ns: int | None = None
    head: str | None = None
    supersedes: str | None = None  # the older version of this path that this one replaces
    first: bool = False  # the first commit of this source (its key must not hold other content)
    start_time: float | None = None  # a video's first-frame time as given (None: no clock)
    finished: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TrackSummary:
    """One track as identity linking sees it: camera, time span and mean appearance."""
    track: int
    camera: str | None
    start: float | None  # seconds (unix time) of its first and last crop
    end: float | None
    embedding: np.ndarray  # normalised mean of its crops' embeddings


@dataclass(frozen=True)
class Appearance:
    """One track of a person: where and when they were seen, and the keys of its crops."""
    person: int
    track: int
    camera: str | None
    source: str
    start: float | None
    end: float | None
    first_frame: int
    last_frame: int
    keys: tuple[int, ...]


def normalise(v: np.ndarray) -> np.ndarray:
    """Rows of `v` scaled to unit length (float32); a zero row stays zero."""
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
