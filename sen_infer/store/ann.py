"""The gallery's approximate-nearest-neighbour index: a memory-mapped base file plus a small delta in RAM.

Why two tiers: at a million rows the HNSW index is ~1.2 GB. Loading it into RAM on every open costs
seconds and a full copy of the vectors per process; a usearch *view* maps the saved file instead (opened
in milliseconds, pages shared by every process that searches the gallery, and left to the OS page cache).
A view cannot change, so rows added since the file was saved go to an in-RAM `delta` index, rows removed
since are `tombstones` filtered out of results, and `materialise` writes base + delta - tombstones as the
next file. After a crash during a save the last good file is still there: only the rows committed after
it are added to the delta on the next open, never the whole gallery again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from sen_infer.errors import GalleryError


@dataclass(frozen=True)
class IndexParams:
    """HNSW settings of one gallery, kept in its meta table (benchmarks.scale measures the choice).

    connectivity and expansion_add shape the graph when rows are added; expansion_search is the width of
    each search and may be changed at any time (`VectorStore.tune_index` picks it by measured recall).
    """
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 4096:
                raise GalleryError(f"index parameter {name} must be an integer from 2 to 4096, not {value!r}")

    def to_json(self) -> str:
        """The settings as the JSON kept in the gallery's meta table (keys sorted)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "IndexParams":
        """Settings read from the meta table's JSON (the defaults for none, missing keys defaulted);
        GalleryError when it is unreadable or out of range."""
        if not text:
            return cls()
        try:
            values = json.loads(text)
            return cls(**{k: values[k] for k in ("connectivity", "expansion_add", "expansion_search") if k in values})
        except (ValueError, TypeError) as e:
            raise GalleryError(f"the gallery's index parameters are unreadable ({e}): {text[:80]!r}") from None


def _new(dim: int, params: IndexParams):
    from usearch.index import Index

    return Index(ndim=dim, metric="cos", dtype="f16", connectivity=params.connectivity,
                 expansion_add=params.expansion_add, expansion_search=params.expansion_search)


def _stack(vectors, dim: int) -> np.ndarray:
    """usearch's `get` gives one array per key (None for a missing one): one float32 matrix."""
    if isinstance(vectors, np.ndarray):
        return np.asarray(vectors, np.float32).reshape(-1, dim)
    if any(v is None for v in vectors):
        raise KeyError("a key is not in the index")
    return np.stack(vectors).astype(np.float32) if len(vectors) else np.zeros((0, dim), np.float32)


