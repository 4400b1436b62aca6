"""A sharded gallery: many ordinary galleries under one root, searched as one.

    ROOT/catalogue.sqlite          which shards exist: (camera, UTC day) -> folder, and the time span
                                   of each shard's rows (widened before rows are committed, never narrowed)
    ROOT/shards/<camera>/<day>/    an ordinary gallery (gallery.sqlite + index + crops)

Shards are searched one after another by default (`fanout_workers`), each with the store's own
multi-threaded search; `workers=N` searches N at once.

Why (camera, day): one camera's recordings are ingested by one writer at a time, so each shard has one
writer; a camera filter and a time window select shards without opening them; and retention (footage
kept 30 days in many jurisdictions) drops whole days at once (`drop_days_before`). A video belongs to
the shard of the day it starts, so a track never spans two shards, and per-track collapsing per shard
then merging gives exactly what one gallery holding the same rows gives.

Keys are global: shard number << 32 | the shard's own row key (safe as a JSON number up to 2M shards
of 4G rows each).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sen_infer.errors import GalleryError, QueryError, UnknownKey, require_utf8
from sen_infer.gallery import Gallery, IngestReport, default_camera
from sen_infer.store import Row, normalise

CATALOGUE = "catalogue.sqlite"
SHIFT = 32
LOCAL_MASK = (1 << SHIFT) - 1
UNDATED = "undated"  # rows without a clock (no start time): their own shard per camera
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    no INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    day TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    t_min REAL, t_max REAL,
    created REAL NOT NULL,
    UNIQUE (camera, day)
);
"""


def fanout_workers() -> int:
    """Threads that search shards at once. Each shard's search is already a multi-threaded matrix product
    (or a batched graph search), so on a small machine more threads only contend: on 2 cores, 100 shards
    took 18.9 ms p50 one after another, 37.7 ms with 2 threads and 50.6 ms with 8 (benchmarks.cluster).
    One thread per 4 cores above 8 cores is a guess that has not been measured here."""
    cores = os.cpu_count() or 1
    return 1 if cores < 8 else cores // 4


def is_sharded(path) -> bool:
    return (Path(path) / CATALOGUE).is_file()


def day_of(timestamp: float | None) -> str:
    """The UTC day a timestamp falls in ("YYYY-MM-DD"), or "undated"."""
    if timestamp is None or not math.isfinite(timestamp):
        return UNDATED
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _slug(camera: str) -> str:
    """A folder name for a camera: readable, and unique per name (a hash suffix when it had to change)."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", camera).strip("._") or "camera"
    return safe[:60] if safe == camera else f"{safe[:48]}-{hashlib.sha1(camera.encode()).hexdigest()[:8]}"


def global_key(shard: int, local: int) -> int:
    return (int(shard) << SHIFT) | int(local)


def split_key(key: int) -> tuple[int, int]:
    return int(key) >> SHIFT, int(key) & LOCAL_MASK


class Catalogue:
    """The root's list of shards (SQLite: many writers of different shards update it safely)."""

    def __init__(self, root: Path, create: bool = False):
        self.root = Path(root)
        self.path = self.root / CATALOGUE
        if not self.path.is_file() and not create:
            raise GalleryError(f"no sharded gallery at {root} ({CATALOGUE} is missing)")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._conn() as conn:
                conn.executescript(SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', 'sen-sharded/1')")

    @contextmanager
    def _conn(self):
        try:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot open the catalogue: {e}") from None
        try:
            yield conn
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"{self.path}: {e}") from None
        finally:
            conn.close()

    def shards(self) -> list[dict]:
        with self._conn() as conn:
            cur = conn.execute("SELECT no, camera, day, path, t_min, t_max FROM shards ORDER BY no")
            return [dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r)) for r in cur]

    def shard_for(self, camera: str, day: str) -> dict:
        """The shard of (camera, day), made (catalogue row + folder name) if it does not exist yet."""
        path = f"shards/{_slug(camera)}/{day}"
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO shards (camera, day, path, created) VALUES (?, ?, ?, ?)",
                         (camera, day, path, time.time()))
            conn.execute("COMMIT")
            r = conn.execute("SELECT no, camera, day, path, t_min, t_max FROM shards WHERE camera=? AND day=?",
                             (camera, day)).fetchone()
        return dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r))

    def widen(self, no: int, t_min: float | None, t_max: float | None) -> None:
        """Widen a shard's recorded time span to cover [t_min, t_max]; called BEFORE rows with those
        times are committed, so a crash in between leaves the span too wide (harmless), never too narrow
        (which would hide rows from a time-filtered search)."""
        if t_min is None or t_max is None:
            return
        with self._conn() as conn:
            conn.execute("UPDATE shards SET t_min = min(coalesce(t_min, ?), ?), t_max = max(coalesce(t_max, ?), ?) "
                         "WHERE no=?", (t_min, t_min, t_max, t_max, no))

    def forget(self, no: int) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM shards WHERE no=?", (no,))


