"""What can be read of a store without opening it (no index, no columns): a sharded root asks this of
shards it has not opened, where opening each would cost 13-18 ms and undo the pruning."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from sen_infer.errors import GalleryError
from sen_infer.store.rows import Row
from sen_infer.store.schema import has_table, quality_column

DB_FILE = "gallery.sqlite"


def read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection (the path quoted: `?`, `#` or `%` in a folder name must not cut the URI)."""
    return sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True, timeout=60)


def count_rows(folder: Path) -> int:
    """Rows stored in the gallery at `folder` (0 for one not written yet).

    Raises:
        GalleryError: the table cannot be read.
    """
    db = Path(folder) / DB_FILE
    if not db.is_file():
        return 0
    try:
        with closing(read_only(db)) as conn:
            return conn.execute("SELECT count(*) FROM crops").fetchone()[0]
    except sqlite3.Error as e:
        raise GalleryError(f"{db}: cannot count its rows: {e}") from None


def rows(folder: Path, keys: list[int]) -> dict[int, Row]:
    """The stored rows of `keys` in the gallery at `folder`, read from its table alone (as `VectorStore.rows`
    reads them): a search over day graphs reads its winners' rows from shards it never opened.

    Raises:
        GalleryError: the table cannot be read.
    """
    db = Path(folder) / DB_FILE
    try:
        with closing(read_only(db)) as conn:
            marks = "superseded" in {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
            return rows_from(conn, [int(k) for k in keys], marks)
    except sqlite3.Error as e:
        raise GalleryError(f"{db}: cannot read its rows: {e}") from None


def rows_from(conn, keys: list[int], marks_superseded: bool) -> dict[int, Row]:
    """`rows` over an open connection (`rows` reads a shard this way without opening its store);
    `marks_superseded`: the sources table has its `superseded` column."""
    out = {}
    flag = ("(SELECT s.superseded IS NOT NULL FROM sources s WHERE s.source = c.source)" if marks_superseded
            else "0")
    person = ("(SELECT p.person FROM persons p WHERE p.track = c.track)" if has_table(conn, "persons")
              else "NULL")
    quality = quality_column(conn)
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        cur = conn.execute(f"SELECT id, source, camera, frame, timestamp, x, y, w, h, track, crop_path, {flag}, "
                           f"{person}, {quality} FROM crops c WHERE id IN ({','.join('?' * len(part))})", part)
        for r in cur:
            out[r[0]] = Row(r[1], r[2], r[3], r[4], (r[5], r[6], r[7], r[8]), r[9], r[10], key=r[0],
                            superseded=bool(r[11]), person=r[12], quality=r[13])
    return out