class TieredIndex:
    """`add`, `remove`, `search`, `get`, `contains`, `len` over base (a view of a saved file, or None) and
    delta (in RAM). Not thread-safe: the store calls it under its lock."""

    def __init__(self, dim: int, params: IndexParams, base=None):
        self.dim, self.params = int(dim), params
        self.base = base
        self.delta = _new(self.dim, params)
        self._tombstones: set[int] = set()  # base keys removed since the file was saved

    @classmethod
    def view(cls, path, dim: int, params: IndexParams) -> "TieredIndex":
        """Map a saved index; ValueError/RuntimeError when the file is not a usable index of `dim`."""
        base = _new(dim, params)
        base.view(str(path))
        if base.ndim != dim:
            raise ValueError(f"index holds {base.ndim}-d vectors, not {dim}-d")
        base.expansion_search = params.expansion_search
        return cls(dim, params, base)

    # ---- counts and lookups ----------------------------------------------------------------------
    def __len__(self) -> int:
        return (len(self.base) - len(self._tombstones) if self.base is not None else 0) + len(self.delta)

    @property
    def delta_size(self) -> int:
        """Rows held in RAM only, not yet in the saved file (the store saves when this grows large)."""
        return len(self.delta)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """A bool per key: in the delta, or in the base and not removed since it was saved."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        if not len(keys):
            return np.zeros(0, bool)
        found = np.asarray(self.delta.contains(keys), bool).reshape(-1) if len(self.delta) else np.zeros(len(keys), bool)
        if self.base is not None and len(self.base):
            in_base = np.asarray(self.base.contains(keys), bool).reshape(-1)
            if self._tombstones:
                in_base &= ~np.isin(keys, np.fromiter(self._tombstones, np.int64))
            found |= in_base
        return found

    def get(self, keys: np.ndarray) -> np.ndarray:
        """[len(keys), dim] float32 vectors (as stored: float16 precision); KeyError for a missing key."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        out = np.empty((len(keys), self.dim), np.float32)
        if not len(keys):
            return out
        in_delta = np.asarray(self.delta.contains(keys), bool).reshape(-1) if len(self.delta) else np.zeros(len(keys), bool)
        if in_delta.any():
            out[in_delta] = _stack(self.delta.get(keys[in_delta]), self.dim)
        rest = ~in_delta
        if rest.any():
            if self.base is None:
                raise KeyError("a key is not in the index")
            out[rest] = _stack(self.base.get(keys[rest]), self.dim)
        return out

    # ---- changes ---------------------------------------------------------------------------------
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows to the in-RAM delta (the mapped base cannot change)."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        if len(keys):
            self.delta.add(keys, np.asarray(vectors, np.float32))

    def remove(self, keys: np.ndarray) -> None:
        """Remove rows: out of the delta, and tombstoned in the base; unknown keys are ignored."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        if not len(keys):
            return
        if len(self.delta):
            in_delta = np.asarray(self.delta.contains(keys), bool).reshape(-1)
            if in_delta.any():
                self.delta.remove(keys[in_delta])
            keys = keys[~in_delta]
        if self.base is not None and len(keys):
            present = np.asarray(self.base.contains(keys), bool).reshape(-1)
            self._tombstones.update(int(k) for k in keys[present])

    def set_expansion_search(self, value: int) -> None:
        """Use search width `value` in both tiers from now on (what `tune_index` measures and stores)."""
        self.params = IndexParams(self.params.connectivity, self.params.expansion_add, int(value))
        for index in (self.base, self.delta):
            if index is not None:
                index.expansion_search = int(value)

    # ---- search ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (keys, cosine distances), best first, at most `count`, tombstones left out."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        parts = []
        if self.base is not None and len(self.base):
            found = self._search_one(self.base, queries, count + len(self._tombstones))
            if self._tombstones:  # removed (or re-indexed into the delta) since the file was saved
                dead = np.fromiter(self._tombstones, np.int64)
                found = [(k[~np.isin(k, dead)], d[~np.isin(k, dead)]) for k, d in found]
            parts.append(found)
        if len(self.delta):
            parts.append(self._search_one(self.delta, queries, count))
        out = []
        for i in range(len(queries)):
            if not parts:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            keys = np.concatenate([p[i][0] for p in parts])
            dist = np.concatenate([p[i][1] for p in parts])
            order = np.lexsort((keys, dist))[:count]
            out.append((keys[order], dist[order]))
        return out

    @staticmethod
    def _search_one(index, queries: np.ndarray, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        res = index.search(queries, count)
        keys = np.atleast_2d(np.asarray(res.keys, np.int64))
        dist = np.atleast_2d(np.asarray(res.distances, np.float32))
        counts = np.atleast_1d(getattr(res, "counts", [keys.shape[1]]))
        return [(keys[i, : counts[i]], dist[i, : counts[i]]) for i in range(len(queries))]

    # ---- saving ----------------------------------------------------------------------------------
    def materialise(self):
        """One in-RAM usearch index holding base + delta - tombstones, to be saved as the next file: the
        delta itself when there is no base (no row is inserted twice), else a copy of the base with the
        delta's rows added, for the time of the save. The caller re-views the saved file after."""
        if self.base is None or not len(self.base):
            return self.delta
        out = self.base.copy()
        if self._tombstones:
            out.remove(np.fromiter(self._tombstones, np.int64))
        if len(self.delta):
            keys = np.asarray(self.delta.keys, np.int64)
            out.add(keys, _stack(self.delta.get(keys), self.dim))
        return out

    def in_ram(self) -> "TieredIndex":
        """The same rows as one in-RAM index (no mapped base), to which many rows are added at once and
        which is saved once (`VectorStore.bulk_import`)."""
        whole = TieredIndex(self.dim, self.params)
        whole.delta = self.materialise()
        return whole

    def memory(self) -> dict:
        """Rows in the mapped base file and bytes of the in-RAM delta (usearch's own accounting)."""
        return {"mapped_rows": len(self.base) if self.base is not None else 0,
                "delta_bytes": int(self.delta.memory_usage)}
