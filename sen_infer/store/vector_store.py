"""The vector store: rows and embeddings in SQLite (WAL, the truth) with a usearch index as a derived cache.

It knows nothing of models, images or video (that is `sen_infer.gallery`, the ingest pipeline):
`add_embeddings(vectors, rows)`, `search`, `rows`, `remove`, and a record per source (what was ingested
of which file) that commits in the same transaction as its rows. Rows are unique on (source, frame,
bbox), so re-adding adds nothing. The index is saved by write-to-temp + rename, memory-mapped when
opened (`sen_infer.store.ann`: no second copy of the vectors in RAM, shared by every process), and brought up to
date from SQLite on open: only the rows committed after the saved file are added, so a crash mid-save never
costs a full rebuild. The in-memory columns (key, camera, time, track, source: ~30 bytes a row) are saved
beside the index so a million-row gallery opens without reading its table. Many threads (and other
processes) may read while one writes; concurrent searches are served together (see `_Batcher`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sen_infer.files import fsync_path, remove_stale_temps, temp_name, write_atomic
from sen_infer.store.ann import IndexParams, TieredIndex
from sen_infer.store.rows import Appearance, Row, SourceRecord, TrackSummary, normalise
from sen_infer.errors import GalleryError, ModelMismatchError, SourceConflict, UnknownKey, require_utf8

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
EXACT_MAX = 20_000  # galleries up to this size are searched exactly (a cached float32 matrix product)
FILTERED_EXACT_MAX = 5_000  # a filter leaving at most this many rows is searched exactly over them
# (benchmarks.index: at 100k rows, exact over 1% selected beats graph over-fetch 0.16 ms to 13 ms;
# at 10% the graph wins 1.7 ms to 5.3 ms)
PERSIST_DELTA = 50_000  # a writer saves the index whenever this many rows wait in the in-RAM delta (what a
# crash leaves to re-index on the next open: ~25 s of 512-d inserts on 2 cores)
COLUMNS_FILE = "columns.npz"
REMAP_DELTA = 20_000  # a reader holding this many rows in RAM maps a newer index file saved by a writer


@dataclass
class _View:
    """A consistent snapshot of the in-memory columns for one search (views, not copies)."""
    ids: np.ndarray
    camera: np.ndarray  # int32 codes (`VectorStore._cameras`)
    time: np.ndarray
    track: np.ndarray
    source: np.ndarray
    superseded: np.ndarray  # source codes whose rows are superseded
    emb32: np.ndarray | None = None  # the float32 matrix of a gallery small enough to search exactly
    group: dict | None = None  # track -> person when hits are collapsed per person


class _Batcher:
    """Serves concurrent searches together. A thread that finds no computation running takes every
    query waiting at that moment and runs them as one call (one matrix product, or one batched graph
    search); the others wait for their row of the result. A float32 gallery matrix is read from memory
    once per batch instead of once per query, which is what bounds exact search on a CPU, so throughput
    grows with the number of waiting queries instead of falling to contention for BLAS's threads."""

    def __init__(self):
        self._cond = threading.Condition()
        self._pending: list[list] = []
        self._busy = False

    def run(self, group, query: np.ndarray, compute):
        """compute(queries [m, d]) -> m results, for requests of one `group` (same matrix or fetch)."""
        slot = [group, query, compute, None, False]  # ..., result, done
        with self._cond:
            self._pending.append(slot)
            while not slot[4]:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._compute(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if isinstance(slot[3], BaseException):
            raise slot[3]
        return slot[3]

    @staticmethod
    def _compute(batch: list[list]) -> None:
        groups: dict = {}
        for slot in batch:
            groups.setdefault(slot[0], []).append(slot)
        try:
            for slots in groups.values():
                try:
                    results = list(slots[0][2](np.stack([s[1] for s in slots])))
                    if len(results) != len(slots):
                        raise GalleryError(f"batched search gave {len(results)} results for {len(slots)} queries")
                    for s, r in zip(slots, results):
                        s[3] = r
                except Exception as e:  # each waiting thread raises its own error, not lost in this one
                    for s in slots:
                        s[3] = GalleryError(f"search failed: {e}")
                for s in slots:
                    s[4] = True
        finally:  # an interrupt in the computing thread must not leave the others waiting forever
            for s in batch:
                if not s[4]:
                    s[3], s[4] = GalleryError("search interrupted"), True


class VectorStore:
    """`VectorStore.open(path, fingerprint, dim)`; `add_embeddings`, `search`, `rows`, `remove`."""

    def __init__(self, path: Path, fingerprint: str, dim: int, exact_max: int = EXACT_MAX,
                 filtered_exact_max: int = FILTERED_EXACT_MAX, read_only: bool = False,
                 index_params: IndexParams | None = None):
        self.dir = Path(path)
        self.read_only = read_only
        self.exact_max, self.filtered_exact_max = exact_max, filtered_exact_max
        self.fingerprint, self.dim = fingerprint, int(dim)
        self.db_path = self.dir / "gallery.sqlite"
        self.index_path = self.dir / "index.usearch"
        self.columns_path = self.dir / COLUMNS_FILE
        self._local = threading.local()
        self._last_seen = 0  # highest row id read into memory (damaged rows included)
        self._generation = None  # meta "generation": bumped by removals, supersessions and migrations
        self._loaded = False
        self._supersessions = None
        self._links = None
        self._person_of: dict[int, int] = {}  # track -> linked person
        self.damaged: list[int] = []  # keys of rows whose stored embedding is unusable (kept, never served)
        self._lock = threading.RLock()  # guards the in-memory columns and the index
        self._write_lock = threading.Lock()
        self._batcher = _Batcher()
        self._cleaned = False
        self._migrated = False
        self._columns: set[str] = set()
        self.index_params = self._init_db(index_params)
        self._buffers: dict[str, np.ndarray] = {}
        self._ids = np.zeros(0, np.int64)
        self._camera = np.zeros(0, np.int32)
        self._time = np.zeros(0, np.float64)
        self._track = np.zeros(0, np.int64)
        self._source = np.zeros(0, np.int32)
        self._codes: dict[str, int] = {}  # source -> small int, for the in-memory source column
        self._cameras: dict[str | None, int] = {}  # camera -> small int, for the in-memory camera column
        self._camera_names: list[str | None] = []
        self._superseded = np.zeros(0, np.int32)
        self._index = TieredIndex(self.dim, self.index_params)
        self._emb32 = None  # float32 matrix of every row, kept only while the store is searched exactly
        self._edits_seen = 0  # the last entry of the `edits` log whose rows were re-checked
        self._edit_log = False  # whether the gallery has the `edits` table
        self.remap_delta = REMAP_DELTA
        self._side_mtime = None
        self.opened = {}  # how the index was opened: "mapped", "rows_added", "rebuilt" (for `info` and tests)
        self._open_index()

    @classmethod
    def open(cls, path: str | os.PathLike, fingerprint: str, dim: int, *, exact_max: int = EXACT_MAX,
             filtered_exact_max: int = FILTERED_EXACT_MAX, create: bool = True,
             index_params: IndexParams | None = None) -> "VectorStore":
        """Open (or, with create=True, make) the store at `path` for vectors of the model `fingerprint`.
        Files we may not write open read-only: searchable, never written (not even the schema).
        `index_params` apply to a new gallery; an existing one keeps those stored in it."""
        path = Path(path)
        require_utf8(str(path), "gallery path", GalleryError)
        db = path / "gallery.sqlite"
        if not create and not db.is_file():
            raise GalleryError(f"no gallery at {path} (gallery.sqlite is missing); ingest into it first")
        read_only = db.is_file() and not (os.access(path, os.W_OK) and os.access(db, os.W_OK))
        if not read_only:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise GalleryError(f"cannot create gallery dir {path}: {e.strerror or e}") from None
        return cls(path, fingerprint, dim, exact_max, filtered_exact_max, read_only=read_only,
                   index_params=index_params)

    # ---- the database -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self, doing: str):
        """SQLite errors (a damaged page, a read-only file, a full disk) as one-line GalleryErrors."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            hint = " (the gallery files are read-only)" if "readonly" in str(e) else ""
            raise GalleryError(f"{self.db_path}: cannot {doing}: {e}{hint}") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._db("open the database"):
                if self.read_only:
                    conn = sqlite3.connect(self._read_only_uri(), uri=True, timeout=60, isolation_level=None)
                else:
                    conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
                try:
                    if not self.read_only:
                        conn.execute("PRAGMA journal_mode=WAL")
                        conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                except BaseException:
                    conn.close()
                    raise
            self._local.conn = conn
        return conn

    def _read_only_uri(self) -> str:
        """SQLite URI for a gallery on media we may not write (mode=ro). Without write access SQLite can
        still read a WAL database when its -shm file is there, or, with no pending WAL, as immutable.
        A non-empty -wal without -shm holds committed rows we could not see: refuse rather than hide them."""
        from urllib.parse import quote

        wal, shm = Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm")
        uri = f"file:{quote(str(self.db_path.resolve()))}?mode=ro"
        if shm.is_file() or os.access(self.dir, os.W_OK):
            return uri
        if wal.is_file() and wal.stat().st_size > 0:
            raise GalleryError(f"{self.db_path}: read-only copy with a pending {wal.name} but no {shm.name}: its "
                               f"newest rows cannot be read; copy the gallery with all three files, or open a "
                               f"writable copy once to checkpoint it")
        return uri + "&immutable=1"

    def _init_db(self, index_params: IndexParams | None) -> IndexParams:
        """Read the gallery's meta; write the schema only when it is a new gallery (an existing one is
        opened without a single write, so read-only media can be searched). Returns its index parameters
        (a gallery made before they were stored has the defaults it was built with)."""
        try:
            conn = self._conn()
            meta = self._read_meta(conn)
            if not meta and self.read_only:
                raise GalleryError(f"{self.db_path}: read-only and not a gallery (no meta table)")
            if not meta:
                conn.executescript(SCHEMA + "".join(f"{statement};\n" for statement in EDIT_LOG))
                conn.execute("BEGIN IMMEDIATE")
                try:
                    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                    if not meta:
                        meta = {"fingerprint": self.fingerprint, "embed_dim": str(self.dim), "schema": "1",
                                "created": str(time.time()),
                                "index_params": (index_params or IndexParams()).to_json()}
                        conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                    self._migrate(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            self._columns = {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
            self._tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            hint = " (the gallery files are read-only)" if "readonly" in str(e) else ""
            raise GalleryError(f"{self.db_path}: not a usable gallery database ({e}){hint}") from None
        except GalleryError as e:
            raise GalleryError(f"{e} ({self.db_path} is not a usable gallery database)") from None
        if meta and meta.get("fingerprint") != self.fingerprint:
            raise ModelMismatchError(
                f"gallery {self.dir} was built with another model (fingerprint {meta.get('fingerprint', '?')[:12]}, "
                f"engine {self.fingerprint[:12]}); open it with its own engine dir or ingest into a new gallery")
        if meta and meta.get("embed_dim") not in (None, str(self.dim)):
            raise ModelMismatchError(f"gallery {self.dir} holds {meta['embed_dim']}-d vectors, not {self.dim}-d")
        # galleries made before parameters were stored were built with usearch's defaults
        return IndexParams.from_json(meta.get("index_params")) if "index_params" in meta else \
            IndexParams(connectivity=16, expansion_add=128, expansion_search=64)

    @staticmethod
    def _read_meta(conn) -> dict:
        """The meta table of an existing gallery, {} for a new (empty) database file."""
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            return {}
        missing = {"crops", "sources"} - tables
        if missing:
            raise sqlite3.DatabaseError(f"tables {', '.join(sorted(missing))} are missing")
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def _migrate(self, conn) -> None:
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
        self._bump(conn)

    @staticmethod
    def _bump(conn, counter: str = "generation") -> None:
        """Tell every reader to look again: "generation" (rows removed or renumbered: re-read every row's
        metadata) or "supersessions" (re-read only which sources are superseded)."""
        conn.execute("INSERT INTO meta VALUES (?, '1') ON CONFLICT (key) DO UPDATE "
                     "SET value = CAST(value AS INTEGER) + 1", (counter,))

    # ---- the in-memory columns and the index --------------------------------------------------
    def refresh(self) -> None:
        """Pick up what was committed since the last look, by this or another process: new rows, and
        (when the generation moved) removed rows, superseded sources and renumbered tracks."""
        conn = self._conn()
        with self._lock, self._db("read rows"):
            counters = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', "
                                         "'supersessions', 'links')").fetchall())
            generation, supersessions = counters.get("generation"), counters.get("supersessions")
            if counters.get("links") != self._links:
                self._person_of = dict(conn.execute("SELECT track, person FROM persons").fetchall()) \
                    if self._has_table(conn, "persons") else {}
                self._links = counters.get("links")
            self._read_new_rows(conn)
            self._check_edits(conn)
            self._maybe_remap(generation)
            if self._loaded and generation != self._generation:
                self._resync(conn)
            if not self._loaded or generation != self._generation or supersessions != self._supersessions:
                self._read_superseded(conn)
            self._loaded, self._generation, self._supersessions = True, generation, supersessions

    def _read_new_rows(self, conn, chunk: int = 20_000) -> None:
        """Rows committed after `_last_seen`, embeddings included, into the columns and the index delta;
        in chunks, so catching up on many rows never holds them all as Python objects at once."""
        while True:
            rows = conn.execute("SELECT id, camera, timestamp, track, embedding, source FROM crops WHERE id > ? "
                                "ORDER BY id LIMIT ?", (self._last_seen, chunk)).fetchall()
            if not rows:
                return
            self._append(self._usable(rows))
            self._last_seen = int(rows[-1][0])  # only once they are in memory
            if len(rows) < chunk:
                return

    def _maybe_remap(self, generation) -> None:
        """A process that only reads (a search service) while another ingests would hold every new row in
        its in-RAM delta until reopened. When the writer has saved a newer index file that covers rows we
        hold in RAM, map it instead and keep in RAM only the rows it lacks. One stat per refresh."""
        if self._index.delta_size < self.remap_delta:
            return
        side_path = self.index_path.with_suffix(".json")
        try:
            mtime = side_path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._side_mtime:
            return
        self._side_mtime = mtime
        side = self._read_sidecar()
        # the same rows removed and the same edits seen as ours, and nothing we have not read yet
        if not side or side.get("generation") != generation or side.get("edits", 0) != self._edits_seen \
                or not 0 < side.get("max_id", 0) <= self._last_seen:
            return
        try:
            newer = TieredIndex.view(self.index_path, self.dim, self.index_params)
        except (OSError, RuntimeError, ValueError):
            return
        if len(newer) != side.get("count"):  # replaced again between the sidecar and the index: next time
            return
        later = self._ids[self._ids > side["max_id"]]
        newer.add(later, self._index.get(later))
        self._index = newer

    def _check_edits(self, conn) -> None:
        """Rows whose embedding was changed in the table since we last looked (the `edits` log): a damaged
        one stops being served (kept, listed in `damaged`, warned about), a valid one is re-indexed."""
        if not self._edit_log:  # looked up until found (it never goes away), not on every query after
            self._edit_log = self._has_table(conn, "edits")
            if not self._edit_log:
                return
        log = conn.execute("SELECT n, key FROM edits WHERE n > ? ORDER BY n", (self._edits_seen,)).fetchall()
        if not log:
            return
        keys = sorted({int(k) for _, k in log} & set(self._ids[np.isin(self._ids, [k for _, k in log])].tolist()))
        self._edits_seen = int(log[-1][0])
        if not keys:
            return
        rows = conn.execute(f"SELECT id, camera, timestamp, track, embedding, source FROM crops WHERE id IN "
                            f"({','.join('?' * len(keys))}) ORDER BY id", keys).fetchall()
        good = self._usable(rows)  # warns about, and lists, the damaged ones
        bad = sorted(set(keys) - {int(r[0]) for r in good})
        if bad:
            self._drop(bad)
        if good:
            ids = np.array([r[0] for r in good], np.int64)
            self._index.remove(ids)
            vectors = np.frombuffer(b"".join(r[4] for r in good), np.float16).reshape(len(good), self.dim)
            self._index.add(ids, vectors.astype(np.float32))
            self._emb32 = None

    def _resync(self, conn) -> None:
        """Re-read every row's metadata (not the embeddings) and drop removed rows from memory and index."""
        meta = conn.execute("SELECT id, camera, timestamp, track, source FROM crops WHERE id <= ? ORDER BY id",
                            (self._last_seen,)).fetchall()
        ids = np.array([r[0] for r in meta], np.int64)
        keep = np.isin(self._ids, ids)
        gone = self._ids[~keep]
        here = np.isin(ids, self._ids)
        meta = [r for r, h in zip(meta, here) if h]  # damaged rows are in the table, not in memory
        self._buffers = {}  # new arrays: snapshots held by running searches stay as they were
        self._set_columns(meta)
        self._emb32 = None
        self.damaged = [k for k in self.damaged if k in set(ids.tolist())]
        if len(gone):
            self._index.remove(gone)

    def _set_columns(self, meta) -> None:
        """The in-memory columns from (id, camera, timestamp, track, source) rows, in key order."""
        self._ids = np.array([r[0] for r in meta], np.int64)
        self._camera = np.array([self._camera_code(r[1]) for r in meta], np.int32)
        self._time = np.array([np.nan if r[2] is None else r[2] for r in meta], np.float64)
        self._track = np.array([-1 if r[3] is None else r[3] for r in meta], np.int64)
        self._source = np.array([self._code(r[4]) for r in meta], np.int32)

    def _read_superseded(self, conn) -> None:
        if "superseded" in self._source_columns(conn):
            superseded = [self._code(s) for (s,) in conn.execute(
                "SELECT source FROM sources WHERE superseded IS NOT NULL")]
            self._superseded = np.array(sorted(superseded), np.int32)

    @staticmethod
    def _has_table(conn, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def _source_columns(self, conn) -> set[str]:
        if not self._columns >= set(SOURCE_COLUMNS):
            self._columns = {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
        return self._columns

    def _code(self, source: str) -> int:
        code = self._codes.get(source)
        if code is None:
            code = self._codes[source] = len(self._codes)
        return code

    def _camera_code(self, camera: str | None) -> int:
        code = self._cameras.get(camera)
        if code is None:
            code = self._cameras[camera] = len(self._cameras)
        return code

    def _camera_name(self, code: int) -> str | None:
        if len(self._camera_names) != len(self._cameras):
            self._camera_names = list(self._cameras)
        return self._camera_names[code]

    def _usable(self, rows) -> list:
        """Rows whose embedding blob is a finite float16 vector of this model's size. A damaged row is
        kept in SQLite (it is evidence) and listed in `damaged`, but never served: one bad blob must not
        make the rest of the gallery unsearchable."""
        good, bad = [], []
        want = 2 * self.dim
        for r in rows:
            blob = r[4]
            ok = isinstance(blob, bytes) and len(blob) == want and np.isfinite(np.frombuffer(blob, np.float16)).all()
            (good if ok else bad).append(r)
        if bad:
            keys = [int(r[0]) for r in bad]
            self.damaged += keys
            warnings.warn(f"{self.db_path}: {len(keys)} row(s) with a damaged embedding are skipped "
                          f"(keys {', '.join(map(str, keys[:10]))}{' ...' if len(keys) > 10 else ''})", stacklevel=3)
        return good

    def _append(self, rows, index: bool = True) -> None:
        """Rows (id, camera, timestamp, track, embedding, source) into the columns and, with index=True,
        the index delta. Only a gallery small enough to be searched exactly keeps a float32 matrix."""
        if not rows:
            return
        ids = np.array([r[0] for r in rows], np.int64)
        emb = np.frombuffer(b"".join(r[4] for r in rows), np.float16).reshape(len(rows), self.dim)
        new = {"ids": ids, "camera": np.array([self._camera_code(r[1]) for r in rows], np.int32),
               "time": np.array([np.nan if r[2] is None else r[2] for r in rows], np.float64),
               "track": np.array([-1 if r[3] is None else r[3] for r in rows], np.int64),
               "source": np.array([self._code(r[5]) for r in rows], np.int32)}
        n, m = len(self._ids), len(rows)
        for name, values in new.items():
            # columns live in buffers that double when full: appending m rows costs O(m), not O(gallery),
            # and views handed to a running search ([:n]) never change under it
            buf = self._buffers.get(name)
            if buf is None or len(buf) < n + m:
                grown = np.empty((max(2 * (n + m), 1024), *values.shape[1:]), values.dtype)
                if n:
                    grown[:n] = getattr(self, f"_{name}")
                buf = self._buffers[name] = grown
            buf[n : n + m] = values
            setattr(self, f"_{name}", buf[: n + m])
        vectors = emb.astype(np.float32)
        # the exact-search matrix grows with the rows (a new array: running searches keep theirs)
        self._emb32 = np.concatenate([self._emb32, vectors]) if self._emb32 is not None and n + m <= self.exact_max \
            else None
        if index:
            self._index.add(ids, vectors)

    def _vectors(self, keys: np.ndarray) -> np.ndarray:
        """float32 vectors of `keys` (stored precision), from the index: the only copy in memory."""
        return self._index.get(np.asarray(keys, np.int64))

    # ---- opening and saving the index -------------------------------------------------------------
    def _read_sidecar(self) -> dict:
        try:
            side = json.loads(self.index_path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return {}
        same = isinstance(side, dict) and side.get("fingerprint") == self.fingerprint and side.get("dim") == self.dim
        return side if same else {}

    def _open_index(self) -> None:
        """Map the saved index and bring it up to date, doing the least work the files allow:
        - sidecar, columns file and index agree with the table's generation: map the index, load the
          columns, add only the rows committed after the save (milliseconds at a million rows);
        - the index file is usable but the rest is not (rows removed since, a crash between renames):
          map it, re-read the columns from SQLite, add the rows it lacks;
        - no usable index file: rebuild it from SQLite (and save it, when writable)."""
        conn = self._conn()
        side = self._read_sidecar()
        with self._lock, self._db("read rows"):
            generation = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            generation = generation[0] if generation else None
            try:
                index = TieredIndex.view(self.index_path, self.dim, self.index_params) \
                    if self.index_path.is_file() else None
            except (OSError, RuntimeError, ValueError):  # a damaged cache file: rebuilt from the truth
                index = None
            how = "rebuilt"
            self._edits_seen = int(side.get("edits", 0))  # edits after the save are re-checked by refresh
            if index is not None and side and side.get("count") == len(index) \
                    and side.get("generation") == generation and self._load_columns(side):
                how = "mapped"
                self._index = index
            elif index is not None:
                how = "rows_added"
                self._index = index
                self._load_columns_from_table(conn, index)
            else:
                self._index = TieredIndex(self.dim, self.index_params)
                self._last_seen = 0
                if self._has_table(conn, "edits"):  # every blob is read (and checked) by the rebuild
                    self._edits_seen = conn.execute("SELECT coalesce(max(n), 0) FROM edits").fetchone()[0]
            added_before = self._index.delta_size
            self.refresh()
            self.opened = {"how": how, "rows_added": self._index.delta_size - added_before,
                           "rows": int(len(self._ids))}
        if how != "mapped" and len(self._ids) and not self.read_only:  # read-only: the index stays in memory
            self.persist_index()

    def _load_columns(self, side: dict) -> bool:
        """The columns saved with the index, when they describe exactly the rows it holds."""
        try:
            with np.load(self.columns_path, allow_pickle=False) as f:
                cols = {k: f[k] for k in ("ids", "camera", "time", "track", "source")}
                names = json.loads(bytes(f["names"]).decode())
        except (OSError, ValueError, KeyError):
            return False
        ids = cols["ids"]
        if len(ids) != side.get("count") or names.get("max_id") != side.get("max_id") \
                or any(len(c) != len(ids) for c in cols.values()):
            return False
        self._cameras = {c: i for i, c in enumerate(names["cameras"])}
        self._codes = {s: i for i, s in enumerate(names["sources"])}
        self._buffers = {}
        self._ids, self._camera, self._time = ids.astype(np.int64), cols["camera"].astype(np.int32), cols["time"]
        self._track, self._source = cols["track"].astype(np.int64), cols["source"].astype(np.int32)
        self.damaged = [int(k) for k in names.get("damaged", [])]
        self._last_seen = int(side["max_id"])
        return True

    def _load_columns_from_table(self, conn, index: TieredIndex) -> None:
        """Columns of every row from SQLite (without the embeddings), and into the index the rows its
        file lacks (their embeddings read by key, in chunks); keys it holds that left the table are
        masked. What a crash between the index's rename and its sidecar's costs: one pass over the keys."""
        meta = conn.execute("SELECT id, camera, timestamp, track, source FROM crops ORDER BY id").fetchall()
        ids = np.array([r[0] for r in meta], np.int64)
        keep = index.contains(ids) if len(ids) else np.zeros(0, bool)
        missing = ids[~keep].tolist()
        for i in range(0, len(missing), 500):
            part = missing[i : i + 500]
            rows = self._usable(conn.execute(
                f"SELECT id, camera, timestamp, track, embedding, source FROM crops WHERE id IN "
                f"({','.join('?' * len(part))}) ORDER BY id", part).fetchall())
            if rows:
                got = np.array([r[0] for r in rows], np.int64)
                vectors = np.frombuffer(b"".join(r[4] for r in rows), np.float16).reshape(len(rows), self.dim)
                index.add(got, vectors.astype(np.float32))
                keep[np.searchsorted(ids, got)] = True
        self._buffers = {}
        self._set_columns([r for r, k in zip(meta, keep) if k])
        self._last_seen = int(ids[-1]) if len(ids) else 0
        base = index.base
        if base is not None and len(base) > int(keep.sum()) - index.delta_size:  # rows removed since the save
            index.remove(np.setdiff1d(np.asarray(base.keys, np.int64), ids))

    def _save_index(self) -> None:
        """Index, columns, then sidecar, each to its own temp file, fsynced, renamed into place; the index
        is then mapped from the new file. The sidecar goes last, so a crash at any point leaves either the
        last good set or a newer index that `_open_index` recognises by its keys. The first save of each
        store object also clears temp files of dead writers (opening alone never writes)."""
        if not self._cleaned:
            self._cleaned = True
            remove_stale_temps(self.dir)
        side = self.index_path.with_suffix(".json")
        tmp = temp_name(self.index_path, self)
        tmp_cols = temp_name(self.columns_path, self)
        try:
            whole = self._index.materialise()
            whole.save(str(tmp))
            fsync_path(tmp)
            count = len(whole)
            del whole
            generation = self._conn().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            names = {"cameras": list(self._cameras), "sources": list(self._codes), "max_id": self._last_seen,
                     "damaged": self.damaged}
            with open(tmp_cols, "wb") as f:
                np.savez(f, ids=self._ids, camera=self._camera, time=self._time, track=self._track,
                         source=self._source, names=np.frombuffer(json.dumps(names).encode(), np.uint8))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.index_path)
            os.replace(tmp_cols, self.columns_path)
            write_atomic(side, json.dumps({"count": count, "max_id": self._last_seen, "fingerprint": self.fingerprint,
                                           "dim": self.dim, "generation": generation[0] if generation else None,
                                           "edits": self._edits_seen,
                                           "params": json.loads(self.index_params.to_json())}).encode())
            self._index = TieredIndex.view(self.index_path, self.dim, self.index_params)
        finally:
            for t in (tmp, tmp_cols):
                with contextlib.suppress(OSError):
                    t.unlink()

    def persist_index(self) -> None:
        """Save the index (once per ingest call, and whenever PERSIST_DELTA rows wait in RAM: it is a
        cache, and a crash before this point only means those rows are re-read from SQLite on the next open)."""
        with self._lock:
            try:
                self._save_index()
            except (OSError, RuntimeError, MemoryError) as e:  # the rows are committed; only the cache is not
                warnings.warn(f"{self.index_path}: index cache not saved ({e}); the rows it lacks are added "
                              f"again on the next open", stacklevel=3)

    # ---- writing ------------------------------------------------------------------------------
    def check_writable(self) -> None:
        if self.read_only:
            raise GalleryError(f"gallery {self.dir} is on read-only media (or its files are read-only): it can be "
                               f"searched, not written")

    def add_embeddings(self, vectors: np.ndarray, rows: list[Row],
                       source: SourceRecord | list[SourceRecord] | None = None,
                       local_tracks: bool = False, spans: dict | None = None) -> tuple[int, int]:
        """Store one row per vector (normalised, kept as float16) in one transaction, with the records of
        `source` (one or a list) when given; returns (added, already present). Rows are unique on (source, frame, bbox).
        With local_tracks the rows' track numbers (1, 2, ...) are local to this call and become
        gallery-wide ids inside the committing transaction, so concurrent writers never share one.
        `spans`: track number -> (first frame, last frame, start time, end time) of the tracks' whole
        lives, kept for identity linking."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape != (len(rows), self.dim):
            raise GalleryError(f"add_embeddings needs a [{len(rows)}, {self.dim}] array for {len(rows)} rows, "
                               f"not {list(vectors.shape)}")
        if not np.isfinite(vectors).all():
            raise GalleryError("add_embeddings: vectors must be finite (NaN or inf found)")
        emb = normalise(vectors).astype(np.float16)
        records = [(r.source, r.camera, int(r.frame), r.timestamp, *map(int, r.bbox), r.track, r.crop_path,
                    e.tobytes()) for r, e in zip(rows, emb)]
        with self._writing("write") as conn:
            base = 0
            if local_tracks and records:
                base = int(conn.execute("SELECT value FROM meta WHERE key='next_track'").fetchone()[0]) - 1
                top = max((r[8] for r in records if r[8] is not None), default=0)
                records = [(*r[:8], None if r[8] is None else base + r[8], *r[9:]) for r in records]
                conn.execute("UPDATE meta SET value=? WHERE key='next_track'", (str(base + top + 1),))
            elif records:  # tracks given by the caller: keep the counter above them
                top = max((r[8] for r in records if r[8] is not None), default=None)
                if top is not None:
                    conn.execute("UPDATE meta SET value = max(CAST(value AS INTEGER), ?) WHERE key='next_track'",
                                 (top + 1,))
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO crops (source, camera, frame, timestamp, x, y, w, h, track, "
                             "crop_path, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
            added = conn.total_changes - before
            if spans and added:
                conn.execute(SPANS)
                wanted = {base + int(t): v for t, v in spans.items()}
                present = {t for (t,) in conn.execute(
                    f"SELECT DISTINCT track FROM crops WHERE track IN ({','.join('?' * len(wanted))})", list(wanted))}
                conn.executemany("INSERT OR REPLACE INTO track_spans VALUES (?, ?, ?, ?, ?)",
                                 [(t, *wanted[t]) for t in sorted(present)])
            for record in [source] if isinstance(source, SourceRecord) else source or []:
                self._record_source(conn, record)
        if self._index.delta_size >= max(PERSIST_DELTA, len(self._index) // 4):
            # bounds what a crash leaves to re-index; growing with the gallery, so that a bulk import
            # rewrites the index file a logarithmic number of times, not once per 50,000 rows
            self.persist_index()
        return added, len(records) - added

    @contextlib.contextmanager
    def _writing(self, doing: str):
        """One write transaction (BEGIN IMMEDIATE: one writer at a time across processes), the schema
        migrated first when needed; committed when the block ends, rolled back if it raises, and the
        in-memory view refreshed after."""
        self.check_writable()
        with self._write_lock, self._db(doing):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not self._migrated:
                    self._migrate(conn)
                    for statement in EDIT_LOG:
                        conn.execute(statement)
                yield conn
                conn.execute("COMMIT")
                self._migrated = True
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.refresh()

    def _record_source(self, conn, s: SourceRecord) -> None:
        """Write `s` in the committing transaction. Refused (SourceConflict, nothing of the transaction
        kept) when its source was superseded meanwhile (the file was replaced while this ingest ran), or
        when a first commit finds the key already taken by other content (two ingests of one path with
        different content at once)."""
        old = conn.execute("SELECT superseded, head FROM sources WHERE source=?", (s.source,)).fetchone()
        if old is not None and old[0] is not None:
            raise SourceConflict(f"{s.path or s.source}: superseded by a newer version of the file while this "
                                 f"ingest ran; nothing of this batch was stored")
        if s.first and old is not None and old[1] is not None and s.head is not None and old[1] != s.head:
            raise SourceConflict(f"{s.path or s.source}: another ingest stored different content under this "
                                 f"source at the same time; ingest it again")
        if s.supersedes is not None and s.supersedes != s.source:
            conn.execute("UPDATE sources SET superseded=? WHERE source=? AND superseded IS NULL",
                         (s.finished, s.supersedes))
            self._bump(conn, "supersessions")
        conn.execute("INSERT INTO sources (source, kind, rows, finished, resume_frame, frames, size, mtime_ns, head, "
                     "path) VALUES (?1, ?2, (SELECT count(*) FROM crops WHERE source = ?1), ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                     "ON CONFLICT (source) DO UPDATE SET kind=excluded.kind, rows=excluded.rows, "
                     "finished=excluded.finished, resume_frame=excluded.resume_frame, frames=excluded.frames, "
                     "size=excluded.size, mtime_ns=excluded.mtime_ns, head=excluded.head, path=excluded.path",
                     (s.source, s.kind, s.finished, s.resume_frame, s.frames, s.size, s.mtime_ns, s.head,
                      s.path or s.source))

    def remove(self, keys) -> int:
        """Delete rows by key (and their index entries) in one transaction; returns how many existed.
        Removals are logged in the `removed` table (key, source, time): a gallery is evidence, and
        what left it, and when, is part of that. Keys are never reused."""
        keys = sorted({int(k) for k in keys})
        self.check_writable()
        if not keys:
            return 0
        with self._writing("remove rows") as conn:
            now, gone = time.time(), 0
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                marks = ",".join("?" * len(part))
                conn.execute(f"INSERT OR IGNORE INTO removed (key, source, at) SELECT id, source, ? FROM crops "
                             f"WHERE id IN ({marks})", [now, *part])
                before = conn.total_changes
                conn.execute(f"DELETE FROM crops WHERE id IN ({marks})", part)
                gone += conn.total_changes - before
            conn.execute("UPDATE sources SET rows = (SELECT count(*) FROM crops WHERE crops.source = "
                         "sources.source) WHERE source IN (SELECT source FROM removed WHERE at = ?)", (now,))
            self._bump(conn)
        if gone:
            self.persist_index()
        return gone

    # ---- sources ------------------------------------------------------------------------------
    def source(self, path: str) -> dict | None:
        """The current (not superseded) record of the source read from `path`, None if never ingested."""
        with self._db("read sources"):
            conn = self._conn()
            cols = self._source_columns(conn)
            if "path" in cols and self._migrated_on_disk(conn):
                cur = conn.execute("SELECT * FROM sources WHERE path=? AND superseded IS NULL "
                                   "ORDER BY finished DESC LIMIT 1", (path,))
            else:  # a schema-1 gallery, not yet written by this version: sources were keyed by path alone
                cur = conn.execute("SELECT * FROM sources WHERE source=?", (path,))
            row = cur.fetchone()
            if row is not None:
                return dict(zip([d[0] for d in cur.description], row))
            # rows without a record: images ingested by schema 1 (content never fingerprinted)
            if conn.execute("SELECT 1 FROM crops WHERE source=? LIMIT 1", (path,)).fetchone() is not None:
                return {"source": path, "kind": "image", "path": path, "head": None, "resume_frame": None}
            return None

    @staticmethod
    def _migrated_on_disk(conn) -> bool:
        return conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (SCHEMA_VERSION,)

    def new_source_key(self, path: str, content: str) -> str:
        """The key for a new version of the file at `path` whose content fingerprint is `content`: the
        path itself the first time, else "path#<12 hex of the fingerprint>". Rows are unique per source,
        so a replaced file needs a key of its own; deriving it from the content means two ingests of the
        same new content agree on it, and two of different content never share one."""
        with self._db("read sources"):
            taken = self._conn().execute("SELECT 1 FROM sources WHERE source=? UNION ALL SELECT 1 FROM crops "
                                         "WHERE source=? LIMIT 1", (path, path)).fetchone()
        digest = hashlib.sha1(content.encode()).hexdigest()[:12]
        return path if taken is None else f"{path}#{digest}"

    def rows_of(self, source: str, limit: int = 2) -> list[Row]:
        """Up to `limit` rows of one source (by the unique index), for checks on a single source."""
        with self._db("read rows"):
            keys = [k for (k,) in self._conn().execute("SELECT id FROM crops WHERE source=? LIMIT ?",
                                                       (source, limit))]
        return list(self.rows(keys).values())

    def source_record(self, source: str) -> dict | None:
        """The stored record of the source key `source` (path, content identity, kind), None if it has none."""
        with self._db("read sources"):
            cur = self._conn().execute("SELECT * FROM sources WHERE source=?", (source,))
            row = cur.fetchone()
            return None if row is None else dict(zip([d[0] for d in cur.description], row))

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        """What surrounds row `key`: the keys of its track (time order) and of up to `nearby` other rows of
        its camera nearest to it in time. From the in-memory columns, so it costs no table scan.
        UnknownKey for a key not in the gallery."""
        self.refresh()
        with self._lock:
            view = self._view()
        n = len(view.ids)
        i = int(np.searchsorted(view.ids, key))
        if i >= n or view.ids[i] != key:
            raise UnknownKey(f"no row with key {key} in the gallery")
        track = int(view.track[i])
        same_track = np.flatnonzero(view.track == track) if track >= 0 else np.array([i])
        same_track = same_track[np.lexsort((view.ids[same_track], np.nan_to_num(view.time[same_track], nan=np.inf)))]
        others = np.flatnonzero((view.camera == view.camera[i]) & (view.track != track if track >= 0 else True))
        others = others[others != i]
        t = view.time[i]
        gap = np.abs(view.time[others] - t) if not np.isnan(t) else np.abs(others - i).astype(np.float64)
        gap = np.nan_to_num(gap, nan=np.inf)
        pick = others[np.lexsort((view.ids[others], gap))[:nearby]]
        pick = pick[np.lexsort((view.ids[pick], np.nan_to_num(view.time[pick], nan=np.inf)))]
        return [int(k) for k in view.ids[same_track]], [int(k) for k in view.ids[pick]]

    def camera_summary(self) -> list[dict]:
        """Each camera (None for rows without one) with its row count and first and last time, by name."""
        self.refresh()
        with self._lock:
            view = self._view()
        out = []
        if len(view.ids):
            order = np.argsort(view.camera, kind="stable")
            codes = view.camera[order]
            cuts = np.flatnonzero(np.diff(codes)) + 1
            for part in np.split(order, cuts):
                t = view.time[part]
                t = t[~np.isnan(t)]
                out.append({"name": self._camera_name(int(view.camera[part[0]])), "rows": int(len(part)),
                            "first": float(t.min()) if len(t) else None, "last": float(t.max()) if len(t) else None})
        return sorted(out, key=lambda c: (c["name"] is None, c["name"] or ""))

    def has_row(self, source: str, frame: int, bbox) -> bool:
        with self._db("read rows"):
            return self._conn().execute("SELECT 1 FROM crops WHERE source=? AND frame=? AND x=? AND y=? AND w=? "
                                        "AND h=?", (source, frame, *bbox)).fetchone() is not None

    # ---- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        self.refresh()
        return len(self._ids)

    def search(self, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
               until: float | None = None, per_track: bool = True, superseded: bool = False,
               per_person: bool = False) -> list[Row]:
        """The best k rows for `query` matching the filters, as Rows with their cosine `score`, sorted by
        score then key; one per track unless per_track=False, one per linked person with per_person=True
        (a track not linked to others is a person of its own); rows of superseded sources only with
        superseded=True."""
        pairs = self.nearest(query, k, camera, since, until, per_track, superseded, per_person)
        rows = self.rows([key for key, _ in pairs])
        return [_with_score(rows[key], score) for key, score in pairs if key in rows]

    def nearest(self, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
                until: float | None = None, per_track: bool = True,
                superseded: bool = False, per_person: bool = False) -> list[tuple[int, float]]:
        """`search` as (key, cosine) pairs, without reading the rows.

        The lock is held only to take a snapshot of the columns (views that later appends never
        change); scoring runs outside it, batched with the queries of other threads."""
        self.refresh()
        q = normalise(np.asarray(query).reshape(-1))
        if q.shape != (self.dim,):
            raise GalleryError(f"a query vector must have {self.dim} values, not {q.size}")
        with self._lock:
            view = self._view()
            if per_person:
                view.group = self._person_of
            if len(view.ids) <= self.exact_max and len(view.ids):
                if self._emb32 is None or len(self._emb32) != len(view.ids):
                    self._emb32 = self._vectors(view.ids)
                view.emb32 = self._emb32
        n = len(view.ids)
        if n == 0 or k <= 0:
            return []
        mask = self._mask(view, camera, since, until, superseded)
        selected = n if mask is None else int(mask.sum())
        if selected == 0:
            return []
        if view.emb32 is not None:  # a small gallery: exact search over the cached float32 matrix
            matrix = view.emb32
            scores = self._batcher.run(("exact", id(matrix)), q, lambda qs: _matrix_times(matrix, qs))
            pos = np.arange(n) if mask is None else np.flatnonzero(mask)
            return self._top(view, pos, scores if mask is None else scores[pos], k, per_track)
        if mask is not None and selected <= self.filtered_exact_max:  # a selective filter: exact over it
            pos = np.flatnonzero(mask)
            with self._lock:
                vectors = self._vectors(view.ids[pos])
            return self._top(view, pos, vectors @ q, k, per_track)
        fetch = min(n, max(4 * k, 64))
        while True:  # over-fetch from the graph, post-filter, widen until enough survive
            keys, dist = self._batcher.run(("graph", fetch), q, lambda qs, f=fetch: self._graph(qs, f))
            pos = np.searchsorted(view.ids, keys)
            known = pos < n  # rows added after the snapshot are left for the next query
            known[known] = view.ids[pos[known]] == keys[known]
            pos, scores = pos[known], 1.0 - dist[known]
            if mask is not None:
                keep = mask[pos]
                pos, scores = pos[keep], scores[keep]
            hits = self._top(view, pos, scores, k, per_track)
            if len(hits) >= k or fetch >= n:
                return hits
            fetch = min(n, fetch * 4)

    def _graph(self, queries: np.ndarray, fetch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """One batched HNSW search for the queries of several threads: [(keys, distances)] per query."""
        with self._lock:
            return self._index.search(queries, fetch)

    def _view(self) -> _View:
        """A snapshot of the columns (call under the lock)."""
        return _View(self._ids, self._camera, self._time, self._track, self._source, self._superseded)

    def _mask(self, view: _View, camera, since, until, superseded: bool) -> np.ndarray | None:
        mask = None
        if isinstance(camera, str):
            mask = view.camera == self._cameras.get(camera, -1)  # an unknown camera selects nothing
        elif camera is not None:  # any of several cameras
            mask = np.isin(view.camera, [self._cameras.get(c, -1) for c in camera])
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

    def _top(self, view: _View, pos: np.ndarray, scores: np.ndarray, k: int,
             per_track: bool) -> list[tuple[int, float]]:
        """Best k by score (ties by key), one per track when asked. Sorts only the leading candidates."""
        want = k * 8 if per_track or view.group is not None else k
        if len(scores) > 4 * want:
            threshold = np.partition(scores, len(scores) - want)[len(scores) - want]
            lead = np.flatnonzero(scores >= threshold)  # every tie at the boundary stays in
            hits = self._collapse(view, pos[lead], scores[lead], k, per_track)
            if len(hits) == k:
                return hits
        return self._collapse(view, pos, scores, k, per_track)

    @staticmethod
    def _collapse(view: _View, pos: np.ndarray, scores: np.ndarray, k: int,
                  per_track: bool) -> list[tuple[int, float]]:
        keys = view.ids[pos]
        order = np.lexsort((keys, -scores))
        out, seen = [], set()
        group = view.group
        for i in order:
            if per_track or group is not None:
                tr = int(view.track[pos[i]])
                if tr >= 0:
                    who = ("p", group.get(tr, tr)) if group is not None else tr
                    if who in seen:
                        continue
                    seen.add(who)
            out.append((int(keys[i]), float(scores[i])))
            if len(out) == k:
                break
        return out

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        """Every row's key (of one camera when given), in insertion order."""
        self.refresh()
        with self._lock:
            view = self._view()
        mask = self._mask(view, camera, None, None, superseded)
        return [int(k) for k in (view.ids if mask is None else view.ids[mask])]

    def rows(self, keys: list[int]) -> dict[int, Row]:
        """The stored rows of `keys` (missing keys are left out), superseded ones marked."""
        keys = [int(k) for k in keys]
        if not keys:
            return {}
        out = {}
        with self._db("read rows"):
            conn = self._conn()
            current = "superseded" in self._source_columns(conn)
            flag = ("(SELECT s.superseded IS NOT NULL FROM sources s WHERE s.source = c.source)" if current
                    else "0")
            person = ("(SELECT p.person FROM persons p WHERE p.track = c.track)" if self._has_table(conn, "persons")
                      else "NULL")
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                cur = conn.execute(f"SELECT id, source, camera, frame, timestamp, x, y, w, h, track, crop_path, {flag}, "
                                   f"{person} FROM crops c WHERE id IN ({','.join('?' * len(part))})", part)
                for r in cur:
                    out[r[0]] = Row(r[1], r[2], r[3], r[4], (r[5], r[6], r[7], r[8]), r[9], r[10], key=r[0],
                                    superseded=bool(r[11]), person=r[12])
        return out

    # ---- index parameters -----------------------------------------------------------------------
    def tune_index(self, target: float = 0.99, k: int = 10, queries: np.ndarray | None = None,
                   sample: int = 300, widths=(64, 96, 128, 192, 256, 384, 512, 768, 1024), seed: int = 0) -> dict:
        """Choose the smallest search width (usearch expansion_search) whose recall@k against exact search
        reaches `target` (with 95 % confidence over the sampled queries) on this gallery, store it in the
        gallery and use it from now on (other processes
        on their next open). `queries`: [m, dim] query embeddings (text queries of your users are best);
        by default `sample` stored vectors, each asked for its k nearest *other* rows. Recall is that of
        the graph candidates the gallery ranks (its over-fetch of max(4k, 64) included; a width below the
        over-fetch is the over-fetch), exact is a scan of every stored vector in chunks. Returns what was
        measured and chosen."""
        self.refresh()
        with self._lock:
            ids = self._ids.copy()
        if len(ids) < 2 * k:
            raise GalleryError(f"tune_index needs at least {2 * k} rows, the gallery holds {len(ids)}")
        own = None
        if queries is None:
            rng = np.random.default_rng(seed)
            own = np.sort(rng.choice(ids, min(sample, len(ids)), replace=False))
            with self._lock:
                queries = self._vectors(own)
        queries = normalise(np.atleast_2d(queries))
        if queries.shape[1] != self.dim:
            raise GalleryError(f"tune_index: queries must be {self.dim}-d, not {queries.shape[1]}-d")
        extra = 0 if own is None else 1
        truth = self._exact_topk(ids, queries, k + extra)
        if own is not None:
            truth = [[key for key in row if key != q][:k] for row, q in zip(truth, own)]
        fetch = max(4 * k, 64) + extra
        measured, chosen = [], None
        before = self.index_params.expansion_search
        try:
            for width in sorted(set(int(w) for w in widths)):
                with self._lock:
                    self._index.set_expansion_search(width)
                    found = self._index.search(queries, fetch)
                hits = [[key for key in f[0].tolist() if own is None or key != q][:k]
                        for f, q in zip(found, own if own is not None else [None] * len(found))]
                r = float(np.mean([len(set(h) & set(t)) / max(len(t), 1) for h, t in zip(hits, truth)]))
                # reached only with 95 % confidence: a measured 0.993 on 3,000 neighbours may be 0.989 on
                # other queries (seen at 1M rows), so the sampling error is taken off before comparing
                low = r - 1.96 * np.sqrt(max(r * (1 - r), 1e-12) / (len(queries) * k))
                measured.append({"expansion_search": width, f"recall@{k}": r, "lower_95": float(low)})
                if low >= target:
                    chosen = width
                    break
        finally:
            with self._lock:
                self._index.set_expansion_search(before)
        if chosen is None:
            chosen = measured[-1]["expansion_search"]
        params = IndexParams(self.index_params.connectivity, self.index_params.expansion_add, chosen)
        report = {"target": target, "k": k, "queries": len(queries), "query_source": "gallery" if own is not None
                  else "given", "rows": int(len(ids)), "measured": measured, "chosen": chosen,
                  "reached": measured[-1]["lower_95"] >= target, "at": time.time()}
        with self._writing("store index parameters") as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('index_params', ?)", (params.to_json(),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('index_tuning', ?)", (json.dumps(report),))
        with self._lock:
            self.index_params = params
            self._index.set_expansion_search(chosen)
        return report

    def _exact_topk(self, ids: np.ndarray, queries: np.ndarray, k: int, chunk: int = 50_000) -> list[list[int]]:
        """Exact top-k keys per query over every stored vector, a chunk of the index at a time."""
        best_s = np.full((len(queries), 0), -np.inf, np.float32)
        best_k = np.zeros((len(queries), 0), np.int64)
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            with self._lock:
                vectors = self._vectors(part)
            s = np.concatenate([best_s, queries @ vectors.T], axis=1)
            keys = np.concatenate([best_k, np.broadcast_to(part, (len(queries), len(part)))], axis=1)
            top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
            best_s, best_k = np.take_along_axis(s, top, 1), np.take_along_axis(keys, top, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        return np.take_along_axis(best_k, order, 1).tolist()

    # ---- identities across cameras --------------------------------------------------------------
    def track_summaries(self) -> list:
        """Every track of a current (not superseded) source as a `identity.TrackSummary`: camera, first and
        last timestamp, normalised mean embedding."""
        self.refresh()
        with self._lock:
            view = self._view()
        mask = self._mask(view, None, None, None, False)
        pos = np.flatnonzero(view.track >= 0) if mask is None else np.flatnonzero(mask & (view.track >= 0))
        if not len(pos):
            return []
        tracks = view.track[pos]
        order = np.argsort(tracks, kind="stable")
        pos, tracks = pos[order], tracks[order]
        cuts = np.flatnonzero(np.diff(tracks)) + 1
        spans = {}
        with self._db("read track spans"):
            conn = self._conn()
            if self._has_table(conn, "track_spans"):
                spans = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT track, start, end FROM track_spans")}
        out = []
        for part in np.split(pos, cuts):
            track = int(view.track[part[0]])
            t = view.time[part]
            known = t[~np.isnan(t)]
            start, end = spans.get(track, (None, None))
            if start is None or end is None:  # images, or videos ingested before spans were kept
                start, end = (float(known.min()), float(known.max())) if len(known) else (None, None)
            with self._lock:
                mean = self._vectors(view.ids[part]).astype(np.float64).mean(axis=0)
            out.append(TrackSummary(track, self._camera_name(int(view.camera[part[0]])), start, end,
                                    (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)))
        return out

    def set_persons(self, person_of: dict[int, int], params: dict) -> None:
        """Replace every track's linked person in one transaction (what `link_identities` computed with
        `params`); other open readers pick the new links up on their next query."""
        import json

        with self._writing("store identities") as conn:
            conn.execute(PERSONS)
            conn.execute("DELETE FROM persons")
            conn.executemany("INSERT INTO persons VALUES (?, ?)", sorted(person_of.items()))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('link_params', ?)", (json.dumps(params),))
            self._bump(conn, "links")

    def appearances(self, person: int) -> list:
        """The tracks linked to `person` (or the track `person` when it was never linked), in time order."""
        with self._db("read a timeline"):
            conn = self._conn()
            tracks = [person]
            if self._has_table(conn, "persons"):
                tracks = [t for (t,) in conn.execute("SELECT track FROM persons WHERE person=?", (person,))]
                if not tracks and conn.execute("SELECT 1 FROM persons WHERE track=?", (person,)).fetchone() is None:
                    tracks = [person]  # a track never linked (ingested after the last link) is its own person
            spans = self._has_table(conn, "track_spans")
            span_cols = "s.start, s.end, s.first_frame, s.last_frame" if spans else "NULL, NULL, NULL, NULL"
            join = "LEFT JOIN track_spans s ON s.track = c.track" if spans else ""
            rows = conn.execute(
                f"SELECT c.track, c.camera, c.source, min(c.timestamp), max(c.timestamp), min(c.frame), max(c.frame), "
                f"group_concat(c.id), {span_cols} FROM crops c {join} "
                f"WHERE c.track IN ({','.join('?' * len(tracks))}) GROUP BY c.track", tracks).fetchall()
        out = [Appearance(person, r[0], r[1], r[2], r[8] if r[8] is not None else r[3],
                          r[9] if r[9] is not None else r[4], r[10] if r[10] is not None else r[5],
                          r[11] if r[11] is not None else r[6], tuple(sorted(int(k) for k in str(r[7]).split(","))))
               for r in rows]
        return sorted(out, key=lambda a: (a.start is None, a.start or 0.0, a.track))

    def embedding(self, key: int) -> np.ndarray:
        """Row `key`'s stored (unit) vector; UnknownKey when the gallery has no such row."""
        self.refresh()
        with self._lock:
            i = int(np.searchsorted(self._ids, key))
            if i >= len(self._ids) or self._ids[i] != key:
                raise UnknownKey(f"no row with key {key} in the gallery")
            return self._vectors(np.array([key]))[0]

    def stats(self) -> dict:
        with self._db("read statistics"):
            conn = self._conn()
            n, cams, t0, t1, tracks = conn.execute(
                "SELECT count(*), count(DISTINCT camera), min(timestamp), max(timestamp), count(DISTINCT track) "
                "FROM crops").fetchone()
            cameras = [c for (c,) in conn.execute("SELECT DISTINCT camera FROM crops WHERE camera IS NOT NULL "
                                                  "ORDER BY camera")]
            sources = conn.execute("SELECT count(DISTINCT source) FROM crops").fetchone()[0]
            superseded = 0
            if "superseded" in self._source_columns(conn):
                superseded = conn.execute("SELECT count(*) FROM sources WHERE superseded IS NOT NULL").fetchone()[0]
        return {"rows": n, "sources": sources, "superseded_sources": superseded, "tracks": tracks,
                "cameras": cameras, "time_span": [t0, t1] if t0 is not None else None,
                "index_size": len(self._index), "damaged_rows": len(self.damaged),
                "index": {"params": json.loads(self.index_params.to_json()), "opened": self.opened,
                          "unsaved_rows": self._index.delta_size, **self._index.memory()}}

    def check(self) -> dict:
        """A full consistency check, for `info --check`: SQLite's integrity check over every page, every
        row's embedding blob (a row damaged after it was indexed is found here, then no longer served),
        and the index against the table (same keys, a sample of vectors equal up to float16 rounding).
        Returns {"ok": bool, "problems": [one line each], ...figures}."""
        problems = []
        with self._db("check the database"):
            result = [r[0] for r in self._conn().execute("PRAGMA integrity_check(20)")]
            rows = self._conn().execute("SELECT count(*) FROM crops").fetchone()[0]
        if result != ["ok"]:
            problems += [f"sqlite: {line}" for line in result]
        self.refresh()
        with self._lock:
            ids = self._ids
            sample = set(ids[:: max(1, len(ids) // 1000)].tolist())  # up to ~1,000 vectors compared
        bad, blobs = self._scan_blobs(sample)
        if bad:
            self._forget(bad)
        if self.damaged:
            problems.append(f"{len(self.damaged)} row(s) with a damaged embedding: keys "
                            f"{', '.join(map(str, self.damaged[:10]))}{' ...' if len(self.damaged) > 10 else ''}")
        with self._lock:
            ids, index = self._ids, self._index
            in_index = len(index)
            present = np.asarray(index.contains(ids), bool) if len(ids) else np.zeros(0, bool)
            missing = [int(k) for k in ids[~present]]
            indexed = set(ids[present].tolist())  # once, not per sampled key
            keys = np.array(sorted(k for k in blobs if k in indexed), np.int64)
            got = index.get(keys) if len(keys) else None
        worst = 0.0
        if got is not None:
            want = np.stack([np.frombuffer(blobs[int(k)], np.float16) for k in keys]).astype(np.float32)
            worst = float(np.abs(normalise(got) - normalise(want)).max())
        if missing:
            problems.append(f"index lacks {len(missing)} row(s) of the table (keys {missing[:5]}...); "
                            f"it is rebuilt on the next writable open")
        if in_index != len(ids):
            problems.append(f"index holds {in_index} vectors, the table {len(ids)} usable rows")
        if worst > 1e-2:
            problems.append(f"index vectors differ from the table's by up to {worst:.3g}")
        return {"ok": not problems, "problems": problems, "rows": rows, "usable_rows": len(ids),
                "index_size": in_index, "max_vector_difference": worst}

    def _scan_blobs(self, sample: set, chunk: int = 20_000) -> tuple[list[int], dict]:
        """Every stored embedding blob checked (size and finite values), in chunks of keys: the damaged
        keys not yet known, and the blobs of the `sample` keys."""
        want, bad, blobs, last = 2 * self.dim, [], {}, 0
        known = set(self.damaged)
        with self._db("read embeddings"):
            while True:
                part = self._conn().execute("SELECT id, embedding FROM crops WHERE id > ? ORDER BY id LIMIT ?",
                                            (last, chunk)).fetchall()
                for key, blob in part:
                    ok = isinstance(blob, bytes) and len(blob) == want and \
                        bool(np.isfinite(np.frombuffer(blob, np.float16)).all())
                    if not ok and key not in known:
                        bad.append(int(key))
                    elif ok and key in sample:
                        blobs[int(key)] = blob
                if len(part) < chunk:
                    return bad, blobs
                last = part[-1][0]

    def _forget(self, keys: list[int]) -> None:
        """Stop serving rows found damaged after they were indexed (see `_drop`), and say so."""
        self._drop(keys)
        warnings.warn(f"{self.db_path}: {len(keys)} indexed row(s) have a damaged embedding in the table and are "
                      f"no longer served (keys {', '.join(map(str, keys[:10]))})", stacklevel=3)

    def _drop(self, keys: list[int]) -> None:
        """Rows out of the columns and the index, listed in `damaged` (the rows stay in SQLite: they are
        evidence)."""
        with self._lock:
            drop = np.isin(self._ids, np.asarray(keys, np.int64))
            self._buffers = {}  # new arrays: running searches keep their snapshots
            for name in ("ids", "camera", "time", "track", "source"):
                setattr(self, f"_{name}", getattr(self, f"_{name}")[~drop].copy())
            self._emb32 = None
            self._index.remove(np.asarray(keys, np.int64))
            self.damaged = sorted(set(self.damaged) | set(keys))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _matrix_times(matrix: np.ndarray, queries: np.ndarray) -> list[np.ndarray]:
    """Scores of each query against every row, one matrix-vector product per query, run by one thread
    at a time. One matrix-matrix product for a batch would read the matrix once, but its floats differ
    from the per-query product's (up to 6e-5), so a query's near-ties would depend on how many others
    were waiting; and with OpenBLAS on 2 cores it is slower below 8 queries (10k x 512 float32: 1.4 ms
    per query for 2, 0.74 for 4, against 0.3 to 0.45 each alone). Taking turns also keeps concurrent
    callers from fighting over BLAS's threads (0.49x the single-thread QPS before batching)."""
    return [matrix @ q for q in queries]


def _with_score(row: Row, score: float) -> Row:
    return replace(row, score=score)
