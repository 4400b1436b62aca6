"""The saved index and what travels with it: `index.usearch` (memory-mapped), `columns.npz` (the
in-RAM columns, so a million-row gallery opens without reading its table) and `index.json` (the
sidecar saying which rows and generation they hold). Opening does the least work the files allow;
saving is temp + fsync + rename, the sidecar last."""

from __future__ import annotations

import contextlib
import json
import os

import warnings

import numpy as np

import sen_infer.store.camera_blocks as camera_blocks
from sen_infer.files import fsync_path, remove_stale_temps, temp_name, write_atomic
from sen_infer.store.ann import TieredIndex
from sen_infer.store.schema import has_table, quality_column


def read_sidecar(store) -> dict:
    """The saved index's sidecar (count, max key, generation, edits seen), {} when absent or foreign."""
    try:
        side = json.loads(store.index_path.with_suffix(".json").read_text())
    except (OSError, ValueError, RecursionError):  # a damaged sidecar: the index is rebuilt from the table
        return {}
    same = isinstance(side, dict) and side.get("fingerprint") == store.fingerprint and side.get("dim") == store.dim
    return side if same else {}


def open_index(store) -> None:
    """Map the saved index and bring it up to date, doing the least work the files allow:
    - sidecar, columns file and index agree with the table's generation: map the index, load the
      columns, add only the rows committed after the save (milliseconds at a million rows);
    - the index file is usable but the rest is not (rows removed since, a crash between renames):
      map it, re-read the columns from SQLite, add the rows it lacks;
    - no usable index file: rebuild it from SQLite (and save it, when writable)."""
    conn = store.conn()
    side = read_sidecar(store)
    with store.lock, store.db("read rows"):
        generation = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        generation = generation[0] if generation else None
        try:
            index = TieredIndex.view(store.index_path, store.dim, store.index_params) \
                if store.index_path.is_file() else None
        except (OSError, RuntimeError, ValueError):  # a damaged cache file: rebuilt from the truth
            index = None
        how = "rebuilt"
        store.edits_seen = int(side.get("edits", 0))  # edits after the save are re-checked by refresh
        if index is not None and side and side.get("count") == len(index) \
                and side.get("generation") == generation and load_columns(store, side):
            how = "mapped"
            store.index = index
        elif index is not None:
            how = "rows_added"
            store.index = index
            load_columns_from_table(store, conn, index)
        else:
            store.index = TieredIndex(store.dim, store.index_params)
            store.last_seen = 0
            if has_table(conn, "edits"):  # every blob is read (and checked) by the rebuild
                store.edits_seen = conn.execute("SELECT coalesce(max(n), 0) FROM edits").fetchone()[0]
        store.blocks = camera_blocks.load(store) if len(store.columns) > store.exact_max else None
        added_before = store.index.delta_size
        store.refresh()
        store.opened = {"how": how, "rows_added": store.index.delta_size - added_before,
                        "rows": int(len(store.columns))}
    if how != "mapped" and len(store.columns) and not store.read_only:  # read-only: the index stays in memory
        store.persist_index()


def load_columns(store, side: dict) -> bool:
    """The columns saved with the index, when they describe exactly the rows it holds."""
    try:
        with np.load(store.columns_path, allow_pickle=False) as f:
            if "quality" not in f.files:  # saved before rows had a score: read them from the table
                return False
            cols = {k: f[k] for k in ("ids", "camera", "time", "track", "source", "quality")}
            names = json.loads(bytes(f["names"]).decode())
    except (OSError, ValueError, KeyError):
        return False
    ids = cols["ids"]
    if len(ids) != side.get("count") or names.get("max_id") != side.get("max_id") \
            or any(len(c) != len(ids) for c in cols.values()):
        return False
    store.columns.load(cols, names["cameras"], names["sources"])
    store.damaged = [int(k) for k in names.get("damaged", [])]
    store.last_seen = int(side["max_id"])
    return True


def load_columns_from_table(store, conn, index: TieredIndex) -> None:
    """Columns of every row from SQLite (without the embeddings), and into the index the rows its
    file lacks (their embeddings read by key, in chunks); keys it holds that left the table are
    masked. What a crash between the index's rename and its sidecar's costs: one pass over the keys."""
    quality = quality_column(conn)
    meta = conn.execute(f"SELECT id, camera, timestamp, track, source, {quality} FROM crops ORDER BY id").fetchall()
    ids = np.array([r[0] for r in meta], np.int64)
    keep = index.contains(ids) if len(ids) else np.zeros(0, bool)
    missing = ids[~keep].tolist()
    for i in range(0, len(missing), 500):
        part = missing[i : i + 500]
        rows = store.usable(conn.execute(
            f"SELECT id, camera, timestamp, track, embedding, source, {quality} FROM crops WHERE id IN "
            f"({','.join('?' * len(part))}) ORDER BY id", part).fetchall())
        if rows:
            got = np.array([r[0] for r in rows], np.int64)
            vectors = np.frombuffer(b"".join(r[4] for r in rows), np.float16).reshape(len(rows), store.dim)
            index.add(got, vectors.astype(np.float32))
            keep[np.searchsorted(ids, got)] = True
    store.columns.replace_rows([r for r, k in zip(meta, keep) if k])
    store.last_seen = int(ids[-1]) if len(ids) else 0
    base = index.base
    if base is not None and len(base) > int(keep.sum()) - index.delta_size:  # rows removed since the save
        index.remove(np.setdiff1d(np.asarray(base.keys, np.int64), ids))