class ShardedGallery:
    """The `Gallery` reading surface over a sharded root (`Retriever` opens one when ROOT holds a
    catalogue), plus ingest routed to the (camera, day) shard. Shards are opened when a query first
    needs them; at most `max_open` stay open."""

    def __init__(self, root: Path, encoders, create: bool = False, max_open: int = 256, workers: int | None = None):
        require_utf8(str(root), "gallery path", GalleryError)
        self.root = Path(root)
        self.catalogue = Catalogue(self.root, create=create)
        self.encoders = encoders
        self.max_open = max_open
        self.workers = fanout_workers() if workers is None else max(1, int(workers))
        self._open: OrderedDict[int, Gallery] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0  # shards opened since this object was made (what pruning saves is counted here)
        self._pool: ThreadPoolExecutor | None = None
        self.last_searched: list[int] = []  # the shards the last search looked in

    @classmethod
    def open(cls, root, encoders, create: bool = False) -> "ShardedGallery":
        return cls(Path(root), encoders, create=create)

    # ---- shards -----------------------------------------------------------------------------------
    def shard(self, no: int, info: dict | None = None, create: bool = False) -> Gallery:
        """Shard `no`, opened on first use. Without `info` (a key's shard, not one just read from the
        catalogue) the catalogue is asked first: a shard another process removed (retention) is gone
        for this reader too, even while it was open here."""
        if info is None:
            info = next((s for s in self.catalogue.shards() if s["no"] == no), None)
            if info is None:
                self._forget(no)
                raise UnknownKey(f"no shard {no} in {self.root} (never made, or removed by retention)")
        with self._lock:
            g = self._open.get(no)
            if g is not None:
                self._open.move_to_end(no)
                return g
        g = Gallery.open(self.root / info["path"], encoders=self.encoders, create=create)
        with self._lock:
            if no in self._open:  # opened meanwhile by another thread
                g.close()
                return self._open[no]
            self._open[no] = g
            self.opened += 1
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                old.close()
        return g

    def _forget(self, no: int) -> None:
        """Close shard `no` here: it is no longer in the catalogue (retention removed it)."""
        with self._lock:
            gone = self._open.pop(no, None)
        if gone is not None:
            gone.close()

    def shard_for(self, camera: str, timestamp: float | None) -> tuple[dict, Gallery]:
        info = self.catalogue.shard_for(camera, day_of(timestamp))
        return info, self.shard(info["no"], info, create=True)

    def select(self, camera=None, since=None, until=None) -> list[dict]:
        """The shards a filter can match: by camera name, and by each shard's recorded time span (a shard
        with no recorded span holds undated rows, which a time window never selects)."""
        names = None if camera is None else ({camera} if isinstance(camera, str) else set(camera))
        out = []
        for s in self.catalogue.shards():
            if names is not None and s["camera"] not in names:
                continue
            if since is not None or until is not None:
                if s["t_min"] is None:
                    continue
                if (since is not None and s["t_max"] < since) or (until is not None and s["t_min"] > until):
                    continue
            out.append(s)
        return out

    # ---- search -----------------------------------------------------------------------------------
    def search(self, query, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
               superseded: bool = False, per_person: bool = False) -> list[Row]:
        """Each matching shard's top k as (key, score), merged by score then global key; then the rows of
        the k winners only, read from their shards."""
        if per_person:
            raise QueryError("per_person is not available on a sharded gallery: identities are linked "
                             "within one gallery")
        shards = self.select(camera, since, until)
        self.last_searched = [s["no"] for s in shards]
        q = normalise(np.asarray(query, np.float32).reshape(-1))

        def one(s):
            pairs = self.shard(s["no"], s).store.nearest(q, k, camera, since, until, per_track, superseded)
            return [(score, global_key(s["no"], key)) for key, score in pairs]

        if len(shards) <= 1 or self.workers <= 1:
            results = [one(s) for s in shards]
        else:
            results = list(self._executor().map(one, shards))
        best = sorted((p for part in results for p in part), key=lambda p: (-p[0], p[1]))[:k]
        rows = self.rows([key for _, key in best])
        return [replace(rows[key], score=score) for score, key in best if key in rows]

    def _executor(self) -> ThreadPoolExecutor:
        """One pool for the gallery's life (a pool per query cost more than small shards' searches)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="shard-search")
            return self._pool

    def rows(self, keys) -> dict[int, Row]:
        by_shard: dict[int, list[int]] = {}
        for key in keys:
            no, local = split_key(key)
            by_shard.setdefault(no, []).append(local)
        known = {s["no"]: s for s in self.catalogue.shards()}  # read once, not once per shard
        out = {}
        for no, locals_ in by_shard.items():
            if no not in known:
                self._forget(no)
                continue
            for local, row in self.shard(no, known[no]).rows(locals_).items():
                out[global_key(no, local)] = _rekey(row, no)
        return out

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        return [global_key(s["no"], k) for s in self.select(camera) for k in
                self.shard(s["no"], s).keys(camera, superseded)]

    def embedding(self, key: int) -> np.ndarray:
        no, local = split_key(key)
        try:
            return self.shard(no).embedding(local)
        except UnknownKey:
            raise KeyError(key) from None

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        no, local = split_key(key)
        try:
            track, near = self.shard(no).context(local, nearby)
        except UnknownKey:
            raise KeyError(key) from None
        return [global_key(no, k) for k in track], [global_key(no, k) for k in near]

    def source_record(self, row: Row) -> dict | None:
        no, _ = split_key(row.key)
        return self.shard(no).store.source_record(row.source)

    def camera_summary(self) -> list[dict]:
        by_name: dict = {}
        for s in self.catalogue.shards():
            for c in self.shard(s["no"], s).camera_summary():
                got = by_name.setdefault(c["name"], {"name": c["name"], "rows": 0, "first": None, "last": None})
                got["rows"] += c["rows"]
                if c["first"] is not None:
                    got["first"] = c["first"] if got["first"] is None else min(got["first"], c["first"])
                    got["last"] = c["last"] if got["last"] is None else max(got["last"], c["last"])
        return sorted(by_name.values(), key=lambda c: (c["name"] is None, c["name"] or ""))

    def stats(self) -> dict:
        parts = [(s, self.shard(s["no"], s).stats()) for s in self.catalogue.shards()]
        spans = [p["time_span"] for _, p in parts if p["time_span"]]
        return {"rows": sum(p["rows"] for _, p in parts), "sources": sum(p["sources"] for _, p in parts),
                "superseded_sources": sum(p["superseded_sources"] for _, p in parts),
                "tracks": sum(p["tracks"] for _, p in parts),
                "cameras": sorted({c for _, p in parts for c in p["cameras"]}),
                "time_span": [min(a for a, _ in spans), max(b for _, b in spans)] if spans else None,
                "index_size": sum(p["index_size"] for _, p in parts),
                "damaged_rows": sum(p["damaged_rows"] for _, p in parts), "shards": len(parts)}

    def link_identities(self, *args, **kw):
        raise GalleryError(f"{self.root} is a sharded root: identities are linked within one gallery, and a "
                           f"sharded root holds one per camera and day (docs/scale.md)")

    def timeline(self, person: int):
        raise GalleryError(f"{self.root} is a sharded root: timelines follow identities linked within one gallery "
                           f"(docs/scale.md)")

    def check(self) -> dict:
        """`info --check` over every shard: ok only when every shard is."""
        problems, rows, indexed = [], 0, 0
        for s in self.catalogue.shards():
            c = self.shard(s["no"], s).check()
            problems += [f"{s['path']}: {p}" for p in c["problems"]]
            rows += c.get("rows", 0)
            indexed += c.get("index_size", 0)
        return {"ok": not problems, "problems": problems, "rows": rows, "index_size": indexed}

    def __len__(self) -> int:
        """Rows in all shards. A shard not open here is counted from its table, not opened: the search
        service asks this on every query, and opening every shard would undo the pruning."""
        total = 0
        for s in self.catalogue.shards():
            with self._lock:
                g = self._open.get(s["no"])
            total += len(g) if g is not None else _table_rows(self.root / s["path"] / "gallery.sqlite")
        return total

    @property
    def dir(self) -> Path:
        return self.root

    @property
    def dim(self) -> int:
        return self.encoders.dim

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            for g in self._open.values():
                g.close()
            self._open.clear()

    # ---- ingest -----------------------------------------------------------------------------------
    def add_video(self, path, camera: str | None = None, start_time: float | None = None, **kw) -> IngestReport:
        """Ingest one video into the shard of its camera and the UTC day it starts."""
        path_text = str(Path(path).resolve())
        camera = camera if camera is not None else default_camera(path_text)
        info, note = self.route(path_text, camera, start_time, video_duration(path) if start_time is not None else 0.0)
        if info is None:
            report = IngestReport(skipped_existing=1)
            report.notes.append(f"{path}: {note}")
            return report
        return self.shard(info["no"], info, create=True).add_video(path, camera=camera, start_time=start_time, **kw)

    def route(self, path: str, camera: str, start_time: float | None, seconds: float) -> tuple[dict | None, str | None]:
        """The shard a video of `seconds` goes to, with the span its rows can take recorded first (before
        any is committed); or (None, why) when another day's shard of the camera already holds it."""
        day = day_of(start_time)
        elsewhere = self.ingested_elsewhere(camera, path, day)
        if elsewhere is not None:
            return None, (f"already ingested into {elsewhere} (another start day); not stored twice (remove it "
                          f"there to ingest it with a new start time)")
        info = self.catalogue.shard_for(camera, day)
        if start_time is not None:
            self.catalogue.widen(info["no"], start_time, start_time + seconds + 1.0)
        return info, None

    def add_videos(self, paths, camera: str | None = None, start_time: float | None = None, workers=None,
                   batch_size=None, max_wait=None, **kw) -> IngestReport:
        """One video after another, each into its shard (the pipeline's overlap is for one gallery; on a
        cluster, `python -m sen_infer.cluster ingest` spreads videos over workers instead)."""
        report = IngestReport()
        progress = kw.pop("progress", None)  # add_videos reports (frames, crops embedded)
        per_frame = None if progress is None else (lambda n: progress(n, 0))
        for p in paths:
            report.merge(self.add_video(p, camera=camera, start_time=start_time, progress=per_frame, **kw))
        return report

    def add_images(self, items, camera: str | None = None, timestamp: float | None = None, **kw) -> IngestReport:
        """Pictures into the shard of `camera` (default "images") and the day of `timestamp`."""
        info, g = self.shard_for(camera if camera is not None else "images", timestamp)
        if timestamp is not None:
            self.catalogue.widen(info["no"], timestamp, timestamp)
        return g.add_images(items, camera=camera, timestamp=timestamp, **kw)

    def ingested_elsewhere(self, camera: str, path: str, day: str) -> str | None:
        """The folder of another day's shard of `camera` that already holds the video at `path`, or None.
        The same recording given another start time would otherwise be stored twice, once per day."""
        for s in self.catalogue.shards():
            if s["camera"] != camera or s["day"] == day:
                continue
            db = self.root / s["path"] / "gallery.sqlite"
            if not db.is_file():
                continue
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
                try:
                    if conn.execute("SELECT 1 FROM sources WHERE path=? LIMIT 1", (path,)).fetchone():
                        return s["path"]
                finally:
                    conn.close()
            except sqlite3.Error:
                continue  # an older gallery without paths in its sources, or a damaged one: not this check's job
        return None

    def drop_days_before(self, day: str) -> list[str]:
        """Retention: delete every dated shard of a day before `day` ("YYYY-MM-DD"), catalogue entry first
        (a search no longer sees it), then its folder. Returns the removed shards' paths."""
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise QueryError(f"day must be YYYY-MM-DD, not {day!r}")
        gone = []
        for s in self.catalogue.shards():
            if s["day"] != UNDATED and s["day"] < day:
                with self._lock:
                    g = self._open.pop(s["no"], None)
                if g is not None:
                    g.close()
                self.catalogue.forget(s["no"])
                shutil.rmtree(self.root / s["path"], ignore_errors=True)
                gone.append(s["path"])
        return gone


