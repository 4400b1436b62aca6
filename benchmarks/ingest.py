"""Gallery scaling, side by side for this code and an older checkout in one run: rows/s stored as the
gallery grows, query QPS from 1/2/4 threads, and peak memory ingesting big photos and a long video.

    python -m benchmarks.ingest [--rows 10000 100000 1000000] [--dim 512]
                                [--engine ENGINE --photos 64 --video-minutes 30]
                                [--baseline OLD_CHECKOUT --baseline-rows 10000 100000]

- store: ms per 1,000-row write (SQLite + usearch HNSW insert + in-memory columns) when the gallery
  already holds each of --rows. Flat means ingest cost does not grow with gallery size.
- qps: queries per second from 1, 2 and 4 threads at once over an exactly searched gallery (10,000
  rows) and the largest one (HNSW graph), and the speed-up over 1 thread.
- photos / video (with --engine): peak RSS of a process ingesting --photos 12-megapixel JPEGs, and a
  --video-minutes synthetic recording (a one-minute clip of SynthPEDES walkers looped), against the
  same process's RSS before the ingest.
Every figure runs in a fresh subprocess, once with this checkout on PYTHONPATH and once with
--baseline (a `git worktree` of an older commit) when given, so the two are measured alike.
Embeddings are synthetic clustered unit vectors (the cost depends on the count, not their origin).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.report import plot_bars, write

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the measured checkout: the store API where it exists, the older Gallery._commit otherwise.
SCALING = r"""
import json, sys, threading, time
import numpy as np
import sen_infer
from benchmarks.index import clustered
args = json.loads(sys.argv[1])
dim, fp = args["dim"], "b" * 64
try:
    from sen_infer.store import Row, VectorStore
except ImportError:
    VectorStore = None
