"""The catalogue of a sharded root: which (camera, UTC day) shards exist, their folders and time spans.

    ROOT/catalogue.sqlite          which shards exist: (camera, UTC day) -> folder, and the time span
                                   of each shard's rows (widened before rows are committed, never narrowed)
    ROOT/shards/<camera>/<day>/    an ordinary gallery (gallery.sqlite + index + crops)

Keys are global: shard number << bits | the shard's own row key (`KeyLayout`). A new root uses 27 bits
for a shard's own keys and 26 for shard numbers, so every key stays below 2**53 (exact in a JSON number)
for 10,000 cameras over 10 years (docs/scale.md has the arithmetic); a root made before keeps the 32 bits
it was made with, so the keys its users hold keep pointing at the same rows.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sen_infer.gallery.days as days
from sen_infer.errors import GalleryError, QueryError

CATALOGUE = "catalogue.sqlite"
LOCAL_BITS = 27  # a new root's: 134 M rows per camera-day; 2**26 = 67 M shard numbers (18 years of 10,000 cameras)
OLD_LOCAL_BITS = 32  # a root made before the layout was recorded
JSON_SAFE = 53  # integers up to 2**53 are exact in a JSON number (a float64)
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
# which shard each recording's content was routed to (root-wide: a copy under another name or camera goes
# where its content is); made with the root, or on the first routing of a root made before it
CONTENTS = "CREATE TABLE IF NOT EXISTS contents (head TEXT PRIMARY KEY, shard INTEGER NOT NULL, at REAL NOT NULL)"
# a shard's recorded time span widened to cover [t_min, t_max] (never narrowed)
WIDEN = "UPDATE shards SET t_min = min(coalesce(t_min, ?), ?), t_max = max(coalesce(t_max, ?), ?) WHERE no=?"


def is_sharded(path) -> bool:
    """Whether `path` is a sharded root (it holds a catalogue)."""
    return (Path(path) / CATALOGUE).is_file()


def day_of(timestamp: float | None) -> str:
    """The UTC day a timestamp falls in ("YYYY-MM-DD"), or "undated"."""
    if timestamp is None or not math.isfinite(timestamp):
        return UNDATED
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def check_day(day: str) -> str:
    """`day` when it is "YYYY-MM-DD"; QueryError naming it otherwise."""
    if not isinstance(day, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise QueryError(f"day must be YYYY-MM-DD, not {day!r}")
    return day


def _slug(camera: str) -> str:
    """A folder name for a camera: readable, and unique per name (a hash suffix when it had to change)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", camera).strip("._") or "camera"
    return safe[:60] if safe == camera else f"{safe[:48]}-{hashlib.sha1(camera.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class KeyLayout:
    """How a root's global keys are made: shard number << `local_bits` | the shard's own key.

    Args:
        local_bits: bits of a shard's own keys (row, track and person ids).
    """
    local_bits: int = LOCAL_BITS

    @property
    def max_shards(self) -> int:
        """Shard numbers below this keep every key JSON-safe (below 2**53)."""
        return 1 << max(0, JSON_SAFE - self.local_bits)

    def join(self, shard: int, local: int) -> int:
        """The root-wide key of a shard's row (or track, or person) `local`.

        Raises:
            GalleryError: `local` does not fit the layout (it would point at another shard's rows).
        """
        if not 0 <= int(local) < (1 << self.local_bits):
            raise GalleryError(f"key {local} of shard {shard} does not fit this root's {self.local_bits}-bit keys")
        return (int(shard) << self.local_bits) | int(local)

    def split(self, key: int) -> tuple[int, int]:
        """(shard number, the shard's own key) of a root-wide key."""
        return int(key) >> self.local_bits, int(key) & ((1 << self.local_bits) - 1)


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
                new = conn.execute("SELECT 1 FROM sqlite_master WHERE name='shards'").fetchone() is None
                conn.executescript(SCHEMA)
                conn.execute(CONTENTS)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', 'sen-sharded/1')")
                if new:  # every recording of this root will be in `contents`: no shard needs searching
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('contents', 'complete')")
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('local_bits', ?)", (str(LOCAL_BITS),))
        self.keys = self._key_layout()

    def _key_layout(self) -> KeyLayout:
        """The root's key layout (a root without one recorded was made with 32-bit shard keys)."""
        with self._conn() as conn:
            got = conn.execute("SELECT value FROM meta WHERE key='local_bits'").fetchone()
        try:
            bits = OLD_LOCAL_BITS if got is None else int(got[0])
        except ValueError:
            bits = -1
        if not 16 <= bits <= 40:
            raise GalleryError(f"{self.path}: its key layout ({got[0]!r} bits) is not one this version knows")
        return KeyLayout(bits)

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

    def select(self, cameras=None, since: float | None = None, until: float | None = None) -> list[dict]:
        """The shards a filter can match, found by the database's indexes (camera: the (camera, day) key)
        rather than by reading every entry: a one-camera query on a root of 30,000 shards reads its camera's.

        Args:
            cameras: camera names (any of them), or None for every camera.
            since, until: a time window; a shard with no recorded span (undated rows) never matches one.

        Returns:
            The matching shards as `shards` gives them, by number.
        """
        where, params = _filters(cameras, since, until)
        sql = "SELECT no, camera, day, path, t_min, t_max FROM shards"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY no"
        with self._conn() as conn:
            return [dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r)) for r in conn.execute(sql, params)]

    def plan(self, cameras=None, since: float | None = None, until: float | None = None) -> tuple[list, list]:
        """What a search reads: the current day graphs a filter can match, and the matching shards of the
        days without one, read in one transaction (a graph recorded or outdated meanwhile can neither
        hide a day nor show it twice).

        Returns:
            (graphs as `days.current` gives them, by day; shards as `shards` gives them, by number).
        """
        where, params = _filters(cameras, since, until)
        with self._conn() as conn:
            conn.execute("BEGIN")
            try:
                found = days.current(conn)
                if found:
                    where.append(f"day NOT IN (SELECT day FROM ({days.CURRENT}))")
                sql = "SELECT no, camera, day, path, t_min, t_max FROM shards"
                sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY no"
                shards = [dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r))
                          for r in conn.execute(sql, params)]
            finally:
                conn.execute("COMMIT")
        graphs = [g for _, g in sorted(found.items()) if _graph_matches(g, cameras, since, until)]
        return graphs, shards

    def graphs(self) -> list[dict]:
        """Every current day graph (`days.current`), by day."""
        with self._conn() as conn:
            return [g for _, g in sorted(days.current(conn).items())]

    def on_day(self, day: str) -> list[dict]:
        """The shards of one day, by number."""
        with self._conn() as conn:
            cur = conn.execute("SELECT no, camera, day, path, t_min, t_max FROM shards WHERE day=? ORDER BY no", (day,))
            return [dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r)) for r in cur]

    def dated_days(self) -> list[str]:
        """Every day that has a shard (undated shards left out), in order."""
        with self._conn() as conn:
            return [d for (d,) in conn.execute("SELECT DISTINCT day FROM shards WHERE day <> ? ORDER BY day",
                                               (UNDATED,))]

    def touch(self, day: str) -> None:
        """A write to `day` begins or ends (`days.touch`): its day graph, if any, stops being used."""
        with self._conn() as conn:
            days.touch(conn, day)

    def day_writes(self, day: str) -> tuple[int, float | None]:
        """(write counter, time of the last write) of `day` (`days.writes`)."""
        with self._conn() as conn:
            return days.writes(conn, day)

    def register_graph(self, graph: dict) -> str | None:
        """Record a built day graph unless its day was written since (`days.register`)."""
        with self._conn() as conn:
            return days.register(conn, graph)

    def forget_graph(self, day: str) -> str | None:
        """Remove a day's graph entry (`days.forget`); returns its folder."""
        with self._conn() as conn:
            return days.forget(conn, day)

    def numbered(self, nos) -> dict[int, dict]:
        """The shards numbered `nos` (by primary key; numbers no longer in the catalogue are left out)."""
        nos = sorted({int(n) for n in nos})
        out = {}
        with self._conn() as conn:
            for at in range(0, len(nos), 500):  # well under SQLite's limit on bound parameters
                part = nos[at:at + 500]
                cur = conn.execute(f"SELECT no, camera, day, path, t_min, t_max FROM shards WHERE no IN "
                                   f"({','.join('?' * len(part))})", part)
                out.update({r[0]: dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r)) for r in cur})
        return out

    def shard_for(self, camera: str, day: str) -> dict:
        """The shard of (camera, day), made (catalogue row + folder name) if it does not exist yet; the day's
        write counter is raised (a write to it begins). One transaction."""
        with self._conn() as conn, days.immediate(conn):
            info = self._shard_of(conn, camera, day)
            days.touch(conn, day)
        return info

    def route(self, head: str, camera: str, day: str, t_min: float | None = None,
              t_max: float | None = None) -> dict:
        """Where a recording's rows go, in one transaction: `route_many` for one recording (its one commit,
        ~1 ms, is most of the cost: the disk's sync, whatever the catalogue's size).

        Raises:
            GalleryError: a new shard's number would make keys past 2**53.
        """
        return self.route_many([(head, camera, day, t_min, t_max)])[0]

    def route_many(self, recordings) -> list[dict]:
        """Where each recording's rows go, all in ONE transaction (a job's recordings share one commit): for
        each (head, camera, day, t_min, t_max), the shard its content `head` was routed to before, if it is
        still listed, else the shard of (`camera`, `day`), made if new, with the content recorded there;
        its span widened to [t_min, t_max] (either None: not widened) and its day's write counter raised,
        before any row is committed. Each lookup is by an index (O(log n) in the catalogue's size).

        Args:
            recordings: (head, camera, day, t_min, t_max) tuples; a content given twice goes to one shard.

        Returns:
            The shard entries ({"no", "camera", "day", "path", "t_min", "t_max"}), one per recording, in order.

        Raises:
            GalleryError: a new shard's number would make keys past 2**53 (nothing of the batch is kept).
        """
        out = []
        with self._conn() as conn, days.immediate(conn):
            conn.execute(CONTENTS)
            touched = set()
            for head, camera, day, t_min, t_max in recordings:
                hit = conn.execute("SELECT s.no, s.camera, s.day, s.path, s.t_min, s.t_max FROM contents c "
                                   "JOIN shards s ON s.no = c.shard WHERE c.head=?", (head,)).fetchone()
                if hit is not None:
                    info = dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), hit))
                else:
                    info = self._shard_of(conn, camera, day)
                    conn.execute("INSERT OR REPLACE INTO contents VALUES (?, ?, ?)", (head, info["no"], time.time()))
                if t_min is not None and t_max is not None:
                    conn.execute(WIDEN, (t_min, t_min, t_max, t_max, info["no"]))
                if info["day"] not in touched:
                    days.touch(conn, info["day"])
                    touched.add(info["day"])
                out.append(info)
        return out

    def _shard_of(self, conn, camera: str, day: str) -> dict:
        """(camera, day)'s shard inside the caller's write transaction, made if new. Only a missing shard
        takes a number: an INSERT OR IGNORE on an existing one used up an AUTOINCREMENT number on every
        call, and numbers (the high bits of global keys) never return."""
        select = "SELECT no, camera, day, path, t_min, t_max FROM shards WHERE camera=? AND day=?"
        r = conn.execute(select, (camera, day)).fetchone()
        if r is None:
            cur = conn.execute("INSERT INTO shards (camera, day, path, created) VALUES (?, ?, ?, ?)",
                               (camera, day, f"shards/{_slug(camera)}/{day}", time.time()))
            if cur.lastrowid >= self.keys.max_shards:  # its keys would not be exact in JSON
                raise GalleryError(f"{self.root}: shard number {cur.lastrowid} would make keys past "
                                   f"2**53 with {self.keys.local_bits}-bit shard keys; start a new root")
            r = conn.execute(select, (camera, day)).fetchone()
        return dict(zip(("no", "camera", "day", "path", "t_min", "t_max"), r))

    def widen(self, no: int, t_min: float | None, t_max: float | None) -> None:
        """Widen a shard's recorded time span to cover [t_min, t_max]; called BEFORE rows with those
        times are committed, so a crash in between leaves the span too wide (harmless), never too narrow
        (which would hide rows from a time-filtered search)."""
        if t_min is None or t_max is None:
            return
        with self._conn() as conn:
            conn.execute(WIDEN, (t_min, t_min, t_max, t_max, no))

    @functools.cached_property
    def contents_complete(self) -> bool:
        """Whether every recording of this root is in `contents` (False for a root made before contents were
        recorded, whose shards may hold one unrecorded; a root never changes between the two)."""
        with self._conn() as conn:
            return conn.execute("SELECT 1 FROM meta WHERE key='contents' AND value='complete'").fetchone() is not None

    def content_shard(self, head: str) -> tuple[int | None, bool]:
        """(the shard number the content `head` was routed to or None, whether that answer is complete:
        `contents_complete`)."""
        with self._conn() as conn:
            try:
                hit = conn.execute("SELECT shard FROM contents WHERE head=?", (head,)).fetchone()
            except sqlite3.OperationalError:  # no such table: an older root, never routed by this version
                hit = None
        return (None if hit is None else int(hit[0])), self.contents_complete

    def place_content(self, head: str, no: int) -> None:
        """Record that the content `head` goes to shard `no` (before any of its rows is committed)."""
        with self._conn() as conn:
            conn.execute(CONTENTS)
            conn.execute("INSERT OR REPLACE INTO contents VALUES (?, ?, ?)", (head, no, time.time()))

    def forget(self, no: int) -> None:
        """Remove shard `no` from the catalogue (retention): searches stop selecting it. Its folder is
        the caller's to delete."""
        with self._conn() as conn:
            conn.execute("DELETE FROM shards WHERE no=?", (no,))


