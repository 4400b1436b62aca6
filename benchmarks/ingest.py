"""Gallery scaling: commit cost as the gallery grows, query QPS from 1/2/4 threads, and peak memory
of ingesting big photos, side by side in one run.

    python -m benchmarks.ingest [--rows 10000 50000 100000] [--dim 512] [--engine ENGINE --photos 64]

- commit: ms per 1,000-row commit (SQLite + usearch HNSW insert + in-memory columns) measured when
  the gallery already holds each of --rows. Flat means ingest cost does not grow with gallery size.
- qps: queries per second over the largest gallery from 1, 2 and 4 threads at once (exact search at
  <= 20,000 rows, HNSW graph beyond), and the speed-up over 1 thread.
- photos (with --engine): peak RSS of a subprocess ingesting --photos 12-megapixel JPEGs through
  `Gallery.add_images`, against the same process's RSS before the ingest.
Embeddings are synthetic clustered unit vectors (the cost depends on the count, not their origin).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import sen_infer  # noqa: F401  (loads onnxruntime before usearch; the other order segfaults)
from benchmarks.index import clustered
from benchmarks.report import plot_bars, write
from sen_infer.gallery import Gallery


class _Model:
    """The two facts a Gallery needs from an engine when no towers run: model fingerprint and size."""

    def __init__(self, dim: int):
        self.manifest = type("M", (), {"fingerprint": "b" * 64})()
        self.dim = dim


def commit_cost(root: Path, sizes: list[int], dim: int, batch: int = 1000) -> tuple[list[dict], Gallery]:
    g = Gallery.open(root, encoders=_Model(dim))
    emb = clustered(max(sizes) + batch * len(sizes), dim, seed=1).astype(np.float16)
    rows, n = [], 0
    for target in sorted(sizes):
        while n < target:  # fill up to the target without timing
            step = min(5000, target - n)
            g._commit([(f"b:{i}", f"cam{i % 4}", i, float(i), 0, 0, 64, 128, i // 8, None, emb[i].tobytes())
                       for i in range(n, n + step)])
            n += step
        records = [(f"b:{i}", f"cam{i % 4}", i, float(i), 0, 0, 64, 128, i // 8, None, emb[i].tobytes())
                   for i in range(n, n + batch)]
        t0 = time.perf_counter()
        g._commit(records)
        ms = 1000 * (time.perf_counter() - t0)
        n += batch
        rows.append({"what": f"commit 1,000 rows at {n - batch:,} rows", "ms": round(ms, 1),
                     "rows_per_s": round(batch / (ms / 1000))})
        print(rows[-1], flush=True)
    return rows, g


def qps(g: Gallery, dim: int, threads: int, seconds: float = 3.0) -> float:
    queries = clustered(64, dim, seed=2)
    g.search(queries[0], k=10)  # warm: the first search reads the rows into memory (and the index)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def run(i):
        j = 0
        while time.perf_counter() < stop:
            g.search(queries[j % len(queries)], k=10)
            j += 1
        counts[i] = j

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


PHOTOS = """
import sys, glob
from sen_infer import Retriever
def hwm():  # peak resident set of this process in KiB (ru_maxrss would carry the parent's peak over exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
r = Retriever(sys.argv[1], gallery=sys.argv[2], backend="onnx-cpu")
g = r.gallery
before = hwm()
rep = g.add_images(sorted(glob.glob(sys.argv[3] + "/*.jpg")))
print(before, hwm(), rep.added)
"""


def photo_rss(engine: str, tmp: Path, n: int) -> dict:
    import cv2

    folder = tmp / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (4000, 3000))  # 12 MP
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i:03d}.jpg"), np.roll(base, 37 * i, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 80])
    out = subprocess.run([sys.executable, "-c", PHOTOS, engine, str(tmp / "pg"), str(folder)], capture_output=True,
                         text=True, check=True).stdout.split()
    before, after, added = (int(v) for v in out)
    return {"photos": n, "megapixels": 12, "rss_before_mb": round(before / 1024), "peak_rss_mb": round(after / 1024),
            "growth_mb": round((after - before) / 1024), "added": added}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest")
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--engine", help="engine dir: adds the 12-megapixel photo memory figure")
    ap.add_argument("--photos", type=int, default=64)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = Gallery.open(tmp / "small", encoders=_Model(args.dim))
        commit_cost(tmp / "small", [min(args.rows)], args.dim)  # an exactly searched gallery, for contrast
        rows, g = commit_cost(tmp / "g", args.rows, args.dim)
        for gallery in (small, g):
            single = None
            for threads in (1, 2, 4):
                q = qps(gallery, args.dim, threads)
                single = single or q
                path = "exact" if len(gallery) <= gallery.exact_max else "HNSW"
                rows.append({"what": f"query QPS, {threads} thread(s), {len(gallery):,} rows ({path})",
                             "qps": round(q), "speedup": round(q / single, 2)})
                print(rows[-1], flush=True)
        figures = {}
        if args.engine:
            figures["photos"] = photo_rss(args.engine, tmp, args.photos)
            print(figures["photos"], flush=True)
            rows.append({"what": f"ingest {args.photos} x 12 MP photos: peak RSS growth",
                         "mb": figures["photos"]["growth_mb"]})
    out = write("ingest", figures, rows, ["what", "ms", "rows_per_s", "qps", "speedup", "mb"])
    shown = [r for r in rows if "qps" in r or "rows_per_s" in r]
    plot_bars(out.with_suffix(".png"), "gallery scaling: rows/s committed and queries/s (higher is better)",
              [r["what"] for r in shown], [float(r.get("qps", r.get("rows_per_s"))) for r in shown], "per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
