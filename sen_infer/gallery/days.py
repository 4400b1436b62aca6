"""Which days of a sharded root have a day graph, and whether it still holds every row of its day.

Two tables beside the catalogue's shards, in `catalogue.sqlite`:

    day_writes (day, writes, last)       a counter per day, raised when a video or picture is routed to one
                                         of the day's shards (before any of its rows is committed) and again
                                         when that write has ended; `last` is when, for "closed" days
    graphs (day, path, writes, shards,   the day graph of `day`: its folder under ROOT/days, the day's
            rows, cameras, t_min, t_max,  counter when it was built, the shards it holds ...
            built)

A graph is used only while its `writes` equals the day's counter: any write to the day since it was built
sends queries back to the day's camera shards until the day is compacted again. The shards stay the truth.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager

TABLES = (
    "CREATE TABLE IF NOT EXISTS day_writes (day TEXT PRIMARY KEY, writes INTEGER NOT NULL, last REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS graphs (day TEXT PRIMARY KEY, path TEXT NOT NULL, writes INTEGER NOT NULL, "
    "shards TEXT NOT NULL, rows INTEGER NOT NULL, cameras TEXT NOT NULL, t_min REAL, t_max REAL, built REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS shards_by_day ON shards (day)",
)
# the graphs still current: built at the day's present write count
CURRENT = "SELECT g.day, g.path, g.writes, g.rows, g.t_min, g.t_max FROM graphs g " \
          "JOIN day_writes w ON w.day = g.day AND w.writes = g.writes"
FIELDS = ("day", "path", "writes", "rows", "t_min", "t_max")
_CAMERAS: dict[str, frozenset] = {}  # a graph's cameras by its folder (a folder is never reused: read once)


def ensure(conn) -> None:
    """The tables (a root made before day graphs gets them on its first write)."""
    for statement in TABLES:
        conn.execute(statement)


def touch(conn, day: str) -> None:
    """Raise `day`'s write counter: any graph of the day stops being used."""
    ensure(conn)
    conn.execute("INSERT INTO day_writes VALUES (?, 1, ?) ON CONFLICT (day) DO UPDATE SET writes = writes + 1, "
                 "last = excluded.last", (day, time.time()))


def writes(conn, day: str) -> tuple[int, float | None]:
    """(write counter, time of the last write) of `day`; (0, None) for a day never written by this version."""
    try:
        got = conn.execute("SELECT writes, last FROM day_writes WHERE day=?", (day,)).fetchone()
    except sqlite3.OperationalError:  # no such table: a root made before day graphs
        return 0, None
    return (0, None) if got is None else (int(got[0]), float(got[1]))


def current(conn) -> dict[str, dict]:
    """The current graphs by day: {"day", "path", "writes", "rows", "cameras" (a frozenset of names),
    "t_min", "t_max"}. Read on every search, so a graph's camera list (1,000 names for 1,000 cameras) is
    parsed once per folder, not once per query."""
    try:
        rows = conn.execute(CURRENT).fetchall()
    except sqlite3.OperationalError:
        return {}
    out = {}
    for r in rows:
        g = dict(zip(FIELDS, r))
        cams = _CAMERAS.get(g["path"])
        if cams is None:
            text = conn.execute("SELECT cameras FROM graphs WHERE path=?", (g["path"],)).fetchone()[0]
            cams = _CAMERAS[g["path"]] = frozenset(json.loads(text))
        g["cameras"] = cams
        out[g["day"]] = g
    return out


def register(conn, graph: dict) -> str | None:
    """Record a built graph when its day has not been written since it was read (else None: nothing
    recorded). Returns the folder of the graph it replaces, for the caller to delete."""
    ensure(conn)
    with immediate(conn):
        # a day of a root made before day graphs has no counter yet: it starts at 0, as read by the build
        conn.execute("INSERT OR IGNORE INTO day_writes VALUES (?, 0, 0)", (graph["day"],))
        now, _ = writes(conn, graph["day"])
        if now != graph["writes"]:
            return None
        old = conn.execute("SELECT path FROM graphs WHERE day=?", (graph["day"],)).fetchone()
        conn.execute("INSERT OR REPLACE INTO graphs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (graph["day"], graph["path"], graph["writes"], json.dumps(graph["shards"]), graph["rows"],
                      json.dumps(graph["cameras"]), graph["t_min"], graph["t_max"], time.time()))
    return "" if old is None or old[0] == graph["path"] else old[0]


@contextmanager
def immediate(conn):
    """One write transaction on `conn` (autocommit mode): committed when the block ends, also by a return
    from inside it, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def forget(conn, day: str) -> str | None:
    """Remove `day`'s graph entry (retention); returns its folder, for the caller to delete."""
    try:
        old = conn.execute("SELECT path FROM graphs WHERE day=?", (day,)).fetchone()
        conn.execute("DELETE FROM graphs WHERE day=?", (day,))
    except sqlite3.OperationalError:
        return None
    return None if old is None else old[0]
