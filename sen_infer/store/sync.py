"""Bringing a store's in-memory view up to date with its table: rows committed since the last look
(by this or another process), embeddings edited in the table, removals and supersessions."""

from __future__ import annotations

import numpy as np

from sen_infer.store.schema import has_table, quality_column


def read_new_rows(store, conn, chunk: int = 20_000) -> None:
    """Rows committed after `last_seen`, embeddings included, into the columns and the index delta;
    in chunks, so catching up on many rows never holds them all as Python objects at once."""
    while True:
        rows = conn.execute(f"SELECT id, camera, timestamp, track, embedding, source, {quality_column(conn)} "
                            f"FROM crops WHERE id > ? ORDER BY id LIMIT ?", (store.last_seen, chunk)).fetchall()
        if not rows:
            return
        store.append(store.usable(rows))
        store.last_seen = int(rows[-1][0])  # only once they are in memory
        if len(rows) < chunk:
            return


def check_edits(store, conn) -> None:
    """Rows whose embedding was changed in the table since we last looked (the `edits` log): a damaged
    one stops being served (kept, listed in `damaged`, warned about), a valid one is re-indexed."""
    if not store.edit_log:  # looked up until found (it never goes away), not on every query after
        store.edit_log = has_table(conn, "edits")
        if not store.edit_log:
            return
    log = conn.execute("SELECT n, key FROM edits WHERE n > ? ORDER BY n", (store.edits_seen,)).fetchall()
    if not log:
        return
    ids = store.columns.ids
    keys = sorted({int(k) for _, k in log} & set(ids[np.isin(ids, [k for _, k in log])].tolist()))
    store.edits_seen = int(log[-1][0])
    if not keys:
        return
    rows = conn.execute(f"SELECT id, camera, timestamp, track, embedding, source, {quality_column(conn)} FROM crops "
                        f"WHERE id IN ({','.join('?' * len(keys))}) ORDER BY id", keys).fetchall()
    good = store.usable(rows)  # warns about, and lists, the damaged ones
    bad = sorted(set(keys) - {int(r[0]) for r in good})
    if bad:
        store.drop(bad)
    if good:
        ids = np.array([r[0] for r in good], np.int64)
        store.index.remove(ids)
        vectors = np.frombuffer(b"".join(r[4] for r in good), np.float16).reshape(len(good), store.dim)
        store.index.add(ids, vectors.astype(np.float32))
        store.emb32 = None
        store.blocks = None  # the camera file holds the old vectors: not used until the next save


def resync(store, conn) -> None:
    """Re-read every row's metadata (not the embeddings) and drop removed rows from memory and index."""
    meta = conn.execute(f"SELECT id, camera, timestamp, track, source, {quality_column(conn)} FROM crops "
                        f"WHERE id <= ? ORDER BY id", (store.last_seen,)).fetchall()
    ids = np.array([r[0] for r in meta], np.int64)
    keep = np.isin(store.columns.ids, ids)
    gone = store.columns.ids[~keep]
    here = np.isin(ids, store.columns.ids)
    meta = [r for r, h in zip(meta, here) if h]  # damaged rows are in the table, not in memory
    store.columns.replace_rows(meta)
    store.emb32 = None
    store.damaged = [k for k in store.damaged if k in set(ids.tolist())]
    if len(gone):
        store.index.remove(gone)


def read_superseded(store, conn) -> None:
    """Which sources are superseded (a newer version of their file was ingested)."""
    if "superseded" in store.source_columns(conn):
        superseded = [store.columns.code(s) for (s,) in conn.execute(
            "SELECT source FROM sources WHERE superseded IS NOT NULL")]
        store.columns.superseded = np.array(sorted(superseded), np.int32)
