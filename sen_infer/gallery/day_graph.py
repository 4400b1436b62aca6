"""Day graphs: one index over every camera shard of a day, so that a month is ~30 graphs to search, not
30,000 camera-day shards.

    ROOT/days/<day>-w<writes>-<time>/   index.usearch  the day's vectors, keyed by the root's global keys
                                        columns.npz    per row: key, camera, time, track (global), superseded,
                                                       crop score; and the camera names
                                        graph.json     what it was built from (shards, their rows, the day's
                                                       write counter)

The rows, their keys and their evidence stay in the camera shards; a graph is a derived index, searched with
the store's own search (`DayGraph` offers the surface `store.search.nearest` reads). Building one is
crash-safe: it is written under a temp folder, fsynced, renamed, checked against the shards, and only then
recorded in the catalogue (`days.register`), which is the one step that makes queries use it. Until then,
and whenever the day is written again, queries search the day's shards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from sen_infer.errors import GalleryError
from sen_infer.files import fsync_path, process_alive
from sen_infer.store import VectorStore
from sen_infer.store.ann import IndexParams, TieredIndex
from sen_infer.store.columns import Columns
from sen_infer.store.search import Batcher
from sen_infer.store.vector_store import FILTERED_EXACT_MAX

DAYS = "days"
EXACT_DAY_MAX = 2_000  # rows up to which a day graph is searched exactly (8 MB of float32 at 512-d)
SOURCES = ["current", "superseded"]  # a graph's rows need only know whether their source was superseded
_TEMP = re.compile(r"^\.(\d{4}-\d{2}-\d{2})\.(\d+)\.tmp$")


class DayGraph:
    """A built day graph, opened for search (memory-mapped, read-only): what `store.search.nearest` needs
    of a store. Its keys, tracks and persons are the root's global ones.

    Args:
        folder: the graph's folder. dim: the embedding size.

    Raises:
        GalleryError: the folder does not hold a usable graph of `dim`.
    """

    def __init__(self, folder: Path, dim: int):
        self.dir, self.dim = Path(folder), int(dim)
        try:
            info = json.loads((self.dir / "graph.json").read_text())
            params = IndexParams(**info["params"])
            self.index = TieredIndex.view(self.dir / "index.usearch", self.dim, params)
            with np.load(self.dir / "columns.npz", allow_pickle=False) as f:
                cols = {k: f[k] for k in ("ids", "camera", "time", "track", "source", "quality")}
                cameras = json.loads(bytes(f["names"]).decode())
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise GalleryError(f"{self.dir}: not a usable day graph ({e})") from None
        if len(cols["ids"]) != len(self.index):
            raise GalleryError(f"{self.dir}: the graph holds {len(self.index)} vectors, its columns {len(cols['ids'])}")
        self.columns = Columns()
        self.columns.load(cols, cameras, SOURCES)
        self.columns.superseded = np.array([1], np.int32)
        self.info = info
        self.lock = threading.RLock()
        self.batcher = Batcher()
        self.person_of: dict = {}
        # a small day is searched exactly (its float32 matrix is small); a large one by its graph
        self.exact_max, self.filtered_exact_max = EXACT_DAY_MAX, FILTERED_EXACT_MAX
        self.emb32 = self.blocks = None

    def refresh(self) -> None:
        """Nothing to pick up: a graph never changes (a write to its day makes the catalogue stop using it)."""

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        """float32 vectors of `keys` (stored precision)."""
        return self.index.get(np.asarray(keys, np.int64))

    def __len__(self) -> int:
        return len(self.columns)


def build(root: Path, day: str, shards: list[dict], keys, fingerprint: str, dim: int, writes: int,
          params: IndexParams | None = None, progress=None) -> dict:
    """Read every row of `shards` (one day's, as the catalogue lists them), build the day's graph under a
    temp folder, fsync it and rename it into ROOT/days. Nothing is recorded in the catalogue here.

    Args:
        root: the sharded root. day: "YYYY-MM-DD". shards: the day's catalogue entries.
        keys: the root's `KeyLayout`. fingerprint, dim: the model's. writes: the day's write counter, read
            before the shards were.
        params: HNSW settings (default: the store's defaults). progress: called with rows read so far.

    Returns:
        The graph's catalogue record (`days.register`), with "made": the shards' (no, max key, rows).

    Raises:
        GalleryError: a shard cannot be read.
    """
    params = params or IndexParams()
    parts, made, cameras = [], [], {}
    for s in shards:
        folder = root / s["path"]
        if not (folder / "gallery.sqlite").is_file():  # routed, never written: no rows
            continue
        store = VectorStore.open(folder, fingerprint, dim, create=False)
        try:
            store.refresh()
            with store.lock:
                parts.append(_rows_of(store, s["no"], keys, cameras))
                made.append((s["no"], int(store.last_seen), int(len(store.columns))))
        finally:
            store.close()
        if progress is not None:
            progress(sum(len(p["ids"]) for p in parts))
    cols = {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, dtype)
            for name, dtype in (("ids", np.int64), ("camera", np.int32), ("time", np.float64),
                                ("track", np.int64), ("source", np.int32), ("quality", np.float64))}
    vectors = np.concatenate([p["vectors"] for p in parts]) if parts else np.zeros((0, dim), np.float32)
    order = np.argsort(cols["ids"], kind="stable")
    cols = {name: c[order] for name, c in cols.items()}
    vectors = vectors[order]
    return _write(root, day, cols, vectors, list(cameras), made, writes, dim, params)


def _rows_of(store, no: int, keys, cameras: dict) -> dict:
    """One shard's rows as the graph keeps them: global keys and tracks, the graph's camera codes."""
    cols = store.columns
    local_names = list(cols.cameras)
    codes = np.array([cameras.setdefault(name, len(cameras)) for name in local_names], np.int32)
    track = cols.track.copy()
    linked = track >= 0
    track[linked] = [keys.join(no, int(t)) for t in track[linked]]
    return {"ids": np.array([keys.join(no, int(k)) for k in cols.ids], np.int64),
            "camera": codes[cols.camera] if len(cols.camera) else np.zeros(0, np.int32),
            "time": cols.time.copy(), "track": track,
            "source": np.isin(cols.source, cols.superseded).astype(np.int32), "quality": cols.quality.copy(),
            "vectors": store.vectors(cols.ids) if len(cols.ids) else np.zeros((0, store.dim), np.float32)}


def _write(root: Path, day: str, cols: dict, vectors: np.ndarray, cameras: list, made: list, writes: int,
           dim: int, params: IndexParams) -> dict:
    """The graph's files under a temp folder, each fsynced, then the folder renamed into place."""
    from usearch.index import Index

    base = root / DAYS
    base.mkdir(parents=True, exist_ok=True)
    remove_stale(base)
    tmp = base / f".{day}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    index = Index(ndim=dim, metric="cos", dtype="f16", connectivity=params.connectivity,
                  expansion_add=params.expansion_add, expansion_search=params.expansion_search)
    if len(vectors):
        index.add(cols["ids"], vectors)  # usearch's batch add, on every core
    index.save(str(tmp / "index.usearch"))
    with open(tmp / "columns.npz", "wb") as f:
        np.savez(f, **cols, names=np.frombuffer(json.dumps(cameras).encode(), np.uint8))
        f.flush()
        os.fsync(f.fileno())
    times = cols["time"][~np.isnan(cols["time"])]
    info = {"day": day, "writes": writes, "rows": int(len(cols["ids"])), "made": made, "dim": dim,
            "params": json.loads(params.to_json()), "built": time.time()}
    (tmp / "graph.json").write_text(json.dumps(info))
    for name in ("index.usearch", "graph.json"):
        fsync_path(tmp / name)
    final = base / f"{day}-w{writes}-{time.time_ns()}"
    os.replace(tmp, final)
    fsync_path(base)
    return {"day": day, "path": str(final.relative_to(root)), "writes": writes, "shards": [m[0] for m in made],
            "rows": info["rows"], "cameras": cameras, "made": made,
            "t_min": float(times.min()) if len(times) else None, "t_max": float(times.max()) if len(times) else None}


def unchanged(root: Path, shards: list[dict], made: list) -> bool:
    """Whether the day's shards hold exactly the rows the graph was built from (highest key and count, read
    from each shard's table): a writer that committed meanwhile makes the graph incomplete."""
    built = {no: (top, count) for no, top, count in made}
    for s in shards:
        db = root / s["path"] / "gallery.sqlite"
        if not db.is_file():
            if s["no"] in built:
                return False
            continue
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as conn:
            top, count = conn.execute("SELECT coalesce(max(id), 0), count(*) FROM crops").fetchone()
        if s["no"] not in built:
            if count:
                return False
            continue
        if built[s["no"]][0] != top or built[s["no"]][1] > count:  # damaged rows are in the table, not the graph
            return False
    return True


def remove_stale(base: Path) -> None:
    """Temp folders of builds whose process died (a SIGKILL mid-build)."""
    for t in base.glob(".*.tmp"):
        m = _TEMP.match(t.name)
        if m is not None and not process_alive(int(m.group(2))):
            shutil.rmtree(t, ignore_errors=True)
