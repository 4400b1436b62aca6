"""Search over a store: exact over a cached float32 matrix (small galleries, selective filters) or
over the HNSW graph with over-fetch and post-filter; concurrent searches batched (`Batcher`);
results collapsed per track or per person."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from sen_infer.errors import GalleryError
from sen_infer.store.camera_blocks import CAMERA_EXACT_MAX, camera_positions
from sen_infer.store.columns import View
from sen_infer.store.rows import Row, normalise


class Batcher:
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


def search(store, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
           until: float | None = None, per_track: bool = True, superseded: bool = False,
           per_person: bool = False, min_quality: float | None = None) -> list[Row]:
    """The best k rows for `query` matching the filters, as Rows with their cosine `score`, sorted by
    score then key; one per track unless per_track=False, one per linked person with per_person=True
    (a track not linked to others is a person of its own); rows of superseded sources only with
    superseded=True; with `min_quality`, rows whose crop score is known and lower are left out."""
    pairs = store.nearest(query, k, camera, since, until, per_track, superseded, per_person, min_quality)
    rows = store.rows([key for key, _ in pairs])
    return [with_score(rows[key], score) for key, score in pairs if key in rows]


def nearest(store, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
            until: float | None = None, per_track: bool = True,
            superseded: bool = False, per_person: bool = False,
            min_quality: float | None = None) -> list[tuple[int, float]]:
    """`search` as (key, cosine) pairs, without reading the rows.

    The lock is held only to take a snapshot of the columns (views that later appends never
    change); scoring runs outside it, batched with the queries of other threads."""
    store.refresh()
    q = normalise(np.asarray(query).reshape(-1))
    if q.shape != (store.dim,):
        raise GalleryError(f"a query vector must have {store.dim} values, not {q.size}")
    with store.lock:
        view = store.columns.view()
        if per_person:
            view.group = store.person_of
        if len(view.ids) <= store.exact_max and len(view.ids):
            if store.emb32 is None or len(store.emb32) != len(view.ids):
                store.emb32 = store.vectors(view.ids)
            view.emb32 = store.emb32
    n = len(view.ids)
    if n == 0 or k <= 0:
        return []
    if camera is not None and view.emb32 is None and store.blocks is not None:
        hits = by_camera(store, view, q, k, camera, since, until, per_track, superseded, min_quality)
        if hits is not None:
            return hits
    mask = store.columns.mask(view, camera, since, until, superseded, min_quality)
    selected = n if mask is None else int(mask.sum())
    if selected == 0:
        return []
    if view.emb32 is not None:  # a small gallery: exact search over the cached float32 matrix
        matrix = view.emb32
        scores = store.batcher.run(("exact", id(matrix)), q, lambda qs: matrix_times(matrix, qs))
        pos = np.arange(n) if mask is None else np.flatnonzero(mask)
        return top(view, pos, scores if mask is None else scores[pos], k, per_track)
    if mask is not None and selected <= store.filtered_exact_max:  # a selective filter: exact over it
        pos = np.flatnonzero(mask)
        with store.lock:
            vectors = store.vectors(view.ids[pos])
        return top(view, pos, vectors @ q, k, per_track)
    fetch = min(n, max(4 * k, 64))
    while True:  # over-fetch from the graph, post-filter, widen until enough survive
        keys, dist = store.batcher.run(("graph", fetch), q, lambda qs, f=fetch: graph(store, qs, f))
        pos = np.searchsorted(view.ids, keys)
        known = pos < n  # rows added after the snapshot are left for the next query
        known[known] = view.ids[pos[known]] == keys[known]
        pos, scores = pos[known], 1.0 - dist[known]
        if mask is not None:
            keep = mask[pos]
            pos, scores = pos[keep], scores[keep]
        hits = top(view, pos, scores, k, per_track)
        if len(hits) >= k or fetch >= n:
            return hits
        fetch = min(n, fetch * 4)


def by_camera(store, view: View, q: np.ndarray, k: int, camera, since, until, per_track: bool, superseded: bool,
              min_quality) -> list[tuple[int, float]] | None:
    """Exact search over the filter's cameras' rows, read in place from the camera file
    (`camera_blocks`); None when they are too many (the graph is then faster). usearch's exact float16
    kernel picks candidates; they are scored again in float32, as the other exact searches score."""
    from usearch.index import search as exact_search  # here: usearch before onnxruntime crashes the latter

    blocks = store.blocks
    names = [camera] if isinstance(camera, str) else list(camera)
    if blocks.count(names) > CAMERA_EXACT_MAX:
        return None
    codes = [store.columns.cameras[c] for c in names if c in store.columns.cameras]
    pos, vectors, tail = camera_positions(view, blocks, names, codes)
    if len(tail):  # rows added since the file was written: from the index (few)
        with store.lock:
            extra = store.vectors(view.ids[tail]).astype(np.float16)
        pos, vectors = np.concatenate([pos, tail]), np.concatenate([np.asarray(vectors), extra])
    sub = View(view.ids[pos], view.camera[pos], view.time[pos], view.track[pos], view.source[pos], view.superseded,
               quality=None if view.quality is None else view.quality[pos])
    mask = store.columns.mask(sub, None, since, until, superseded, min_quality)  # the cameras are chosen
    if mask is not None:
        keep = np.flatnonzero(mask)
        pos, vectors = pos[keep], np.asarray(vectors)[keep]
    n = len(pos)
    if n == 0 or k <= 0:
        return []
    fetch = min(n, max(8 * k, 64))
    while True:
        if fetch >= n:  # every row: scored directly
            cand = np.arange(n)
        else:
            cand = np.asarray(exact_search(vectors, q.astype(np.float16), fetch, "cos", exact=True).keys, np.int64)
        scores = np.asarray(vectors[cand], np.float32) @ q
        hits = top(view, pos[cand], scores, k, per_track)
        if len(hits) >= k or fetch >= n:
            return hits
        fetch = min(n, fetch * 4)


def graph(store, queries: np.ndarray, fetch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One batched HNSW search for the queries of several threads: [(keys, distances)] per query."""
    with store.lock:
        return store.index.search(queries, fetch)


