"""Reading what a store holds by source and by key: the record of each ingested file version, the
key a new version gets, and rows by key."""

from __future__ import annotations

import hashlib

import sen_infer.store.aliases as aliases

from sen_infer.store.peek import rows_from
from sen_infer.store.rows import Row
from sen_infer.store.schema import migrated_on_disk


def source(store, path: str) -> dict | None:
    """The current (not superseded) record of the source read from `path`, None if never ingested."""
    with store.db("read sources"):
        conn = store.conn()
        cols = store.source_columns(conn)
        if "path" in cols and migrated_on_disk(conn):
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


def new_source_key(store, path: str, content: str) -> str:
    """The key for a new version of the file at `path` whose content fingerprint is `content`: the
    path itself the first time, else "path#<12 hex of the fingerprint>". Rows are unique per source,
    so a replaced file needs a key of its own; deriving it from the content means two ingests of the
    same new content agree on it, and two of different content never share one."""
    with store.db("read sources"):
        taken = store.conn().execute("SELECT 1 FROM sources WHERE source=? UNION ALL SELECT 1 FROM crops "
                                     "WHERE source=? LIMIT 1", (path, path)).fetchone()
    digest = hashlib.sha1(content.encode()).hexdigest()[:12]
    return path if taken is None else f"{path}#{digest}"


def rows_of(store, source: str, limit: int = 2) -> list[Row]:
    """Up to `limit` rows of one source (by the unique index), for checks on a single source."""
    with store.db("read rows"):
        keys = [k for (k,) in store.conn().execute("SELECT id FROM crops WHERE source=? LIMIT ?",
                                                   (source, limit))]
    return list(store.rows(keys).values())


def source_record(store, source: str) -> dict | None:
    """The stored record of the source key `source` (path, content identity, kind), None if it has none;
    "names" lists every path it was found under (its first path, then its aliases)."""
    with store.db("read sources"):
        cur = store.conn().execute("SELECT * FROM sources WHERE source=?", (source,))
        row = cur.fetchone()
    if row is None:
        return None
    return {**dict(zip([d[0] for d in cur.description], row)), "names": aliases.names_of(store, source)}


def has_row(store, source: str, frame: int, bbox) -> bool:
    """Whether the row (source, frame, bbox) is stored: the key rows are unique on, so an ingest can
    skip a picture it would only add again."""
    with store.db("read rows"):
        return store.conn().execute("SELECT 1 FROM crops WHERE source=? AND frame=? AND x=? AND y=? AND w=? "
                                    "AND h=?", (source, frame, *bbox)).fetchone() is not None


def rows(store, keys: list[int]) -> dict[int, Row]:
    """The stored rows of `keys` (missing keys are left out), superseded ones marked."""
    keys = [int(k) for k in keys]
    if not keys:
        return {}
    with store.db("read rows"):
        conn = store.conn()
        return rows_from(conn, keys, "superseded" in store.source_columns(conn))
