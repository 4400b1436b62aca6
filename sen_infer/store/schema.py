"""The gallery's tables: the schema, its migration from schema 1, and reading a gallery's meta.

Every function takes an open connection (or the store, to open one); none holds state."""

from __future__ import annotations

import sqlite3
import time

from sen_infer.errors import GalleryError, ModelMismatchError
from sen_infer.store.ann import IndexParams


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    camera TEXT,
    frame INTEGER NOT NULL,
    timestamp REAL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    track INTEGER,
    crop_path TEXT,
    embedding BLOB NOT NULL,
    quality REAL,
    UNIQUE (source, frame, x, y, w, h)
);
CREATE INDEX IF NOT EXISTS crops_camera ON crops (camera);
CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, kind TEXT NOT NULL, rows INTEGER NOT NULL,
                                    finished REAL NOT NULL);
"""
# Added after schema 1, on the first write of an older gallery (opening to read never writes):
# sources get a resume point (NULL = done), the content identity of the file, the path it was read from
# (a replaced file is a new source "path#2" on the same path) and when a newer version superseded it.
SOURCE_COLUMNS = {"resume_frame": "INTEGER", "frames": "INTEGER", "size": "INTEGER", "mtime_ns": "INTEGER",
                  "head": "TEXT", "path": "TEXT", "superseded": "REAL"}
MIGRATION = """
CREATE INDEX IF NOT EXISTS sources_path ON sources (path);
CREATE TABLE IF NOT EXISTS removed (key INTEGER PRIMARY KEY, source TEXT, at REAL NOT NULL);
"""
# Our code never changes a stored embedding: an UPDATE of one (a repair, tampering, a tool) is logged by
# this trigger, so that a gallery whose index was saved before the change re-checks just those rows on
# open instead of reading every blob (what a memory-mapped million-row open cannot afford).
EDIT_LOG = (
    "CREATE TABLE IF NOT EXISTS edits (n INTEGER PRIMARY KEY AUTOINCREMENT, key INTEGER NOT NULL, at REAL NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS crops_embedding_edited AFTER UPDATE OF embedding ON crops BEGIN "
    "INSERT INTO edits (key, at) VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0); END",
)
PERSONS = "CREATE TABLE IF NOT EXISTS persons (track INTEGER PRIMARY KEY, person INTEGER NOT NULL)"
# when a video track was seen (its row keeps only its best crop's frame): identity linking's time rules
SPANS = ("CREATE TABLE IF NOT EXISTS track_spans (track INTEGER PRIMARY KEY, first_frame INTEGER, last_frame INTEGER, "
         "start REAL, end REAL)")
SCHEMA_VERSION = "2"


def quality_column(conn) -> str:
    """What to SELECT for a row's crop score: `quality` where the crops table has the column, else NULL
    (a gallery made before it: its rows' scores are unknown). Added on the first write by `add_quality`."""
    return "quality" if any(r[1] == "quality" for r in conn.execute("PRAGMA table_info(crops)")) else "NULL"


def add_quality(conn) -> None:
    """The crops table's quality column, inside the caller's write transaction (an older gallery lacks it;
    SQLite adds a nullable column without rewriting the table)."""
    if quality_column(conn) == "NULL":
        conn.execute("ALTER TABLE crops ADD COLUMN quality REAL")


def read_meta(conn) -> dict:
    """The meta table of an existing gallery, {} for a new (empty) database file."""
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        return {}
    missing = {"crops", "sources"} - tables
    if missing:
        raise sqlite3.DatabaseError(f"tables {', '.join(sorted(missing))} are missing")
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def migrate(conn) -> None:
    """Bring a schema-1 gallery to schema 2 inside the caller's write transaction: the new sources
    columns and tables, a track counter, and tracks that an older version let two sources share
    (concurrent ingests) renumbered so each belongs to one source. Readers reload on the generation bump."""
    if conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (SCHEMA_VERSION,):
        return
    have = {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
    for name, kind in SOURCE_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE sources ADD COLUMN {name} {kind}")
    for statement in MIGRATION.strip().split(";"):
        if statement.strip():
            conn.execute(statement)
    # every source gets a record (images had none: head NULL means "content not fingerprinted")
    conn.execute("INSERT OR IGNORE INTO sources (source, kind, rows, finished, path) SELECT source, "
                 "CASE WHEN max(frame) < 0 THEN 'image' ELSE 'video' END, count(*), 0, source FROM crops "
                 "WHERE source NOT LIKE 'array:%' GROUP BY source")
    conn.execute("UPDATE sources SET path = source WHERE path IS NULL")
    top = conn.execute("SELECT coalesce(max(track), 0) FROM crops").fetchone()[0]
    # one pass, video rows only: a track id the caller gave several images is the caller's grouping
    owner: dict[int, str] = {}
    for track, source in conn.execute("SELECT track, source FROM crops WHERE track IS NOT NULL AND frame >= 0 "
                                      "GROUP BY track, source ORDER BY track, min(id)").fetchall():
        if owner.setdefault(track, source) != source:
            top += 1
            conn.execute("UPDATE crops SET track=? WHERE track=? AND source=?", (top, track, source))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_track', ?)", (str(top + 1),))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    bump(conn)


def bump(conn, counter: str = "generation") -> None:
    """Tell every reader to look again: "generation" (rows removed or renumbered: re-read every row's
    metadata) or "supersessions" (re-read only which sources are superseded)."""
    conn.execute("INSERT INTO meta VALUES (?, '1') ON CONFLICT (key) DO UPDATE "
                 "SET value = CAST(value AS INTEGER) + 1", (counter,))


def has_table(conn, name: str) -> bool:
    """Whether the database holds table `name`."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def migrated_on_disk(conn) -> bool:
    """Whether the gallery on disk is at the current schema version."""
    return conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (SCHEMA_VERSION,)


def init_db(store, index_params: IndexParams | None) -> IndexParams:
    """Read the gallery's meta; write the schema only when it is a new gallery (an existing one is
    opened without a single write, so read-only media can be searched). Returns its index parameters
    (a gallery made before they were stored has the defaults it was built with)."""
    try:
        conn = store.conn()
        meta = read_meta(conn)
        if not meta and store.read_only:
            raise GalleryError(f"{store.db_path}: read-only and not a gallery (no meta table)")
        if not meta:
            conn.executescript(SCHEMA + "".join(f"{statement};\n" for statement in EDIT_LOG))
            conn.execute("BEGIN IMMEDIATE")
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    meta = {"fingerprint": store.fingerprint, "embed_dim": str(store.dim), "schema": "1",
                            "created": str(time.time()),
                            "index_params": (index_params or IndexParams()).to_json()}
                    conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                migrate(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        store.source_cols = {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
        store.tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        hint = " (the gallery files are read-only)" if "readonly" in str(e) else ""
        raise GalleryError(f"{store.db_path}: not a usable gallery database ({e}){hint}") from None
    except GalleryError as e:
        raise GalleryError(f"{e} ({store.db_path} is not a usable gallery database)") from None
    if meta and meta.get("fingerprint") != store.fingerprint:
        raise ModelMismatchError(
            f"gallery {store.dir} was built with another model (fingerprint {meta.get('fingerprint', '?')[:12]}, "
            f"engine {store.fingerprint[:12]}); open it with its own engine dir or ingest into a new gallery")
    if meta and meta.get("embed_dim") not in (None, str(store.dim)):
        raise ModelMismatchError(f"gallery {store.dir} holds {meta['embed_dim']}-d vectors, not {store.dim}-d")
    # galleries made before parameters were stored were built with usearch's defaults
    return IndexParams.from_json(meta.get("index_params")) if "index_params" in meta else \
        IndexParams(connectivity=16, expansion_add=128, expansion_search=64)