def _filters(cameras, since, until) -> tuple[list[str], list]:
    """SQL conditions on the shards table (and their parameters) for a camera and time filter."""
    where, params = [], []
    if cameras is not None:
        names = sorted(cameras)
        where.append(f"camera IN ({','.join('?' * len(names))})")
        params += names
    if since is not None or until is not None:
        where.append("t_min IS NOT NULL")
    if since is not None:
        where.append("t_max >= ?")
        params.append(since)
    if until is not None:
        where.append("t_min <= ?")
        params.append(until)
    return where, params


def _graph_matches(g: dict, cameras, since, until) -> bool:
    """Whether a day graph can hold rows of the filter (the shards' rule: no span, no time-filtered rows)."""
    if cameras is not None and g["cameras"].isdisjoint(cameras):
        return False
    if since is None and until is None:
        return True
    if g["t_min"] is None:
        return False
    return (since is None or g["t_max"] >= since) and (until is None or g["t_min"] <= until)


def make_sharded(root) -> None:
    """Make an empty sharded root at `root` (refused where a single gallery already is)."""
    if (Path(root) / "gallery.sqlite").is_file():
        raise GalleryError(f"{root} holds a single gallery; a sharded root must be a new folder")
    Catalogue(Path(root), create=True)
    os.makedirs(Path(root) / "shards", exist_ok=True)
