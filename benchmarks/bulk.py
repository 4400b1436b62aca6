"""Bulk import (`VectorStore.bulk_import`): rows/s into a new gallery, and what the construction width costs
in recall, side by side on the same vectors.

    python -m benchmarks.bulk [--rows 200000] [--dim 512] [--widths 128 64 40] [--search-widths 64 96 128]
                              [--queries 300] [--checkpoint-from 250000] [--without-checkpoints]

Data: clustered unit vectors (`benchmarks.index.clustered`, 2,000 centres, sigma 0.35), rows in
transactions of 20,000 as `benchmarks.scale` writes them (100 cameras, 8 rows a track). For each
construction width (usearch `expansion_add`; 128 is the gallery's default) a fresh gallery is built inside
one `bulk_import` block: rows/s counts everything (SQLite, the graph, the one save). Then, at each search
width (usearch `expansion_search`; 64 is the gallery's default), recall@10 of `VectorStore.nearest` (k=10,
per_track off) against an exact float32 scan on held-out queries, and its p50 latency one query at a time:
a cheaper graph is only a gain if some search width gives it the same recall at no more latency. The old way, `add_embeddings` without the block (an index saved whenever the
in-RAM part grows by a quarter), is timed on the first --baseline rows for the ratio. The block saves the
index at doubling sizes from --checkpoint-from rows (`bulk_import`'s checkpoints); --without-checkpoints
builds the first width once more saving only at the end, so what the checkpoints cost is a ratio of one run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.index import clustered, exact_topk
from benchmarks.report import write
from benchmarks.scale import BATCH, FP, _rows
from sen_infer.store.writes import BULK_CHECKPOINT


def build(folder: Path, data: np.ndarray, width: int | None, bulk: bool = True,
          checkpoint_from: int | None = None) -> float:
    from sen_infer.store import VectorStore

    store = VectorStore.open(folder, FP, data.shape[1])
    n = len(data)
    t0 = time.perf_counter()
    if bulk:
        with store.bulk_import(expansion_add=width, checkpoint_from=checkpoint_from):
            for start in range(0, n, BATCH):
                store.add_embeddings(data[start:start + BATCH], _rows(start, min(n, start + BATCH), n))
    else:
        for start in range(0, n, BATCH):
            store.add_embeddings(data[start:start + BATCH], _rows(start, min(n, start + BATCH), n))
        store.persist_index()
    seconds = time.perf_counter() - t0
    store.close()
    return n / seconds


def recall_of(folder: Path, queries: np.ndarray, truth: np.ndarray, dim: int, search_widths=(None,)) -> list:
    """Per search width (None: the gallery's own): (width, recall@10, p50 ms) of `nearest`, one query at a time."""
    from sen_infer.store import VectorStore

    store = VectorStore.open(folder, FP, dim, create=False)
    out = []
    for width in search_widths:
        if width is not None:
            store.index.set_expansion_search(width)
        for q in queries[:20]:  # warm the pages the searches touch
            store.nearest(q, 10, per_track=False)
        found, ms = [], []
        for q in queries:
            t0 = time.perf_counter()
            found.append([key - 1 for key, _ in store.nearest(q, 10, per_track=False)])
            ms.append((time.perf_counter() - t0) * 1e3)
        r = float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))
        out.append((width or store.index_params.expansion_search, r, float(np.median(ms))))
    store.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 64, 40])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--search-widths", type=int, nargs="+", default=[64, 96, 128],
                    help="search widths (expansion_search) at which each graph's recall and latency are read")
    ap.add_argument("--baseline", type=int, default=60_000, help="rows for the old way's rate (0: skip)")
    ap.add_argument("--checkpoint-from", type=int, default=BULK_CHECKPOINT,
                    help="rows before the block's first save (then at each doubling)")
    ap.add_argument("--without-checkpoints", action="store_true",
                    help="also build the first width saving only at the end (checkpoint_from=None)")
    ap.add_argument("--name", default="bulk")
    a = ap.parse_args(argv)
    everything = clustered(a.rows + a.queries, a.dim, seed=0, clusters=2000)
    data, queries = everything[:a.rows], everything[a.rows:]
    truth = exact_topk(data, queries, 10)
    work = Path(tempfile.mkdtemp(prefix="sen-bulk-"))
    rows = []
    try:
        if a.baseline:
            rate = build(work / "old", data[:a.baseline], None, bulk=False)
            rows.append({"way": "add_embeddings, no bulk block (before)", "expansion_add": 128, "rows": a.baseline,
                         "rows_per_s": round(rate), "recall@10": None})
            shutil.rmtree(work / "old")
        for width in a.widths:
            rate = build(work / f"w{width}", data, width, checkpoint_from=a.checkpoint_from)
            for search, r, p50 in recall_of(work / f"w{width}", queries, truth, a.dim, a.search_widths):
                rows.append({"way": f"bulk_import (checkpoints from {a.checkpoint_from:,})", "expansion_add": width,
                             "rows": a.rows, "rows_per_s": round(rate),
                             "expansion_search": search, "recall@10": round(r, 4), "search_p50_ms": round(p50, 3)})
                print(f"  expansion_add {width}: {rate:,.0f} rows/s; search width {search}: recall@10 {r:.4f}, "
                      f"p50 {p50:.3f} ms", file=sys.stderr, flush=True)
            shutil.rmtree(work / f"w{width}")
        if a.without_checkpoints:
            rate = build(work / "end", data, a.widths[0], checkpoint_from=None)
            rows.append({"way": "bulk_import (saved at the end only)", "expansion_add": a.widths[0], "rows": a.rows,
                         "rows_per_s": round(rate), "recall@10": None})
            print(f"  saved at the end only: {rate:,.0f} rows/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write(a.name, {"dim": a.dim, "queries": a.queries, "batch": BATCH}, rows,
          ["way", "expansion_add", "rows", "rows_per_s", "expansion_search", "recall@10", "search_p50_ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
