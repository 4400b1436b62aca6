"""Sources known by content: which source holds a file's content whatever path it came from, and the other
names (paths) a source was found under. A renamed, hard-linked or copied recording is recorded as an alias
of the source that holds its content, never ingested again; new content at a known path is a new source.

Tables (made on the first write that needs them, so an older gallery opened to read is never written):

    aliases (path, source, at)      another path whose content is `source`'s
    sources.start_time              the start time a video was ingested with (a recorder that reuses a path
                                    for new footage stores another time: the old source is not superseded)
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from sen_infer.errors import GalleryError
from sen_infer.store.peek import read_only
from sen_infer.store.schema import has_table

ALIASES = ("CREATE TABLE IF NOT EXISTS aliases (path TEXT NOT NULL, source TEXT NOT NULL, at REAL NOT NULL, "
           "PRIMARY KEY (path, source))")
HEAD_INDEX = "CREATE INDEX IF NOT EXISTS sources_head ON sources (head)"


def ensure_tables(conn) -> None:
    """The aliases table, the index of sources by content and the sources' start_time column, inside the
    caller's write transaction (each a no-op once made)."""
    conn.execute(ALIASES)
    conn.execute(HEAD_INDEX)
    if not any(r[1] == "start_time" for r in conn.execute("PRAGMA table_info(sources)")):
        conn.execute("ALTER TABLE sources ADD COLUMN start_time REAL")


def _record(cur) -> dict | None:
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row))


def by_content(store, head: str | None, kind: str) -> dict | None:
    """The record of the source of `kind` whose content fingerprint is `head` (a current one before a
    superseded one, then the newest), None when no source holds that content.

    Args:
        store: the `VectorStore`. head: `inputs.file_identity(...)["head"]` (videos) or "sha1:<hex>" (images).
        kind: "video" or "image".
    """
    if not head:
        return None
    with store.db("read sources"):
        conn = store.conn()
        if "head" not in store.source_columns(conn):
            return None
        return _record(conn.execute("SELECT * FROM sources WHERE head=? AND kind=? ORDER BY superseded IS NOT "
                                    "NULL, finished DESC LIMIT 1", (head, kind)))


def names_of(store, source: str) -> list[str]:
    """Every path the source `source` was found under: the one it was ingested from first, then its aliases
    in the order they were seen."""
    with store.db("read sources"):
        conn = store.conn()
        first = conn.execute("SELECT path FROM sources WHERE source=?", (source,)).fetchone() \
            if "path" in store.source_columns(conn) else None
        names = [first[0] if first and first[0] else source]
        if has_table(conn, "aliases"):
            names += [p for (p,) in conn.execute("SELECT path FROM aliases WHERE source=? ORDER BY at, path",
                                                 (source,)) if p not in names]
    return names


def add_alias(store, path: str, source: str) -> bool:
    """Record `path` as another name of `source` (content already stored); True when it was new."""
    with store.writing("record an alias") as conn:
        ensure_tables(conn)
        before = conn.total_changes
        conn.execute("INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)", (path, source, time.time()))
        return conn.total_changes > before


def alias_count(store) -> int:
    """How many aliases the store has recorded (0 for a gallery without the table)."""
    with store.db("read sources"):
        conn = store.conn()
        return conn.execute("SELECT count(*) FROM aliases").fetchone()[0] if has_table(conn, "aliases") else 0


def content_in(folder: Path, head: str, kind: str = "video") -> str | None:
    """The source key holding content `head` in the gallery at `folder`, read without opening it (a sharded
    root asks this of another day's shard); None when it has none or cannot tell (no gallery there yet)."""
    db = Path(folder) / "gallery.sqlite"
    if not db.is_file():
        return None
    try:
        with closing(read_only(db)) as conn:
            hit = conn.execute("SELECT source FROM sources WHERE head=? AND kind=? ORDER BY superseded IS NOT "
                               "NULL LIMIT 1", (head, kind)).fetchone()
    except sqlite3.Error:
        return None
    return None if hit is None else hit[0]


def add_alias_at(folder: Path, path: str, source: str) -> None:
    """`add_alias` for a gallery not opened here (another day's shard of a sharded root): one SQLite
    transaction that touches no row, so it needs none of the store's in-memory state.

    Raises:
        GalleryError: the gallery's database cannot be written.
    """
    db = Path(folder) / "gallery.sqlite"
    try:
        with closing(sqlite3.connect(db, timeout=60, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ensure_tables(conn)
                conn.execute("INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)", (path, source, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as e:
        raise GalleryError(f"{db}: cannot record another name of a recording: {e}") from None