def save_index(store) -> None:
    """Index, columns, then sidecar, each to its own temp file, fsynced, renamed into place; the index
    is then mapped from the new file. The sidecar goes last, so a crash at any point leaves either the
    last good set or a newer index that `open_index` recognises by its keys. The first save of each
    store object also clears temp files of dead writers (opening alone never writes)."""
    if not store.cleaned:
        store.cleaned = True
        remove_stale_temps(store.dir)
    side = store.index_path.with_suffix(".json")
    tmp = temp_name(store.index_path, store)
    tmp_cols = temp_name(store.columns_path, store)
    try:
        whole = store.index.materialise()
        whole.save(str(tmp))
        fsync_path(tmp)
        count = len(whole)
        del whole
        generation = store.conn().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        cols = store.columns
        names = {"cameras": list(cols.cameras), "sources": list(cols.codes), "max_id": store.last_seen,
                 "damaged": store.damaged}
        with open(tmp_cols, "wb") as f:
            np.savez(f, ids=cols.ids, camera=cols.camera, time=cols.time, track=cols.track, source=cols.source,
                     quality=cols.quality,
                     names=np.frombuffer(json.dumps(names).encode(), np.uint8))
            f.flush()
            os.fsync(f.fileno())
        # map the file this store wrote, before it is renamed into place: another writer may rename its own
        # (holding other rows) over the path right after ours, and mapping the path then gave this store an
        # index without rows its columns hold (KeyError in the next search of a track's vectors)
        mapped = TieredIndex.view(tmp, store.dim, store.index_params)
        save_blocks(store)
        os.replace(tmp, store.index_path)
        os.replace(tmp_cols, store.columns_path)
        write_atomic(side, json.dumps({"count": count, "max_id": store.last_seen, "fingerprint": store.fingerprint,
                                       "dim": store.dim, "generation": generation[0] if generation else None,
                                       "edits": store.edits_seen,
                                       "params": json.loads(store.index_params.to_json())}).encode())
        store.index = mapped
    finally:
        for t in (tmp, tmp_cols):
            with contextlib.suppress(OSError):
                t.unlink()


def save_blocks(store) -> None:
    """The camera files beside the index, for a gallery too large to be searched exactly (`camera_blocks`).
    A failure only costs speed: the filters take the other ways until the next save."""
    if len(store.columns) <= store.exact_max:
        return
    try:
        store.blocks = camera_blocks.save(store)
    except (OSError, MemoryError, KeyError) as e:
        store.blocks = None
        warnings.warn(f"{store.dir}: camera files not saved ({e}); camera filters use the graph until the next save",
                      stacklevel=4)


def maybe_remap(store, generation) -> None:
    """A process that only reads (a search service) while another ingests would hold every new row in
    its in-RAM delta until reopened. When the writer has saved a newer index file that covers rows we
    hold in RAM, map it instead and keep in RAM only the rows it lacks. One stat per refresh."""
    if store.bulk or store.index.delta_size < store.remap_delta:  # a bulk import holds its index in RAM
        return
    side_path = store.index_path.with_suffix(".json")
    try:
        mtime = side_path.stat().st_mtime_ns
    except OSError:
        return
    if mtime == store.side_mtime:
        return
    store.side_mtime = mtime
    side = read_sidecar(store)
    # the same rows removed and the same edits seen as ours, and nothing we have not read yet
    if not side or side.get("generation") != generation or side.get("edits", 0) != store.edits_seen \
            or not 0 < side.get("max_id", 0) <= store.last_seen:
        return
    try:
        newer = TieredIndex.view(store.index_path, store.dim, store.index_params)
    except (OSError, RuntimeError, ValueError):
        return
    if len(newer) != side.get("count"):  # replaced again between the sidecar and the index: next time
        return
    later = store.columns.ids[store.columns.ids > side["max_id"]]
    newer.add(later, store.index.get(later))
    store.index = newer
    store.blocks = camera_blocks.load(store)  # the writer's, saved with that index
