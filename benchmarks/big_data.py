"""Benchmark data past what fits in RAM twice (10M x 512 float32 is 20 GB): written in chunks to a file,
and the exact top-k found by streaming over it.

Same distribution as `benchmarks.index.clustered` (2,000 unit centres, Gaussian noise of `spread` spread over
the dimensions, normalised), drawn chunk by chunk from one seeded generator. The rows are stored as float16,
the precision the gallery keeps (half the disk), and the exact truth is computed on those stored values.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 250_000  # rows drawn and written at once (0.5 GB of float32 at 512-d)


def write_clustered(data_path: Path, queries_path: Path, n: int, nq: int, dim: int, seed: int = 0,
                    clusters: int = 2000, spread: float = 0.35) -> None:
    """`n` rows to `data_path` (a float16 .npy, written in chunks) and `nq` held-out queries (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        x = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, dim), dtype=np.float32) * (
            spread / np.sqrt(dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    out = np.lib.format.open_memmap(data_path, mode="w+", dtype=np.float16, shape=(n, dim))
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        out[start:stop] = draw(stop - start)
        print(f"  data {stop:,}/{n:,} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    out.flush()
    del out
    np.save(queries_path, draw(nq).astype(np.float32))


def exact_topk_streamed(data: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row indices of each query's exact top `k` by inner product (float32 over the stored values), read
    from `data` (a memory map) one chunk at a time: [len(queries), k], best first."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(data), CHUNK):
        block = np.asarray(data[start:start + CHUNK], np.float32)
        s = queries @ block.T
        idx = np.argpartition(-s, k, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], axis=1)
        cand_i = np.concatenate([best_i, idx + start], axis=1)
        keep = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
    return best_i
