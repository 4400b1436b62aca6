"""A crash-safe gallery of person crops: SQLite (WAL) is the truth, the usearch index a derived cache.

Every ingest is one transaction (a video's tracks commit together with the record that the video
is done), so a crash at any point leaves either all or nothing of it, and re-running adds only what
is missing: rows are unique on (source, frame, bbox). The index is saved by write-to-temp + rename
and rebuilt from SQLite whenever its sidecar does not match the table (missing, stale, other model).
Reads are safe from many threads while one thread (or another process) ingests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import GalleryError, IngestError, ModelMismatchError, VideoReadError, require_utf8
from sen_infer.preprocess import check_image_array, is_regular_file, read_bgr, to_input

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
                                    finished REAL NOT NULL, resume_frame INTEGER, frames INTEGER,
                                    size INTEGER, mtime_ns INTEGER, head TEXT);
"""
# columns added to `sources` after schema 1 (resume point and content identity); older galleries get
# them on their first write (opening to read never writes). resume_frame NULL means "done".
SOURCE_COLUMNS = {"resume_frame": "INTEGER", "frames": "INTEGER", "size": "INTEGER", "mtime_ns": "INTEGER",
                  "head": "TEXT"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg"}
EXACT_MAX = 20_000  # galleries up to this size are searched exactly (a cached float32 matrix product)
FILTERED_EXACT_MAX = 5_000  # a filter leaving at most this many rows is searched exactly over them
# (benchmarks.index: at 100k rows, exact over 1% selected beats graph over-fetch 0.16 ms to 13 ms;
# at 10% the graph wins 1.7 ms to 5.3 ms)


@dataclass
class IngestReport:
    added: int = 0
    skipped_existing: int = 0
    unreadable: list[str] = field(default_factory=list)  # inputs skipped; `reasons` says why
    tracks: int = 0
    frames: int = 0
    crops_embedded: int = 0
    seconds: float = 0.0
    reasons: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why; nothing of it was committed
    incomplete: dict[str, str] = field(default_factory=dict)  # video -> "decoded N of M frames"
    notes: list[str] = field(default_factory=list)  # e.g. frame times that disagree with the stated fps

    def fail(self, item, reason: str) -> None:
        """Record an input whose ingest failed on our side (e.g. a crop could not be written)."""
        self.failed[_printable(item)] = reason

    def skip(self, item, reason: str) -> None:
        """Record an input that was not ingested, and why (one line)."""
        name = _printable(item)
        self.unreadable.append(name)
        self.reasons[name] = reason

    def merge(self, other: "IngestReport") -> None:
        self.added += other.added
        self.skipped_existing += other.skipped_existing
        self.unreadable += other.unreadable
        self.reasons.update(other.reasons)
        self.failed.update(other.failed)
        self.incomplete.update(other.incomplete)
        self.notes += other.notes
        self.tracks += other.tracks
        self.frames += other.frames
        self.crops_embedded += other.crops_embedded
        self.seconds += other.seconds


@dataclass(frozen=True)
class Row:
    key: int
    source: str
    camera: str | None
    frame: int
    timestamp: float | None
    bbox: tuple[int, int, int, int]
    track: int | None
    crop_path: str | None


def _fingerprint_range(path: str, a: int, b: int) -> str:
    with open(path, "rb") as f:
        f.seek(a)
        return hashlib.sha1(f.read(b - a)).hexdigest()


def _file_identity(path: str) -> dict:
    """What identifies a file's content cheaply: size, mtime and a sha1 of up to 1 MiB of its early
    bytes, "a:b:sha1". The range skips the first 64 KiB (container headers that a recorder rewrites as
    the file grows: frame counts, sizes) and the last quarter (indexes written at the end), so a
    recording that grew keeps its fingerprint and a replaced one does not."""
    st = os.stat(path)
    a = min(65536, st.st_size // 2)
    b = max(a, min(a + (1 << 20), st.st_size * 3 // 4))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head": f"{a}:{b}:{_fingerprint_range(path, a, b)}"}


def _same_beginning(path: str, head: str, size: int) -> bool:
    """Whether the file at `path` (now `size` bytes) still holds the bytes fingerprinted as `head`."""
    try:
        a, b, digest = head.split(":")
        a, b = int(a), int(b)
    except ValueError:
        return False
    return size >= b and _fingerprint_range(path, a, b) == digest


def _printable(item) -> str:
    """A path as text that can always be printed and stored, undecodable bytes shown as \\xNN."""
    return os.fsencode(str(item)).decode("utf-8", "backslashreplace")


def default_camera(source: str) -> str:
    """A video's camera when none is given: its file name with extension (cam.avi and cam.mp4 are two
    cameras), or for the common `<camera>/<file>` layout of recorders (cam07/2026-11-29_10.mp4) the
    folder's name when the file name looks like a time stamp."""
    p = Path(source)
    if any(ch.isdigit() for ch in p.stem) and not any(ch.isalpha() for ch in p.stem.replace("T", "")) \
            and p.parent.name:
        return p.parent.name
    return p.name


def write_jpeg(path: Path, img: np.ndarray, quality: int = 90) -> None:
    """Write a JPEG atomically (temp + fsync + rename) and check it: OSError when it cannot be stored."""
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # pid: see _remove_stale_temps
    try:
        with open(tmp, "wb") as f:
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


_TEMP_NAME = re.compile(r"\.(\d+)\.\d+(?:\.\d+)?\.tmp$")  # .NAME.PID.THREAD[.OBJECT].tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (temp files carry their writer's pid)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _finite_time(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise IngestError(f"{what} must be a finite number of seconds, not {value!r}")
    return float(value)


def _camera_name(camera) -> str | None:
    if camera is None:
        return None
    if not isinstance(camera, str) or not camera.strip():
        raise IngestError(f"camera name must be a non-empty string, not {camera!r}")
    return require_utf8(camera, "camera name", IngestError)


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def expand_inputs(paths, report: IngestReport, videos: bool = True) -> tuple[list[Path], list[Path]]:
    """(images, videos) from files and folders (searched recursively, sorted). Inputs that cannot be
    ingested (missing, not a regular file, a name that is not UTF-8, an unknown type named explicitly)
    go to `report` with the reason and never stop the rest; unrelated files inside a folder are ignored."""
    images, found_videos = [], []
    wanted = IMAGE_EXTENSIONS | (VIDEO_EXTENSIONS if videos else set())
    for p in map(Path, paths):
        if not os.path.lexists(p):
            report.skip(p, "no such file or folder")
            continue
        files = sorted(f for f in p.rglob("*") if not f.is_dir()) if p.is_dir() else [p]
        for f in files:
            ext = f.suffix.lower()
            if ext not in wanted and (p.is_dir() or videos):
                if not p.is_dir():  # named explicitly, but neither an image nor a video by its name
                    report.skip(f, f"not an image or video ({', '.join(sorted(wanted))})")
                continue  # an image named explicitly without a known extension is left to the decoder
            why = _unusable_file(str(f))
            if why is not None:
                report.skip(f, why)
                continue
            (found_videos if ext in VIDEO_EXTENSIONS and videos else images).append(f)
    return images, found_videos


def _unusable_file(path: str) -> str | None:
    """Why a file given to the ingest cannot be read as one (checked before OpenCV sees it), or None."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (rename it)"
    if not os.path.lexists(path):
        return "no such file"
    if not is_regular_file(path):
        return "not a regular file (FIFO, device, socket or broken link)"
    return None


@dataclass
class _View:
    """A consistent snapshot of the in-memory columns for one search (views, not copies)."""
    ids: np.ndarray
    emb: np.ndarray
    camera: np.ndarray
    time: np.ndarray
    track: np.ndarray
    emb32: np.ndarray | None = None


class Gallery:
    """Open with `Gallery.open(path, engine_dir)`; `add_images`, `add_video`, `search`, `rows`."""

    def __init__(self, path: Path, encoders, exact_max: int = EXACT_MAX,
                 filtered_exact_max: int = FILTERED_EXACT_MAX, read_only: bool = False):
        self.dir = Path(path)
        self.read_only = read_only
        self.exact_max, self.filtered_exact_max = exact_max, filtered_exact_max
        self.encoders = encoders
        self.fingerprint = encoders.manifest.fingerprint
        self.dim = encoders.dim
        self.db_path = self.dir / "gallery.sqlite"
        self.index_path = self.dir / "index.usearch"
        self.crops_dir = self.dir / "crops"
        self._local = threading.local()
        self._last_seen = 0  # highest row id read into memory (damaged rows included)
        self.damaged: list[int] = []  # keys of rows whose stored embedding is unusable (kept, never served)
        self._lock = threading.RLock()  # guards the in-memory matrix and the index
        self._write_lock = threading.Lock()
        self._cleaned = False
        self._searching = 0  # searches computing scores right now (see _scores)
        self._migrated = False
        self._init_db()
        self._buffers: dict[str, np.ndarray] = {}
        self._ids = np.zeros(0, np.int64)
        self._emb = np.zeros((0, self.dim), np.float16)
        self._camera = np.zeros(0, object)
        self._time = np.zeros(0, np.float64)
        self._track = np.zeros(0, np.int64)
        self._index = None
        self._emb32 = None  # float32 copy of the matrix, kept only for galleries searched exactly
        self.refresh()
        self._load_or_rebuild_index()

    # ---- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, engine_dir=None, *, encoders=None, backend: str = "auto",
             exact_max: int = EXACT_MAX, filtered_exact_max: int = FILTERED_EXACT_MAX,
             create: bool = True) -> "Gallery":
        """Open the gallery at `path` for the model of `engine_dir` (or given encoders). With
        create=False (how queries open it) a path without a gallery is an error, never a new gallery."""
        path = Path(path)
        require_utf8(str(path), "gallery path", GalleryError)
        if not create and not (path / "gallery.sqlite").is_file():
            raise GalleryError(f"no gallery at {path} (gallery.sqlite is missing); ingest into it first")
        if encoders is None:
            if engine_dir is None:
                raise GalleryError("Gallery.open needs an engine_dir (or encoders)")
            from sen_infer.encoders import Encoders

            encoders = Encoders(engine_dir, backend)
        db = path / "gallery.sqlite"
        read_only = db.is_file() and not (os.access(path, os.W_OK) and os.access(db, os.W_OK))
        if not read_only:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise GalleryError(f"cannot create gallery dir {path}: {e.strerror or e}") from None
        return cls(path, encoders, exact_max, filtered_exact_max, read_only=read_only)

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

    def _init_db(self) -> None:
        """Read the gallery's meta; write the schema only when it is a new gallery (an existing one is
        opened without a single write, so read-only media can be searched)."""
        try:
            conn = self._conn()
            meta = self._read_meta(conn)
            if not meta and self.read_only:
                raise GalleryError(f"{self.db_path}: read-only and not a gallery (no meta table)")
            if not meta:
                conn.executescript(SCHEMA)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                    if not meta:
                        meta = {"fingerprint": self.fingerprint, "embed_dim": str(self.dim), "schema": "1",
                                "created": str(time.time())}
                        conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as e:
            hint = " (the gallery files are read-only)" if "readonly" in str(e) else ""
            raise GalleryError(f"{self.db_path}: not a usable gallery database ({e}){hint}") from None
        except GalleryError as e:
            raise GalleryError(f"{e} ({self.db_path} is not a usable gallery database)") from None
        if meta and meta.get("fingerprint") != self.fingerprint:
            raise ModelMismatchError(
                f"gallery {self.dir} was built with another model (fingerprint {meta.get('fingerprint', '?')[:12]}, "
                f"engine {self.fingerprint[:12]}); open it with its own engine dir or ingest into a new gallery")

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

    # ---- the in-memory view and the index -----------------------------------------------------
    def refresh(self) -> None:
        """Pick up rows committed since the last look (by this or another process)."""
        conn = self._conn()
        with self._lock, self._db("read rows"):
            rows = conn.execute("SELECT id, camera, timestamp, track, embedding FROM crops WHERE id > ? ORDER BY id",
                                (self._last_seen,)).fetchall()
            if not rows:
                return
            self._last_seen = int(rows[-1][0])
            self._append(self._usable(rows))

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

    def _append(self, rows) -> None:
        if not rows:
            return
        ids = np.array([r[0] for r in rows], np.int64)
        emb = np.frombuffer(b"".join(r[4] for r in rows), np.float16).reshape(len(rows), self.dim)
        new = {"ids": ids, "emb": emb, "camera": np.array([r[1] for r in rows], object),
               "time": np.array([np.nan if r[2] is None else r[2] for r in rows], np.float64),
               "track": np.array([-1 if r[3] is None else r[3] for r in rows], np.int64)}
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
        self._emb32 = None
        if self._index is not None:
            self._index.add(ids, emb.astype(np.float32))

    def _sidecar(self) -> dict:
        return {"count": int(len(self._ids)), "max_id": int(self._ids[-1]) if len(self._ids) else 0,
                "fingerprint": self.fingerprint, "dim": self.dim}

    def _load_or_rebuild_index(self) -> None:
        from usearch.index import Index

        with self._lock:
            side = self.index_path.with_suffix(".json")
            try:
                ok = json.loads(side.read_text()) == self._sidecar() and self.index_path.is_file()
            except (OSError, ValueError):
                ok = False
            index = Index(ndim=self.dim, metric="cos", dtype="f16")
            if ok:
                try:
                    index.load(str(self.index_path))
                    ok = len(index) == len(self._ids)
                except Exception:  # a damaged cache file: rebuild it from the truth
                    ok = False
            if not ok:
                index = Index(ndim=self.dim, metric="cos", dtype="f16")
                if len(self._ids):
                    index.add(self._ids, self._emb.astype(np.float32))
            self._index = index
        if not ok and len(self._ids) and not self.read_only:  # read-only: the rebuilt index lives in memory
            self._persist_index()

    def _temp(self, target: Path) -> Path:
        """A temp name beside `target` that no other writer uses: process, thread and object in the name
        (two Gallery objects or threads of one process must not share one), pid first for the cleanup."""
        return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.{id(self)}.tmp")

    def _save_index(self) -> None:
        """Index, then sidecar, each to its own temp file, fsynced, renamed into place. The first save of
        each Gallery object also clears temp files of dead writers (opening alone never writes)."""
        if not self._cleaned:
            self._cleaned = True
            self._remove_stale_temps()
        side = self.index_path.with_suffix(".json")
        tmp, tmp_side = self._temp(self.index_path), self._temp(side)
        try:
            self._index.save(str(tmp))
            _fsync(tmp)
            os.replace(tmp, self.index_path)
            with open(tmp_side, "w") as f:
                f.write(json.dumps(self._sidecar()))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_side, side)
        finally:
            for t in (tmp, tmp_side):
                with contextlib.suppress(OSError):
                    t.unlink()

    def _remove_stale_temps(self) -> int:
        """Delete temp files left by writers that died mid-save (a killed ingest can leave a 35 MB index
        copy); a temp whose process is still alive is left alone. Returns how many were removed."""
        removed = 0
        for t in list(self.dir.glob(".*.tmp")) + list(self.crops_dir.glob("*/.*.tmp")):
            match = _TEMP_NAME.search(t.name)
            if match is None or _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                t.unlink()
                removed += 1
        return removed

    # ---- writing ------------------------------------------------------------------------------
    def _commit(self, records: list[tuple], source_done: tuple | None = None,
                local_tracks: bool = False) -> tuple[int, int]:
        """Insert rows (and mark a source done) in one transaction; returns (added, existing).
        With local_tracks, the records' track numbers (1, 2, ...) are made gallery-wide inside the
        transaction that commits them, so concurrent ingests (threads or processes) never share one."""
        self._check_writable()
        with self._write_lock, self._db("write"):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not self._migrated:
                    have = {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
                    for name, kind in SOURCE_COLUMNS.items():
                        if name not in have:
                            conn.execute(f"ALTER TABLE sources ADD COLUMN {name} {kind}")
                if local_tracks and records:
                    base = conn.execute("SELECT coalesce(max(track), 0) FROM crops").fetchone()[0]
                    records = [(*r[:8], base + r[8], *r[9:]) for r in records]
                before = conn.total_changes
                conn.executemany("INSERT OR IGNORE INTO crops (source, camera, frame, timestamp, x, y, w, h, track, "
                                 "crop_path, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
                added = conn.total_changes - before
                if source_done is not None:  # (source, kind, finished, resume_frame, frames, size, mtime_ns, head)
                    conn.execute("INSERT OR REPLACE INTO sources (source, kind, rows, finished, resume_frame, "
                                 "frames, size, mtime_ns, head) VALUES (?1, ?2, (SELECT count(*) FROM crops WHERE "
                                 "source = ?1), ?3, ?4, ?5, ?6, ?7, ?8)", source_done)
                conn.execute("COMMIT")
                self._migrated = True
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.refresh()
        return added, len(records) - added

    def _check_writable(self) -> None:
        if self.read_only:
            raise GalleryError(f"gallery {self.dir} is on read-only media (or its files are read-only): it can be "
                               f"searched, not written")

    def _persist_index(self) -> None:
        """Save the index once per ingest call, not per batch (it is a cache: a crash before this
        point only means it is rebuilt from SQLite on the next open)."""
        with self._lock:
            try:
                self._save_index()
            except (OSError, RuntimeError) as e:  # the rows are committed; only the cache could not be saved
                warnings.warn(f"{self.index_path}: index cache not saved ({e}); it is rebuilt on the next open",
                              stacklevel=3)

    def _existing(self, source: str, frame: int, box) -> bool:
        with self._db("read rows"):
            return self._conn().execute(
                "SELECT 1 FROM crops WHERE source=? AND frame=? AND x=? AND y=? AND w=? AND h=?",
                (source, frame, *box)).fetchone() is not None

    def add_images(self, items, camera: str | None = None, timestamp: float | None = None,
                   track: int | None = None, batch_size: int = 64, progress=None) -> IngestReport:
        """Add whole images (paths, folders searched recursively, or BGR arrays) as crops. Unreadable
        files are skipped and reported. Each image is decoded, preprocessed to the model's input and
        dropped at once, so memory does not grow with the photos' resolution."""
        timestamp, camera = _finite_time(timestamp, "timestamp"), _camera_name(camera)
        self._check_writable()
        report = IngestReport()
        t0 = time.perf_counter()
        pending: list[tuple[str, int, int, str, np.ndarray]] = []  # source, w, h, crop path, model input
        m = self.encoders.manifest

        def flush():
            if not pending:
                return
            emb = _normalise(self.encoders.encode_inputs(np.stack([x for *_, x in pending]))).astype(np.float16)
            report.crops_embedded += len(pending)
            records = [(source, camera, -1, timestamp, 0, 0, w, h, track, crop_path, e.tobytes())
                       for (source, w, h, crop_path, _), e in zip(pending, emb)]
            added, existing = self._commit(records)
            report.added += added
            report.skipped_existing += existing
            pending.clear()

        def tick():
            if progress is not None:
                progress(1)

        def inputs():  # in the order given, folders expanded where they stand
            for item in items:
                if isinstance(item, np.ndarray):
                    yield item
                else:
                    yield from expand_inputs([item], report, videos=False)[0]

        for item in inputs():
            if isinstance(item, np.ndarray):
                check_image_array(item)
                digest = hashlib.sha1(np.ascontiguousarray(item).tobytes()).hexdigest()[:20]
                source, img = f"array:{digest}", item
                crop_path = self.crops_dir / "arrays" / f"{digest}.jpg"
                if not self._existing(source, -1, (0, 0, img.shape[1], img.shape[0])):
                    try:
                        crop_path.parent.mkdir(parents=True, exist_ok=True)
                        write_jpeg(crop_path, img)
                    except OSError as e:
                        report.fail(f"array {digest}", f"cannot write crop {crop_path}: {e.strerror or e}")
                        tick()
                        continue
                crop_path = str(crop_path)
            else:
                source = str(Path(item).resolve())
                img = read_bgr(source)
                crop_path = source
                if img is None:
                    report.skip(item, "not a readable image (missing, empty, truncated or another format)")
                    tick()
                    continue
            h, w = img.shape[:2]
            if self._existing(source, -1, (0, 0, w, h)):
                report.skipped_existing += 1
            else:
                pending.append((source, w, h, crop_path, to_input(img, m.image_size, m.mean, m.std)))
            del img
            if len(pending) >= batch_size:
                flush()
            tick()
        flush()
        if report.added:
            self._persist_index()
        report.seconds = time.perf_counter() - t0
        return report

    def source_done(self, source: str) -> bool:
        """Whether `source` was ingested to its end (not interrupted, not incomplete)."""
        state = self._source_state(source)
        return state is not None and state.get("resume_frame") is None

    def add_video(self, path: str | os.PathLike, camera: str | None = None, start_time: float | None = None,
                  detector: str = "mog2", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                  crops_per_track: int = 4, chunk_seconds: float = 60.0, progress=None) -> IngestReport:
        """Detect, track and embed the people of a video; one gallery row per track.

        The video commits in chunks of `chunk_seconds` of footage, each with its resume point, so
        memory is bounded by a chunk and a crash loses at most the chunk in progress. A source is
        known by path + size + mtime + a fingerprint of its first MiB: a recording that grew since it
        was ingested is resumed where it ended; one whose beginning changed is reported, not mixed in."""
        from sen_infer.video import iter_chunks

        start_time, camera = _finite_time(start_time, "start_time"), _camera_name(camera)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise IngestError(f"stride must be an integer >= 1 (detect on every n-th frame), not {stride!r}")
        if not (isinstance(chunk_seconds, (int, float)) and math.isfinite(chunk_seconds) and chunk_seconds > 0):
            raise IngestError(f"chunk_seconds must be a positive number, not {chunk_seconds!r}")
        self._check_writable()
        report = IngestReport()
        t0 = time.perf_counter()
        source = str(Path(path).resolve())
        why = _unusable_file(source)
        if why is not None:
            report.skip(path, why)
            return report
        identity = _file_identity(source)
        state = self._source_state(source)
        start_frame = 0
        if state is not None:
            if state.get("head") and not _same_beginning(source, state["head"], identity["size"]):
                report.skip(path, "its content changed since it was ingested (replaced, not grown): the rows "
                                  "already stored stay; ingest the new recording under another path")
                return report
            if state.get("resume_frame") is not None:
                start_frame = int(state["resume_frame"])  # an interrupted or incomplete ingest: go on
            elif state.get("size") is not None and identity["size"] > state["size"]:
                start_frame = int(state["frames"] or 0)  # a recording that grew: resume where it ended
            else:
                report.skipped_existing += 1
                return report
        camera = camera if camera is not None else default_camera(source)
        crop_dir = self.crops_dir / hashlib.sha1(source.encode()).hexdigest()[:16]
        try:
            chunks = iter_chunks(source, detector, stride, min_box, crops_per_track=crops_per_track,
                                 chunk_seconds=chunk_seconds, start_frame=start_frame, progress=progress)
            for video in chunks:
                report.frames = video.frames
                report.notes += [f"{path}: {n}" for n in video.notes if f"{path}: {n}" not in report.notes]
                records = self._video_records(video, source, camera, start_time, crop_dir, report)
                resume = None if video.final and not video.incomplete else video.frames
                state_row = (source, "video", time.time(), resume, video.frames, identity["size"],
                             identity["mtime_ns"], identity["head"])
                added, existing = self._commit(records, state_row, local_tracks=True)
                report.added += added
                report.skipped_existing += existing
                report.tracks += len(records)
                if video.incomplete:  # committed (they are real people) but a rerun looks again
                    report.incomplete[str(path)] = f"decoded {video.frames} of {video.expected} frames"
        except VideoReadError as e:
            report.skip(path, str(e))
        except OSError as e:  # a crop that cannot be stored: this chunk is not committed, the resume point stays
            report.fail(path, f"cannot write crop {e.filename or crop_dir}: {e.strerror or e}")
        if report.added:
            self._persist_index()
        report.seconds = time.perf_counter() - t0
        return report

    def _video_records(self, video, source: str, camera, start_time, crop_dir: Path, report) -> list[tuple]:
        """One row per track of a chunk: the normalised mean of its crops' embeddings, its best crop
        stored as a JPEG (written and checked before anything is committed)."""
        crop_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for n, (track, crops) in enumerate(video.tracks, start=1):
            if not crops:
                continue
            emb = _normalise(self.encoders.encode_images([c.crop for c in crops]))
            report.crops_embedded += len(crops)
            mean = _normalise(emb.mean(axis=0)).astype(np.float16)
            best = crops[0]
            crop_path = crop_dir / f"track{track.id:05d}_f{best.frame:06d}.jpg"
            write_jpeg(crop_path, best.crop)
            ts = (start_time if start_time is not None else 0.0) + video.time(best.frame)
            # `n` is local to this chunk: _commit turns it into a gallery-wide id inside its transaction
            records.append((source, camera, best.frame, ts, *best.box, n, str(crop_path), mean.tobytes()))
        return records

    def _source_state(self, source: str) -> dict | None:
        """The sources row of `source` as a dict (None when it was never ingested)."""
        with self._db("read sources"):
            cur = self._conn().execute("SELECT * FROM sources WHERE source=?", (source,))
            row = cur.fetchone()
            return None if row is None else dict(zip([d[0] for d in cur.description], row))

    # ---- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        self.refresh()
        return len(self._ids)

    def search(self, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
               until: float | None = None, per_track: bool = True) -> list[tuple[int, float]]:
        """(key, cosine) of the best k rows matching the filters, sorted by score then key.

        The lock is held only to take a snapshot of the columns (views that later appends never
        change) and around the graph index; the NumPy work runs outside it, so queries from many
        threads run in parallel."""
        self.refresh()
        q = _normalise(query.reshape(-1))
        with self._lock:
            view = _View(self._ids, self._emb, self._camera, self._time, self._track)
            if len(view.ids) <= self.exact_max and len(view.ids):
                if self._emb32 is None or len(self._emb32) != len(view.ids):
                    self._emb32 = self._emb.astype(np.float32)
                view.emb32 = self._emb32
        n = len(view.ids)
        if n == 0 or k <= 0:
            return []
        mask = None
        if camera is not None:
            mask = view.camera == camera
        if since is not None or until is not None:
            t = view.time
            tmask = ~np.isnan(t)
            if since is not None:
                tmask &= t >= since
            if until is not None:
                tmask &= t <= until
            mask = tmask if mask is None else mask & tmask
        selected = n if mask is None else int(mask.sum())
        if selected == 0:
            return []
        if view.emb32 is not None:  # a small gallery: exact search over the cached float32 matrix
            pos = np.arange(n) if mask is None else np.flatnonzero(mask)
            scores = self._scores(view.emb32 if mask is None else view.emb32[pos], q)
            return self._top(view, pos, scores, k, per_track)
        if mask is not None and selected <= self.filtered_exact_max:  # a selective filter: exact over it
            pos = np.flatnonzero(mask)
            return self._top(view, pos, self._scores(view.emb[pos].astype(np.float32), q), k, per_track)
        fetch = min(n, max(4 * k, 64))
        while True:  # over-fetch from the graph, post-filter, widen until enough survive
            with self._lock:
                res = self._index.search(q, fetch)
            keys = np.asarray(res.keys, np.int64)
            pos = np.searchsorted(view.ids, keys)
            known = pos < n  # rows added after the snapshot are left for the next query
            known[known] = view.ids[pos[known]] == keys[known]
            pos, scores = pos[known], 1.0 - np.asarray(res.distances, np.float32)[known]
            if mask is not None:
                keep = mask[pos]
                pos, scores = pos[keep], scores[keep]
            hits = self._top(view, pos, scores, k, per_track)
            if len(hits) >= k or fetch >= n:
                return hits
            fetch = min(n, fetch * 4)

    def _scores(self, matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
        """matrix @ q. Alone, through BLAS (fastest for one query); while other searches run, through
        einsum's own single-threaded loop: concurrent BLAS calls contend for BLAS's thread pool, and
        benchmarks.ingest measured 4 query threads at 0.24x the QPS of one that way."""
        with self._lock:
            self._searching += 1
            alone = self._searching == 1
        try:
            return matrix @ q if alone else np.einsum("ij,j->i", matrix, q)
        finally:
            with self._lock:
                self._searching -= 1

    def _top(self, view: "_View", pos: np.ndarray, scores: np.ndarray, k: int,
             per_track: bool) -> list[tuple[int, float]]:
        """Best k by score (ties by key), one per track when asked. Sorts only the leading candidates."""
        want = k * 8 if per_track else k
        if len(scores) > 4 * want:
            threshold = np.partition(scores, len(scores) - want)[len(scores) - want]
            lead = np.flatnonzero(scores >= threshold)  # every tie at the boundary stays in
            hits = self._collapse(view, pos[lead], scores[lead], k, per_track)
            if len(hits) == k:
                return hits
        return self._collapse(view, pos, scores, k, per_track)

    @staticmethod
    def _collapse(view: "_View", pos: np.ndarray, scores: np.ndarray, k: int,
                  per_track: bool) -> list[tuple[int, float]]:
        keys = view.ids[pos]
        order = np.lexsort((keys, -scores))
        out, seen = [], set()
        for i in order:
            if per_track:
                tr = int(view.track[pos[i]])
                if tr >= 0:
                    if tr in seen:
                        continue
                    seen.add(tr)
            out.append((int(keys[i]), float(scores[i])))
            if len(out) == k:
                break
        return out

    def keys(self, camera: str | None = None) -> list[int]:
        """Every row's key (of one camera when given), in insertion order."""
        self.refresh()
        with self._lock:
            ids = self._ids if camera is None else self._ids[self._camera == camera]
            return [int(k) for k in ids]

    def rows(self, keys: list[int]) -> dict[int, Row]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._db("read rows"):
            cur = self._conn().execute(f"SELECT id, source, camera, frame, timestamp, x, y, w, h, track, crop_path "
                                       f"FROM crops WHERE id IN ({marks})", list(keys))
            return {r[0]: Row(r[0], r[1], r[2], r[3], r[4], (r[5], r[6], r[7], r[8]), r[9], r[10]) for r in cur}

    def embedding(self, key: int) -> np.ndarray:
        with self._lock:
            i = int(np.searchsorted(self._ids, key))
            if i >= len(self._ids) or self._ids[i] != key:
                raise KeyError(key)
            return self._emb[i].astype(np.float32)

    def stats(self) -> dict:
        with self._db("read statistics"):
            return self._stats(self._conn())

    def _stats(self, conn) -> dict:
        n, cams, t0, t1, tracks = conn.execute(
            "SELECT count(*), count(DISTINCT camera), min(timestamp), max(timestamp), count(DISTINCT track) "
            "FROM crops").fetchone()
        cameras = [c for (c,) in conn.execute("SELECT DISTINCT camera FROM crops WHERE camera IS NOT NULL "
                                              "ORDER BY camera")]
        sources = conn.execute("SELECT count(DISTINCT source) FROM crops").fetchone()[0]
        return {"rows": n, "sources": sources, "tracks": tracks, "cameras": cameras,
                "time_span": [t0, t1] if t0 is not None else None, "index_size": len(self._index),
                "damaged_rows": len(self.damaged)}

    def check(self) -> dict:
        """A full consistency check, for `info --check`: SQLite's integrity check over every page, rows
        whose embedding is damaged, and the index against the table (same keys, same vectors up to
        float16 rounding). Returns {"ok": bool, "problems": [one line each], ...figures}."""
        problems = []
        with self._db("check the database"):
            result = [r[0] for r in self._conn().execute("PRAGMA integrity_check(20)")]
            rows = self._conn().execute("SELECT count(*) FROM crops").fetchone()[0]
        if result != ["ok"]:
            problems += [f"sqlite: {line}" for line in result]
        self.refresh()
        if self.damaged:
            problems.append(f"{len(self.damaged)} row(s) with a damaged embedding: keys "
                            f"{', '.join(map(str, self.damaged[:10]))}{' ...' if len(self.damaged) > 10 else ''}")
        with self._lock:
            ids, emb, index = self._ids, self._emb, self._index
            in_index = len(index)
            present = np.asarray(index.contains(ids), bool) if len(ids) else np.zeros(0, bool)
            missing = [int(k) for k in ids[~present]]
            sample = ids[:: max(1, len(ids) // 1000)]  # up to ~1,000 vectors compared
            worst = 0.0
            if len(sample):
                got = np.asarray(index.get(sample), np.float32).reshape(len(sample), -1)
                want = emb[np.searchsorted(ids, sample)].astype(np.float32)
                worst = float(np.abs(_normalise(got) - _normalise(want)).max())
        if missing:
            problems.append(f"index lacks {len(missing)} row(s) of the table (keys {missing[:5]}...); "
                            f"it is rebuilt on the next writable open")
        if in_index != len(ids):
            problems.append(f"index holds {in_index} vectors, the table {len(ids)} usable rows")
        if worst > 1e-2:
            problems.append(f"index vectors differ from the table's by up to {worst:.3g}")
        return {"ok": not problems, "problems": problems, "rows": rows, "usable_rows": len(ids),
                "index_size": in_index, "max_vector_difference": worst}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
