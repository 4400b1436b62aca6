"""Each camera's vectors side by side on disk, so that a camera filter scans that camera's rows exactly
instead of over-fetching from the graph and widening.

    cameras.f16   raw float16 [rows, dim]: rows grouped by camera, in key order within a camera
    cameras.npz   the file's keys (in file order), its camera names and where each camera's rows start,
                  the highest key it covers and the edits it has seen

Why: at a million rows, one camera of 100 (10,000 rows) cost 12.5-18 ms through the graph (it must fetch
~1,000 candidates to keep 10 of the camera's), and gathering 10,000 vectors from the usearch index by key
costs more than that. A contiguous slice of a memory-mapped file is read in place; usearch's exact f16
kernel picks the candidates and the winners are scored again in float32 as every other exact search is.

The files are a cache written with the index (`index_files.save_index`), never the truth. Rows added since
(keys above `max_id`) are found in the in-RAM columns and read from the index; rows removed since are
left out by the columns; an embedding edited since makes the store stop using the files until the next save.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

import numpy as np

from sen_infer.files import fsync_path, temp_name

CHUNK = 50_000  # rows of vectors copied at once when the files are written (bounded memory at 10M rows)
VECTORS = "cameras.f16"
META = "cameras.npz"
CAMERA_EXACT_MAX = 200_000  # above this many rows of the filter's cameras, the graph is the faster way


@dataclass
class CameraBlocks:
    """The mapped file and its table of contents.

    Args:
        keys: row keys in file order. vectors: [len(keys), dim] float16, memory-mapped.
        spans: camera name -> (first row, end row) in the file. max_id: the highest key the file covers.
        edits: the store's edit-log position when it was written.
    """
    keys: np.ndarray
    vectors: np.ndarray
    spans: dict
    max_id: int
    edits: int

    def rows_of(self, cameras) -> tuple[np.ndarray, np.ndarray]:
        """(keys, float16 vectors) of the file's rows of `cameras` (a slice, not a copy, for one camera)."""
        parts = [self.spans[c] for c in cameras if c in self.spans]
        if len(parts) == 1:
            a, b = parts[0]
            return self.keys[a:b], self.vectors[a:b]
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.vectors.shape[1]), np.float16)
        take = np.concatenate([np.arange(a, b) for a, b in parts])
        return self.keys[take], np.asarray(self.vectors[take])

    def count(self, cameras) -> int:
        """Rows of `cameras` in the file."""
        return sum(b - a for c, (a, b) in self.spans.items() if c in cameras)


def load(store) -> CameraBlocks | None:
    """The store's camera files when they are usable (same size, dimension and edits as the store's view),
    else None: the filters then take the other ways, and the next save writes the files anew."""
    folder = store.dir
    try:
        with np.load(folder / META, allow_pickle=False) as f:
            keys = f["keys"].astype(np.int64)
            starts = f["starts"].astype(np.int64)
            info = json.loads(bytes(f["info"]).decode())
        vectors = np.memmap(folder / VECTORS, np.float16, "r")
    except (OSError, ValueError, KeyError):
        return None
    names = info.get("cameras", [])
    if info.get("dim") != store.dim or vectors.size != len(keys) * store.dim or len(starts) != len(names) + 1 \
            or info.get("edits") != store.edits_seen or info.get("max_id", -1) > store.last_seen:
        return None
    spans = {name: (int(starts[i]), int(starts[i + 1])) for i, name in enumerate(names)}
    return CameraBlocks(keys, vectors.reshape(len(keys), store.dim), spans, int(info["max_id"]), int(info["edits"]))


def save(store) -> CameraBlocks:
    """Write the camera files for the rows of the store's columns (call under the store's lock), each to a
    temp file, fsynced, then renamed (vectors first: the table of contents names their count). Vectors come
    from the current files where they hold the row, else from the index."""
    cols = store.columns
    order = np.lexsort((cols.ids, cols.camera))
    keys = cols.ids[order]
    codes = cols.camera[order]
    names = list(cols.cameras)
    bounds = np.searchsorted(codes, np.arange(len(names) + 1))
    tmp_vectors, tmp_meta = temp_name(store.dir / VECTORS, store), temp_name(store.dir / META, store)
    try:
        with open(tmp_vectors, "wb") as f:  # chunk by chunk: at 10M rows the whole file is 10 GB
            for chunk in _vector_chunks(store, keys):
                f.write(chunk.tobytes())
        fsync_path(tmp_vectors)
        info = {"dim": store.dim, "cameras": names, "max_id": int(store.last_seen), "edits": int(store.edits_seen)}
        with open(tmp_meta, "wb") as f:
            np.savez(f, keys=keys, starts=bounds, info=np.frombuffer(json.dumps(info).encode(), np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_vectors, store.dir / VECTORS)
        os.replace(tmp_meta, store.dir / META)
    finally:
        for t in (tmp_vectors, tmp_meta):
            with contextlib.suppress(OSError):
                t.unlink()
    return load(store)


def _vector_chunks(store, keys: np.ndarray):
    """float16 vectors of `keys`, in order, CHUNK rows at a time (the copy stays bounded whatever the
    store's size): from the current camera file where it holds them, the rest from the index."""
    old = store.blocks
    by_key = np.argsort(old.keys) if old is not None and len(old.keys) else None
    for start in range(0, len(keys), CHUNK):
        part = keys[start:start + CHUNK]
        out = np.empty((len(part), store.dim), np.float16)
        have = np.zeros(len(part), bool)
        if by_key is not None:
            at = np.minimum(np.searchsorted(old.keys, part, sorter=by_key), len(old.keys) - 1)
            have = old.keys[by_key[at]] == part
            out[have] = old.vectors[by_key[at[have]]]
        rest = np.flatnonzero(~have)
        if len(rest):  # the index hands out float32
            out[rest] = store.vectors(part[rest]).astype(np.float16)
        yield out


def camera_positions(view, blocks: CameraBlocks, names, codes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of `names` in the search's snapshot `view`: (positions in the view, float16 vectors of the
    rows the file holds, positions of the rows it does not hold: added since it was written)."""
    keys, vectors = blocks.rows_of(names)
    n = len(view.ids)
    pos = np.searchsorted(view.ids, keys)
    known = pos < n
    known[known] = view.ids[pos[known]] == keys[known]
    if not known.all():  # rows removed since the file was written
        vectors, pos = np.asarray(vectors[known]), pos[known]
    start = int(np.searchsorted(view.ids, blocks.max_id, side="right"))
    tail = start + np.flatnonzero(np.isin(view.camera[start:], codes))
    return pos, vectors, tail
