"""The catalogue of a sharded root: which (camera, UTC day) shards exist, their folders and time spans.

    ROOT/catalogue.sqlite          which shards exist: (camera, UTC day) -> folder, and the time span
                                   of each shard's rows (widened before rows are committed, never narrowed)
    ROOT/shards/<camera>/<day>/    an ordinary gallery (gallery.sqlite + index + crops)

Keys are global: shard number << 32 | the shard's own row key (`global_key`, `split_key`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from sen_infer.errors import GalleryError

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


def is_sharded(path) -> bool:
    """Whether `path` is a sharded root (it holds a catalogue)."""
    return (Path(path) / CATALOGUE).is_file()


def day_of(timestamp: float | None) -> str:
    """The UTC day a timestamp falls in ("YYYY-MM-DD"), or "undated"."""
    if timestamp is None or not math.isfinite(timestamp):
        return UNDATED
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _slug(camera: str) -> str:
    """A folder name for a camera: readable, and unique per name (a hash suffix when it had to change)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", camera).strip("._") or "camera"
    return safe[:60] if safe == camera else f"{safe[:48]}-{hashlib.sha1(camera.encode()).hexdigest()[:8]}"


def global_key(shard: int, local: int) -> int:
    """The root-wide key of a shard's row `local`."""
    return (int(shard) << SHIFT) | int(local)


def split_key(key: int) -> tuple[int, int]:
    """(shard number, the shard's own row key) of a root-wide key."""
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
        """Every shard as {"no", "camera", "day", "path", "t_min", "t_max"}, by number; read anew on each
        call, so a shard another process made or removed is seen at once."""
        with self._conn() as conn:
            cur = conn.execute("SELECT no, camera, day, path, t_min, t_max FROM shards ORDER BY no")
            return [dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r)) for r in cur]

    def shard_for(self, camera: str, day: str) -> dict:
        """The shard of (camera, day), made (catalogue row + folder name) if it does not exist yet."""
        path = f"shards/{_slug(camera)}/{day}"
        select = "SELECT no, camera, day, path, t_min, t_max FROM shards WHERE camera=? AND day=?"
        with self._conn() as conn:
            r = conn.execute(select, (camera, day)).fetchone()
            if r is None:
                # only a missing shard takes an id: an INSERT OR IGNORE on an existing one used up an
                # AUTOINCREMENT number on every call, and ids (the high bits of global keys) never return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute(select, (camera, day)).fetchone() is None:  # another writer may have won
                        conn.execute("INSERT INTO shards (camera, day, path, created) VALUES (?, ?, ?, ?)",
                                     (camera, day, path, time.time()))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                r = conn.execute(select, (camera, day)).fetchone()
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
        """Remove shard `no` from the catalogue (retention): searches stop selecting it. Its folder is
        the caller's to delete."""
        with self._conn() as conn:
            conn.execute("DELETE FROM shards WHERE no=?", (no,))


def make_sharded(root) -> None:
    """Make an empty sharded root at `root` (refused where a single gallery already is)."""
    if (Path(root) / "gallery.sqlite").is_file():
        raise GalleryError(f"{root} holds a single gallery; a sharded root must be a new folder")
    Catalogue(Path(root), create=True)
    os.makedirs(Path(root) / "shards", exist_ok=True)
