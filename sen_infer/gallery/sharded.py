"""A sharded gallery: many ordinary galleries under one root (`sen_infer.gallery.catalogue`), searched
as one. It reads and writes its shards only through `GalleryLike` (each shard is a `Gallery`).

Shards are searched one after another by default (`fanout_workers`), each with the store's own
multi-threaded search; `workers=N` searches N at once.

Why (camera, day): one camera's recordings are ingested by one writer at a time, so each shard has one
writer; a camera filter and a time window select shards without opening them; and retention (footage
kept 30 days in many jurisdictions) drops whole days at once (`drop_days_before`). A video belongs to
the shard of the day it starts, so a track never spans two shards, and per-track collapsing per shard
then merging gives exactly what one gallery holding the same rows gives.

Keys are global: shard number << bits | the shard's own row key (`catalogue.KeyLayout`: below 2**53, so
exact in JSON, for 10,000 cameras over 10 years).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

import sen_infer.store.search as store_search
from sen_infer.errors import GalleryError, QueryError, UnknownKey, require_utf8
from sen_infer.gallery.catalogue import Catalogue, day_of, is_sharded
from sen_infer.gallery.day_graph import DayGraph
from sen_infer.gallery.protocol import Capabilities
from sen_infer.gallery.sharded_writes import ShardedWrites, frame_count, video_duration
from sen_infer.gallery.single import Gallery
from sen_infer.store import Row, normalise, peek

__all__ = ["ShardedGallery", "open_gallery", "fanout_workers", "frame_count", "video_duration"]

def fanout_workers() -> int:
    """Threads that search shards at once. Each shard's search is already a multi-threaded matrix product
    (or a batched graph search), so on a small machine more threads only contend: on 2 cores, 100 shards
    took 18.9 ms p50 one after another, 37.7 ms with 2 threads and 50.6 ms with 8 (benchmarks.cluster).
    One thread per 4 cores above 8 cores is a guess that has not been measured here."""
    cores = os.cpu_count() or 1
    return 1 if cores < 8 else cores // 4


class ShardedGallery(ShardedWrites):
    """The `Gallery` reading surface over a sharded root (`Retriever` opens one when ROOT holds a
    catalogue), plus ingest routed to the (camera, day) shard. Shards are opened when a query first
    needs them; at most `max_open` stay open.

    Args:
        root: the sharded root (holding `catalogue.sqlite`).
        encoders: the encoders every shard is opened with.
        create: make the root when it does not exist.
        max_open: shards kept open at once (least recently used closed first).
        workers: shards searched at once (default `fanout_workers()`).

    Raises:
        GalleryError: no catalogue at `root` (and create=False), or a root path that is not UTF-8.
    """

    capabilities = Capabilities(identities=False, tune_index=False, sharded=True)

    def __init__(self, root: Path, encoders, create: bool = False, max_open: int = 256, workers: int | None = None):
        require_utf8(str(root), "gallery path", GalleryError)
        self.root = Path(root)
        self.catalogue = Catalogue(self.root, create=create)
        self.encoders = encoders
        self.max_open = max_open
        self.workers = fanout_workers() if workers is None else max(1, int(workers))
        self._open: OrderedDict[int, Gallery] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0  # shards opened since this object was made (what pruning saves is counted here)
        self._pool: ThreadPoolExecutor | None = None
        self._made: set[int] = set()  # shards whose database was seen (a made shard stays made)
        self.last_searched: list[int] = []  # the shards the last search looked in
        self.last_graphs: list[str] = []  # the days whose graph the last search looked in
        self._graphs: dict[str, DayGraph] = {}  # open day graphs by folder (only current ones are kept)

    @classmethod
    def open(cls, root, encoders, create: bool = False) -> "ShardedGallery":
        """Open the sharded root at `root`; GalleryError when it holds no catalogue (and create=False)."""
        return cls(Path(root), encoders, create=create)

    # ---- shards -----------------------------------------------------------------------------------
    def shard(self, no: int, info: dict | None = None, create: bool = False) -> Gallery:
        """Shard `no`, opened on first use. Without `info` (a key's shard, not one just read from the
        catalogue) the catalogue is asked first: a shard another process removed (retention) is gone
        for this reader too, even while it was open here.

        Raises:
            UnknownKey: no shard `no` in the catalogue (never made, or removed by retention).
        """
        if info is None:
            info = self.catalogue.numbered([no]).get(no)
            if info is None:
                self._forget(no)
                raise UnknownKey(f"no shard {no} in {self.root} (never made, or removed by retention)")
        with self._lock:
            g = self._open.get(no)
            if g is not None:
                self._open.move_to_end(no)
                return g
        g = Gallery.open(self.root / info["path"], encoders=self.encoders, create=create)
        with self._lock:
            if no in self._open:  # opened meanwhile by another thread
                g.close()
                return self._open[no]
            self._open[no] = g
            self.opened += 1
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                old.close()
        return g

    def made_shards(self, entries: list[dict] | None = None) -> list[dict]:
        """The catalogue's shards (or of `entries`) whose folder holds a gallery. An entry without one was
        left by a routing that was killed before its writer opened the shard: it holds no rows, and is
        skipped by every read (an ingest of its camera and day makes it) rather than failing every query."""
        out = []
        for s in self.catalogue.shards() if entries is None else entries:
            if s["no"] not in self._made:
                if not (self.root / s["path"] / "gallery.sqlite").is_file():
                    continue
                self._made.add(s["no"])
            out.append(s)
        return out

    def _forget(self, no: int) -> None:
        """Close shard `no` here: it is no longer in the catalogue (retention removed it)."""
        with self._lock:
            gone = self._open.pop(no, None)
        if gone is not None:
            gone.close()

    def shard_for(self, camera: str, timestamp: float | None) -> tuple[dict, Gallery]:
        """(catalogue entry, opened shard) of `camera` on the UTC day of `timestamp`, made if new."""
        info = self.catalogue.shard_for(camera, day_of(timestamp))
        return info, self.shard(info["no"], info, create=True)

    def _forget_graph(self, folder: str | None) -> None:
        """Drop an open day graph (outdated, replaced or removed by retention)."""
        if folder:
            with self._lock:
                self._graphs.pop(folder, None)

    def graph(self, entry: dict) -> DayGraph:
        """The day graph of a catalogue entry (`days.current`), opened on first use; graphs no longer
        current are closed as the catalogue stops listing them.

        Raises:
            GalleryError: its folder does not hold a usable graph.
        """
        with self._lock:
            g = self._graphs.get(entry["path"])
        if g is None:
            g = DayGraph(self.root / entry["path"], self.encoders.dim)
            with self._lock:
                g = self._graphs.setdefault(entry["path"], g)
        return g

    def _plan(self, camera, since, until) -> tuple[list[dict], list[dict]]:
        """(current day graphs, made shards of the other days) a filter can match, read once per search."""
        names = None if camera is None else ({camera} if isinstance(camera, str) else set(camera))
        graphs, shards = self.catalogue.plan(names, since, until)
        return graphs, self.made_shards(shards)

    def select(self, camera=None, since=None, until=None) -> list[dict]:
        """The shards a filter can match: by camera name, and by each shard's recorded time span (a shard
        with no recorded span holds undated rows, which a time window never selects)."""
        names = None if camera is None else ({camera} if isinstance(camera, str) else set(camera))
        return self.made_shards(self.catalogue.select(names, since, until))

    # ---- search -----------------------------------------------------------------------------------
    def search(self, query, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
               superseded: bool = False, per_person: bool = False, min_quality: float | None = None) -> list[Row]:
        """`nearest`, then the rows of the k winners only, read from their shards.

        Args:
            query, k, camera, since, until, per_track, superseded, min_quality: as `Gallery.search`; keys
                are global.

        Raises:
            QueryError: per_person=True (identities are linked within one gallery).
        """
        graphs, shards = self._plan(camera, since, until)  # the catalogue is read once per search
        best = self._nearest_in(graphs, shards, query, k, camera, since, until, per_track, superseded, per_person,
                                min_quality)
        rows = self.rows([key for key, _ in best], known={s["no"]: s for s in shards})
        return [replace(rows[key], score=score) for key, score in best if key in rows]

    def nearest(self, query, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
                superseded: bool = False, per_person: bool = False,
                min_quality: float | None = None) -> list[tuple[int, float]]:
        """Each matching day graph's and shard's top k as (key, score), merged by score then global key.
        Arguments and errors as `search`."""
        graphs, shards = self._plan(camera, since, until)
        return self._nearest_in(graphs, shards, query, k, camera, since, until, per_track, superseded, per_person,
                                min_quality)

    def _nearest_in(self, graphs: list[dict], shards: list[dict], query, k, camera, since, until, per_track,
                    superseded, per_person, min_quality) -> list[tuple[int, float]]:
        """`nearest` over the day graphs and shards `_plan` chose (a graph's keys are already global)."""
        if per_person:
            raise QueryError("per_person is not available on a sharded gallery: identities are linked "
                             "within one gallery")
        self.last_searched = [s["no"] for s in shards]
        self.last_graphs = [g["day"] for g in graphs]
        q = normalise(np.asarray(query, np.float32).reshape(-1))
        if q.shape != (self.dim,):
            raise GalleryError(f"a query vector must have {self.dim} values, not {q.size}")

        def one(part):
            kind, entry = part
            if kind == "graph":
                pairs = store_search.nearest(self.graph(entry), q, k, camera, since, until, per_track, superseded,
                                             False, min_quality)
                return [(score, key) for key, score in pairs]
            pairs = self.shard(entry["no"], entry).nearest(q, k, camera, since, until, per_track, superseded,
                                                           min_quality=min_quality)
            return [(score, self.catalogue.keys.join(entry["no"], key)) for key, score in pairs]

        parts = [("graph", g) for g in graphs] + [("shard", s) for s in shards]
        if len(parts) <= 1 or self.workers <= 1:
            results = [one(p) for p in parts]
        else:
            results = list(self._executor().map(one, parts))
        best = sorted((p for part in results for p in part), key=lambda p: (-p[0], p[1]))[:k]
        return [(key, score) for score, key in best]

    def _executor(self) -> ThreadPoolExecutor:
        """One pool for the gallery's life (a pool per query cost more than small shards' searches)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="shard-search")
            return self._pool

    def rows(self, keys, known: dict[int, dict] | None = None) -> dict[int, Row]:
        """The stored rows of global `keys`, read from their shards; missing keys are left out.

        Args:
            keys: global row keys.
            known: catalogue entries by shard number already read (a search's own selection); the
                catalogue is asked only for the shards not among them.

        Returns:
            {global key: `Row`}, the rows' `key`, `track` and `person` made global too.
        """
        by_shard: dict[int, list[int]] = {}
        for key in keys:
            no, local = self.catalogue.keys.split(key)
            by_shard.setdefault(no, []).append(local)
        known = dict(known or {})
        missing = [no for no in by_shard if no not in known]
        if missing:
            known.update({s["no"]: s for s in self.made_shards(list(self.catalogue.numbered(missing).values()))})
        out = {}
        for no, locals_ in by_shard.items():
            if no not in known:
                self._forget(no)
                continue
            with self._lock:
                opened = self._open.get(no)
            # a shard not open here is read from its table alone: opening it (its index and columns) costs
            # 10-18 ms, and a search over day graphs finds its winners in shards it never opened
            got = opened.rows(locals_) if opened is not None else peek.rows(self.root / known[no]["path"], locals_)
            for local, row in got.items():
                out[self.catalogue.keys.join(no, local)] = _rekey(row, no, self.catalogue.keys)
        return out

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        """Every row's global key (of one camera when given), shard by shard."""
        return [self.catalogue.keys.join(s["no"], k) for s in self.select(camera) for k in
                self.shard(s["no"], s).keys(camera, superseded)]

    def embedding(self, key: int) -> np.ndarray:
        """Row `key`'s stored unit vector; `UnknownKey` when no shard holds it.

        Raises:
            UnknownKey: its shard is gone, or the shard has no such row.
        """
        no, local = self.catalogue.keys.split(key)
        return self.shard(no).embedding(local)

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        """Global keys of row `key`'s track and of its camera's rows nearest in time (in its shard).

        Raises:
            UnknownKey: its shard is gone, or the shard has no such row.
        """
        no, local = self.catalogue.keys.split(key)
        track, near = self.shard(no).context(local, nearby)
        return [self.catalogue.keys.join(no, k) for k in track], [self.catalogue.keys.join(no, k) for k in near]

    def source_record(self, row: Row) -> dict | None:
        """The ingest record of the source `row` (a row of this root, global key) came from.

        Raises:
            UnknownKey: the row's shard is gone.
        """
        no, local = self.catalogue.keys.split(row.key)
        return self.shard(no).source_record(replace(row, key=local))

    def camera_summary(self) -> list[dict]:
        """Each camera across shards with its row count and first and last time."""
        by_name: dict = {}
        for s in self.made_shards():
            for c in self.shard(s["no"], s).camera_summary():
                got = by_name.setdefault(c["name"], {"name": c["name"], "rows": 0, "first": None, "last": None})
                got["rows"] += c["rows"]
                if c["first"] is not None:
                    got["first"] = c["first"] if got["first"] is None else min(got["first"], c["first"])
                    got["last"] = c["last"] if got["last"] is None else max(got["last"], c["last"])
        return sorted(by_name.values(), key=lambda c: (c["name"] is None, c["name"] or ""))

    def stats(self) -> dict:
        """The shards' statistics added up, with the number of shards.

        Returns:
            `Gallery.stats`'s figures summed (without "index"), and "shards".
        """
        parts = [(s, self.shard(s["no"], s).stats()) for s in self.made_shards()]
        spans = [p["time_span"] for _, p in parts if p["time_span"]]
        return {"rows": sum(p["rows"] for _, p in parts), "sources": sum(p["sources"] for _, p in parts),
                "superseded_sources": sum(p["superseded_sources"] for _, p in parts),
                "aliases": sum(p.get("aliases", 0) for _, p in parts),
                "tracks": sum(p["tracks"] for _, p in parts),
                "cameras": sorted({c for _, p in parts for c in p["cameras"]}),
                "time_span": [min(a for a, _ in spans), max(b for _, b in spans)] if spans else None,
                "index_size": sum(p["index_size"] for _, p in parts),
                "damaged_rows": sum(p["damaged_rows"] for _, p in parts), "shards": len(parts),
                "day_graphs": len(self.catalogue.graphs())}

    def link_identities(self, *args, **kw):
        """Not available (`capabilities.identities` is False): GalleryError."""
        raise GalleryError(f"{self.root} is a sharded root: identities are linked within one gallery, and a "
                           f"sharded root holds one per camera and day (docs/scale.md)")

    def timeline(self, person: int):
        """Not available (`capabilities.identities` is False): GalleryError."""
        raise GalleryError(f"{self.root} is a sharded root: timelines follow identities linked within one gallery "
                           f"(docs/scale.md)")

    def tune_index(self, target: float = 0.99, queries=None) -> dict:
        """Not available on a root (`capabilities.tune_index` is False): GalleryError naming how to tune
        one shard."""
        raise GalleryError(f"{self.root} is a sharded root: tune one shard's index at a time "
                           f"(--gallery {self.root}/shards/CAMERA/DAY)")

    def check(self) -> dict:
        """`info --check` over every shard: ok only when every shard is.

        Returns:
            {"ok", "problems" (each prefixed with its shard's folder), "rows", "index_size"}.
        """
        problems, rows, indexed = [], 0, 0
        for s in self.made_shards():
            c = self.shard(s["no"], s).check()
            problems += [f"{s['path']}: {p}" for p in c["problems"]]
            rows += c.get("rows", 0)
            indexed += c.get("index_size", 0)
        return {"ok": not problems, "problems": problems, "rows": rows, "index_size": indexed}

    def __len__(self) -> int:
        """Rows in all shards. A compacted day counts the rows its current graph holds (recorded when it was
        built: `/readyz` asks this, and counting 30,000 shards' tables took seconds); a shard of another day
        not open here is counted from its table, not opened."""
        graphs, shards = self._plan(None, None, None)
        total = sum(int(g["rows"]) for g in graphs)
        for s in shards:
            with self._lock:
                g = self._open.get(s["no"])
            total += len(g) if g is not None else Gallery.count_rows(self.root / s["path"])
        return total

    @property
    def dir(self) -> Path:
        """The root folder."""
        return self.root

    @property
    def dim(self) -> int:
        """The embedding size."""
        return self.encoders.dim

    def close(self) -> None:
        """Close every open shard and the search pool."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            for g in self._open.values():
                g.close()
            self._open.clear()
            self._graphs.clear()


def _rekey(row: Row, shard: int, keys) -> Row:
    """`row` with its key, track and person made root-wide (`catalogue.KeyLayout` `keys`)."""
    track = None if row.track is None else keys.join(shard, row.track)
    person = None if row.person is None else keys.join(shard, row.person)
    return replace(row, key=keys.join(shard, row.key), track=track, person=person)


def open_gallery(path, encoders, create: bool = False):
    """Open whichever gallery `path` holds: a `ShardedGallery` (a catalogue is there) or a `Gallery`.

    Args:
        path: a gallery folder or a sharded root.
        encoders: the encoders of the engine dir it was built with.
        create: make a single gallery when there is none (queries pass False).

    Returns:
        A `GalleryLike`.

    Raises:
        GalleryError: nothing to open (create=False) or it cannot be opened.
        ModelMismatchError: it was built with another model.
    """
    if is_sharded(path):
        return ShardedGallery.open(path, encoders)
    return Gallery.open(path, encoders=encoders, create=create)