def _table_rows(db: Path) -> int:
    """Rows of a shard's table, read without opening it as a gallery (0 for a shard not written yet)."""
    if not db.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
        try:
            return conn.execute("SELECT count(*) FROM crops").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise GalleryError(f"{db}: cannot count its rows: {e}") from None


def frame_count(path) -> tuple[int, float]:
    """(frames, fps) of a video: the container's count, or decoded to count when it states none."""
    from sen_infer.video import open_video

    cap, fps, count = open_video(str(path))
    try:
        if count <= 0:
            while cap.grab():
                count += 1
        return count, fps
    finally:
        cap.release()


def video_duration(path) -> float:
    """Seconds of footage a video holds; bounds the time span its rows can take."""
    frames, fps = frame_count(path)
    return frames / fps


def _rekey(row: Row, shard: int) -> Row:
    track = None if row.track is None else global_key(shard, row.track)
    person = None if row.person is None else global_key(shard, row.person)
    return replace(row, key=global_key(shard, row.key), track=track, person=person)


def open_gallery_at(path, encoders, create: bool = False):
    """A `Gallery` or a `ShardedGallery`, whichever `path` holds (`create` makes a single gallery)."""
    if is_sharded(path):
        return ShardedGallery.open(path, encoders)
    return Gallery.open(path, encoders=encoders, create=create)


def make_sharded(root) -> None:
    """Make an empty sharded root at `root` (refused where a single gallery already is)."""
    if (Path(root) / "gallery.sqlite").is_file():
        raise GalleryError(f"{root} holds a single gallery; a sharded root must be a new folder")
    Catalogue(Path(root), create=True)
    os.makedirs(Path(root) / "shards", exist_ok=True)
