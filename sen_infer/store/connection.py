"""SQLite for a store: one connection per thread (WAL for writers; read-only media opened with
`mode=ro`, or as immutable when nothing is pending), and SQLite's errors as one-line GalleryErrors."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from sen_infer.errors import GalleryError


class Database:
    """The connections of one store to its `gallery.sqlite`.

    Args:
        db_path: the database file.
        read_only: open it without ever writing (not even the WAL's index).
    """

    def __init__(self, db_path: Path, read_only: bool):
        self.path, self.read_only = Path(db_path), read_only
        self._local = threading.local()

    @contextlib.contextmanager
    def errors(self, doing: str):
        """SQLite errors (a damaged page, a read-only file, a full disk) as one-line GalleryErrors."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            hint = " (the gallery files are read-only)" if "readonly" in str(e) else ""
            raise GalleryError(f"{self.path}: cannot {doing}: {e}{hint}") from None

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit), opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self.errors("open the database"):
                if self.read_only:
                    conn = sqlite3.connect(self._read_only_uri(), uri=True, timeout=60, isolation_level=None)
                else:
                    conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
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
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        if shm.is_file() or os.access(self.path.parent, os.W_OK):
            return uri
        if wal.is_file() and wal.stat().st_size > 0:
            raise GalleryError(f"{self.path}: read-only copy with a pending {wal.name} but no {shm.name}: its "
                               f"newest rows cannot be read; copy the gallery with all three files, or open a "
                               f"writable copy once to checkpoint it")
        return uri + "&immutable=1"

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