def top(view: View, pos: np.ndarray, scores: np.ndarray, k: int,
         per_track: bool) -> list[tuple[int, float]]:
    """Best k by score (ties by key), one per track when asked. Sorts only the leading candidates."""
    want = k * 8 if per_track or view.group is not None else k
    if len(scores) > 4 * want:
        threshold = np.partition(scores, len(scores) - want)[len(scores) - want]
        lead = np.flatnonzero(scores >= threshold)  # every tie at the boundary stays in
        hits = collapse(view, pos[lead], scores[lead], k, per_track)
        if len(hits) == k:
            return hits
    return collapse(view, pos, scores, k, per_track)


def collapse(view: View, pos: np.ndarray, scores: np.ndarray, k: int,
              per_track: bool) -> list[tuple[int, float]]:
    """The first k (key, score) of the candidates `pos`, by score then key. With per_track (or a
    `view.group`: per linked person) a row whose track (person) already has a better one is skipped;
    rows without a track always count."""
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


def matrix_times(matrix: np.ndarray, queries: np.ndarray) -> list[np.ndarray]:
    """Scores of each query against every row, one matrix-vector product per query, run by one thread
    at a time. One matrix-matrix product for a batch would read the matrix once, but its floats differ
    from the per-query product's (up to 6e-5), so a query's near-ties would depend on how many others
    were waiting; and with OpenBLAS on 2 cores it is slower below 8 queries (10k x 512 float32: 1.4 ms
    per query for 2, 0.74 for 4, against 0.3 to 0.45 each alone). Taking turns also keeps concurrent
    callers from fighting over BLAS's threads (0.49x the single-thread QPS before batching)."""
    return [matrix @ q for q in queries]


def with_score(row: Row, score: float) -> Row:
    """`row` with its search score."""
    return replace(row, score=score)
