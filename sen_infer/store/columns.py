"""The in-RAM columns of a store (key, camera, time, track, source, crop score: ~38 bytes a row) and filtering
them: what a search masks and ranks without touching SQLite."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class View:
    """A consistent snapshot of the in-memory columns for one search (views, not copies)."""
    ids: np.ndarray
    camera: np.ndarray  # int32 codes (`Columns.cameras`)
    time: np.ndarray
    track: np.ndarray
    source: np.ndarray
    superseded: np.ndarray  # source codes whose rows are superseded
    quality: np.ndarray | None = None  # crop scores, NaN where unknown
    emb32: np.ndarray | None = None  # the float32 matrix of a gallery small enough to search exactly
    group: dict | None = None  # track -> person when hits are collapsed per person


class Columns:
    """One array per column, in key order, with small-int codes for cameras and sources. Appends go to
    buffers that double when full, so appending m rows costs O(m) and views handed to a running search
    never change under it. The store's lock guards every change."""

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}
        self.ids = np.zeros(0, np.int64)
        self.camera = np.zeros(0, np.int32)
        self.time = np.zeros(0, np.float64)
        self.track = np.zeros(0, np.int64)
        self.source = np.zeros(0, np.int32)
        self.quality = np.zeros(0, np.float64)  # the crop score (`vision.tracking.crop_score`), NaN: unknown
        self.codes: dict[str, int] = {}  # source -> small int, for the in-memory source column
        self.cameras: dict[str | None, int] = {}  # camera -> small int, for the in-memory camera column
        self.camera_names: list[str | None] = []
        self.superseded = np.zeros(0, np.int32)  # codes of superseded sources

    def __len__(self) -> int:
        return len(self.ids)

    def set_rows(self, meta) -> None:
        """The in-memory columns from (id, camera, timestamp, track, source, quality) rows, in key order."""
        self.ids = np.array([r[0] for r in meta], np.int64)
        self.camera = np.array([self.camera_code(r[1]) for r in meta], np.int32)
        self.time = np.array([np.nan if r[2] is None else r[2] for r in meta], np.float64)
        self.track = np.array([-1 if r[3] is None else r[3] for r in meta], np.int64)
        self.source = np.array([self.code(r[4]) for r in meta], np.int32)
        self.quality = _scores([r[5] for r in meta])

    def code(self, source: str) -> int:
        """The small int of `source`, given on first sight."""
        code = self.codes.get(source)
        if code is None:
            code = self.codes[source] = len(self.codes)
        return code

    def camera_code(self, camera: str | None) -> int:
        """The small int of `camera`, given on first sight."""
        code = self.cameras.get(camera)
        if code is None:
            code = self.cameras[camera] = len(self.cameras)
        return code

    def camera_name(self, code: int) -> str | None:
        """The camera of a small int."""
        if len(self.camera_names) != len(self.cameras):
            self.camera_names = list(self.cameras)
        return self.camera_names[code]

    def view(self) -> View:
        """A snapshot of the columns (call under the lock)."""
        return View(self.ids, self.camera, self.time, self.track, self.source, self.superseded, quality=self.quality)

    def mask(self, view: View, camera, since, until, superseded: bool,
             min_quality: float | None = None) -> np.ndarray | None:
        """Which rows of `view` pass the filters (None: all of them). `camera`: a name or a list of names;
        an unknown camera selects nothing. Superseded sources' rows only with superseded=True. With
        `min_quality`, rows whose crop score is known and lower are left out (pictures and rows stored
        before scores existed have none, and stay)."""
        mask = None
        if min_quality is not None and view.quality is not None:
            low = view.quality < min_quality  # NaN (unknown) compares False: kept
            mask = ~low
        cam = None
        if isinstance(camera, str):
            cam = view.camera == self.cameras.get(camera, -1)  # an unknown camera selects nothing
        elif camera is not None:  # any of several cameras
            cam = np.isin(view.camera, [self.cameras.get(c, -1) for c in camera])
        if cam is not None:
            mask = cam if mask is None else mask & cam
        if since is not None or until is not None:
            t = view.time
            tmask = ~np.isnan(t)
            if since is not None:
                tmask &= t >= since
            if until is not None:
                tmask &= t <= until
            mask = tmask if mask is None else mask & tmask
        if not superseded and len(view.superseded):
            current = ~np.isin(view.source, view.superseded)
            mask = current if mask is None else mask & current
        return mask

    def append(self, rows) -> None:
        """Rows (id, camera, timestamp, track, embedding, source, quality) at the end of the columns."""
        new = {"ids": np.array([r[0] for r in rows], np.int64),
               "camera": np.array([self.camera_code(r[1]) for r in rows], np.int32),
               "time": np.array([np.nan if r[2] is None else r[2] for r in rows], np.float64),
               "track": np.array([-1 if r[3] is None else r[3] for r in rows], np.int64),
               "source": np.array([self.code(r[5]) for r in rows], np.int32),
               "quality": _scores([r[6] for r in rows])}
        n, m = len(self.ids), len(rows)
        for name, values in new.items():
            # columns live in buffers that double when full: appending m rows costs O(m), not O(gallery),
            # and views handed to a running search ([:n]) never change under it
            buf = self.buffers.get(name)
            if buf is None or len(buf) < n + m:
                grown = np.empty((max(2 * (n + m), 1024), *values.shape[1:]), values.dtype)
                if n:
                    grown[:n] = getattr(self, name)
                buf = self.buffers[name] = grown
            buf[n : n + m] = values
            setattr(self, name, buf[: n + m])

    def load(self, cols: dict, cameras: list, sources: list) -> None:
        """Columns saved with the index (`index_files`), with the camera and source names of their codes."""
        self.cameras = {c: i for i, c in enumerate(cameras)}
        self.codes = {s: i for i, s in enumerate(sources)}
        self.buffers = {}  # new arrays: snapshots held by running searches stay as they were
        # copy=False: arrays already of their type are kept, not copied (a month's day graphs: 0.9 GB at 10M rows)
        self.ids, self.camera = cols["ids"].astype(np.int64, copy=False), cols["camera"].astype(np.int32, copy=False)
        self.time = cols["time"]
        self.track, self.source = cols["track"].astype(np.int64, copy=False), cols["source"].astype(np.int32, copy=False)
        self.quality = cols["quality"].astype(np.float64, copy=False)

    def replace_rows(self, meta) -> None:
        """All columns anew from (id, camera, timestamp, track, source, quality) rows (new arrays)."""
        self.buffers = {}  # new arrays: snapshots held by running searches stay as they were
        self.set_rows(meta)

    def drop(self, keys) -> None:
        """Rows of `keys` out of the columns (new arrays: running searches keep their snapshots)."""
        keep = ~np.isin(self.ids, np.asarray(keys, np.int64))
        self.buffers = {}
        for name in ("ids", "camera", "time", "track", "source", "quality"):
            setattr(self, name, getattr(self, name)[keep].copy())


def _scores(values) -> np.ndarray:
    """Crop scores as float64 (what SQLite holds, so a filter at a stored value keeps that row), None as NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)