if VectorStore is not None:
    def opener(path):
        s = VectorStore.open(path, fp, dim)
        def add(emb, i0, n):
            s.add_embeddings(emb[i0:i0 + n], [Row(f"b:{i}", f"cam{i % 4}", i, float(i), (0, 0, 64, 128), i // 8)
                                              for i in range(i0, i0 + n)])
        return s, add, s.nearest
else:
    from sen_infer.gallery import Gallery
    class Model:
        manifest = type("M", (), {"fingerprint": fp})()
        dim = args["dim"]
    def opener(path):
        g = Gallery.open(path, encoders=Model())
        def add(emb, i0, n):
            g._commit([(f"b:{i}", f"cam{i % 4}", i, float(i), 0, 0, 64, 128, i // 8, None,
                        emb[i].astype(np.float16).tobytes())
                       for i in range(i0, i0 + n)])
        return g, add, g.search

class TimedIndex:  # the store's usearch index with the time spent inserting counted: HNSW apart from the rest
    def __init__(self, index):
        self.index, self.seconds = index, 0.0
    def add(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return self.index.add(*a, **k)
        finally:
            self.seconds += time.perf_counter() - t0
    def __getattr__(self, name):
        return getattr(self.index, name)
    def __len__(self):
        return len(self.index)

def fill(path, sizes, batch=1000, repeats=5):
    store, add, search = opener(path)
    timed = store.index = TimedIndex(store.index)
    emb = clustered(max(sizes) + batch * repeats * len(sizes), dim, seed=1).astype(np.float32)
    out, n = [], 0
    for target in sorted(sizes):
        while n < target:  # fill up to the target without timing
            step = min(5000, target - n)
            add(emb, n, step)
            n += step
        runs = []
        for _ in range(repeats):  # the median of several: one batch on a shared 2-core box is noisy
            timed.seconds = 0.0
            t0 = time.perf_counter()
            add(emb, n, batch)
            runs.append((1000 * (time.perf_counter() - t0), 1000 * timed.seconds))
            n += batch
        runs.sort()
        ms, hnsw = runs[len(runs) // 2]
        out.append({"at": target, "ms": ms, "hnsw_ms": hnsw, "runs_ms": [r[0] for r in runs]})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out, search, n

def qps(search, threads, seconds=3.0):
    queries = clustered(64, dim, seed=2)
    search(queries[0], k=10)
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    def run(i):
        j = 0
        while time.perf_counter() < stop:
            search(queries[(i * 17 + j) % len(queries)], k=10)
            j += 1
        counts[i] = j
    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return sum(counts) / (time.perf_counter() - t0)

result = {"store": [], "qps": []}
_, search_small, n_small = fill(args["tmp"] + "/small", [args["small"]])
commits, search, n = fill(args["tmp"] + "/big", args["rows"])
result["store"] = commits
for label, fn, rows in (("exact", search_small, n_small), ("HNSW", search, n)):
    for threads in (1, 2, 4):
        result["qps"].append({"path": label, "rows": rows, "threads": threads, "qps": qps(fn, threads)})
        print(json.dumps(result["qps"][-1]), file=sys.stderr, flush=True)
print(json.dumps(result))
"""

HWM = """
def hwm():  # peak resident set of this process in KiB (ru_maxrss would carry the parent's peak over exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
"""

PHOTOS = HWM + r"""
import glob, json, sys, time
from sen_infer import Retriever
r = Retriever(sys.argv[1], gallery=sys.argv[2], backend="onnx-cpu")
g = r.gallery
before, t0 = hwm(), time.perf_counter()
rep = g.add_images(sorted(glob.glob(sys.argv[3] + "/*.jpg")))
print(json.dumps({"before_kb": before, "peak_kb": hwm(), "added": rep.added, "seconds": time.perf_counter() - t0}))
"""

VIDEO = HWM + r"""
import json, sys, time
from sen_infer import Retriever
r = Retriever(sys.argv[1], gallery=sys.argv[2], backend="onnx-cpu")
g = r.gallery
before, t0 = hwm(), time.perf_counter()
rep = g.add_video(sys.argv[3], camera="cam1")
print(json.dumps({"before_kb": before, "peak_kb": hwm(), "added": rep.added, "frames": rep.frames,
                  "seconds": time.perf_counter() - t0}))
"""


def _run(code: str, checkout: Path, *argv) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{ROOT}", "PYTHONWARNINGS": "ignore",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
    env = {k: v for k, v in env.items() if v != ""}
    r = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, env=env,
                       cwd=checkout)
    if r.returncode != 0:
        raise RuntimeError(f"{checkout}: measurement failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def make_photos(folder: Path, n: int) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (4000, 3000))  # 12 MP
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i:03d}.jpg"), np.roll(base, 37 * i, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return folder


def make_long_video(tmp: Path, minutes: float) -> Path:
    """A one-minute synthetic clip (SynthPEDES walkers, one camera) written over and over into one file."""
    import cv2

    from sen_train.data.synth import SynthConfig
    from sen_train.data.synth import generate as make_people
    from sen_train.data.synth_video import VideoConfig, generate, identities_from_dataset

    people_dir = tmp / "people"
    make_people(SynthConfig(ids=40, seed=3), people_dir, progress=False)
    clip_dir = tmp / "clip"
    generate(VideoConfig(cameras=1, seconds=min(60.0, 60 * minutes), fps=15, seed=3), clip_dir,
             identities_from_dataset(people_dir, "test"), progress=False)
    cap = cv2.VideoCapture(str(clip_dir / "cam1.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    out = tmp / "long.mp4"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
    for i in range(int(minutes * 60 * 15)):
        writer.write(frames[i % len(frames)])
    writer.release()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest")
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--small", type=int, default=10_000, help="rows of the exactly searched gallery")
    ap.add_argument("--engine", help="engine dir: adds the photo and video memory figures")
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--video-minutes", type=float, default=30.0)
    ap.add_argument("--baseline", type=Path, help="an older checkout (git worktree) measured the same way")
    ap.add_argument("--baseline-rows", type=int, nargs="+", help="--rows for the baseline (default: --rows)")
    ap.add_argument("--name", default="ingest", help="results file name")
    ap.add_argument("--parts", nargs="+", choices=["scaling", "memory"], default=["scaling", "memory"])
    args = ap.parse_args(argv)
    versions = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    rows, figures = [], {"versions": {name: str(path) for name, path in versions}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        memory = args.engine and "memory" in args.parts
        photos = make_photos(tmp / "photos", args.photos) if memory else None
        video = make_long_video(tmp, args.video_minutes) if memory else None
        for name, checkout in versions:
            sizes = args.baseline_rows if name == "baseline" and args.baseline_rows else args.rows
            work = tmp / f"{name}-scaling"
            work.mkdir()
            got = _run(SCALING, checkout, json.dumps({"dim": args.dim, "rows": sizes, "small": args.small,
                                                      "tmp": str(work)})) if "scaling" in args.parts else \
                {"store": [], "qps": []}
            figures[f"{name}_scaling"] = got
            for c in got["store"]:
                rows.append({"code": name, "what": f"store 1,000 rows at {c['at']:,} rows (median of 5)",
                             "ms": round(c["ms"], 1), "hnsw_ms": round(c["hnsw_ms"], 1),
                             "rest_ms": round(c["ms"] - c["hnsw_ms"], 1), "rows_per_s": round(1000 / (c["ms"] / 1000))})
                print(rows[-1], flush=True)
            single = {}
            for q in got["qps"]:
                single.setdefault(q["path"], q["qps"])
                rows.append({"code": name, "what": f"query QPS, {q['threads']} thread(s), {q['rows']:,} rows "
                                                   f"({q['path']})", "qps": round(q["qps"]),
                             "speedup": round(q["qps"] / single[q["path"]], 2)})
                print(rows[-1], flush=True)
            if memory:
                got = _run(PHOTOS, checkout, Path(args.engine).resolve(), tmp / f"{name}-photos", photos)
                figures[f"{name}_photos"] = got
                rows.append({"code": name, "what": f"ingest {args.photos} x 12 MP photos: peak RSS growth",
                             "mb": round((got["peak_kb"] - got["before_kb"]) / 1024), "s": round(got["seconds"], 1)})
                print(rows[-1], flush=True)
                got = _run(VIDEO, checkout, Path(args.engine).resolve(), tmp / f"{name}-video", video)
                figures[f"{name}_video"] = got
                rows.append({"code": name, "what": f"ingest a {args.video_minutes:g}-minute video "
                                                   f"({got['frames']} frames, {got['added']} tracks): peak RSS growth",
                             "mb": round((got["peak_kb"] - got["before_kb"]) / 1024), "s": round(got["seconds"], 1)})
                print(rows[-1], flush=True)
    out = write(args.name, figures, rows, ["code", "what", "ms", "hnsw_ms", "rest_ms", "rows_per_s", "qps", "speedup",
                                                "mb", "s"])
    shown = [r for r in rows if "qps" in r or "rows_per_s" in r]
    plot_bars(out.with_suffix(".png"), "gallery scaling: rows/s stored and queries/s (higher is better)",
              [f"{r['code']}: {r['what']}" for r in shown],
              [float(r.get("qps", r.get("rows_per_s"))) for r in shown], "per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
