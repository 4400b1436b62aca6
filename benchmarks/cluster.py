"""Scaling out: video ingest on a local Ray cluster with 1 vs 2 workers (the same videos, a fresh sharded
root each), beside the sequential in-process ingest; and query latency over 1, 10 and 100 shards holding
the same rows in total (what fanning a query out costs). Each Ray run also reports its writer actors'
resident memory (`ShardWriter.rss_mb`) as they started, at its peak during the job (sampled every 0.5 s)
and after the job.

    python -m benchmarks.cluster                       # after `make demo`; a few minutes
    python -m benchmarks.cluster --videos 4 --rows 50000
    python -m benchmarks.cluster --skip-ingest --rows 240000 --dim 512 --name cluster_plan_shards
                                                       # 100 shards at the plan's size, 2,400 x 512

Ray adds process start-up and object-store copies; on this 2-core machine 2 workers also share the cores
with the encoder actor and the driver, so the ratio says what a second worker buys here, not on a node
with free cores. The ingest times include starting the encoder actor (loading the model).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "cluster"
START = 1_700_000_000.0


def copies(video_dir: Path, n: int, work: Path) -> list[Path]:
    """`n` videos: the demo's cameras under new names, the first of each as it is and the rest re-encoded
    with a mark (`new_footage`): a gallery knows recordings by content, so a byte copy would be stored as
    another name of the first, not ingested again, and the benchmark would time aliases."""
    from sen_train.data.synth_video import new_footage

    src = sorted(video_dir.glob("*.mp4"))
    if not src:
        raise SystemExit(f"no .mp4 in {video_dir}: run `make demo` or pass --video-dir")
    out = work / "videos"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out / f"cam{i:02d}.mp4"
        if i < len(src):
            shutil.copy(src[i], p)
        else:
            new_footage(src[i % len(src)], p, i)
        paths.append(p)
    return paths


class _WriterMemory:
    """Passed to `IngestJob.wait` as its progress bar: each update (every 0.5 s) samples the writer actors'
    resident memory, so the job's peak is seen while shards are open, not only after they are closed."""

    def __init__(self, writers: list):
        self.writers, self.peak_mb = writers, 0.0

    def update(self, frames: int) -> None:
        import ray

        self.peak_mb = max(self.peak_mb, *ray.get([w.rss_mb.remote() for w in self.writers]))


def ingest_rows(engine: Path, videos: list[Path], work: Path, chunk_s: float, detector: str,
                writers: int = 8) -> list[dict]:
    import ray

    from sen_infer import Retriever
    from sen_infer.cluster import IngestConfig, connect, start_ingest
    from sen_infer.ingest.video import VideoOptions
    from sen_infer.gallery.catalogue import make_sharded

    rows = []
    root = work / "sequential"
    make_sharded(root)
    g = Retriever(engine, gallery=root).open_gallery()
    t0 = time.perf_counter()
    added = sum(g.add_video(v, start_time=START, chunk_seconds=chunk_s, detector=detector).added for v in videos)
    if not added:  # timing an ingest that stores nothing measures decoding alone: refuse it
        raise SystemExit(f"the sequential ingest stored no rows: --detector {detector} sees no one in these videos "
                         f"(mog2-split for the demo's synthetic cameras)")
    rows.append({"case": "sequential, in process", "workers": 0, "seconds": time.perf_counter() - t0, "rows": added})
    frames = sum(int(__import__("cv2").VideoCapture(str(v)).get(7)) for v in videos)
    for workers in (1, 2):
        connect(f"local:{workers}")
        root = work / f"ray{workers}"
        job_cfg = IngestConfig(str(engine), str(root), VideoOptions(start_time=START, detector=detector,
                                                                    chunk_seconds=chunk_s),
                               embedder_cpus=0.0, writers=writers)
        t0 = time.perf_counter()
        job = start_ingest(job_cfg, videos)
        started = ray.get([w.rss_mb.remote() for w in job.writers])  # each writer actor as it started
        memory = _WriterMemory(job.writers)
        rep = job.wait(memory)
        seconds = time.perf_counter() - t0
        served = ray.get([w.rss_mb.remote() for w in job.writers])  # after serving the job's shards
        rows.append({"case": f"Ray, {workers} worker{'s' if workers > 1 else ''}", "workers": workers,
                     "seconds": seconds, "rows": rep.added, "writer_actors": len(job.writers),
                     "writer_rss_mb_started": max(started), "writer_rss_mb_peak": memory.peak_mb,
                     "writer_rss_mb_after_job": max(served)})
        ray.shutdown()
    for r in rows:
        r["frames_per_s"] = frames / r["seconds"]
    base = next(r for r in rows if r["workers"] == 1)["seconds"]
    for r in rows:
        r["speedup_vs_1_worker"] = base / r["seconds"]
    return rows


def fanout_rows(total: int, dim: int, queries: int, k: int, work: Path) -> list[dict]:
    """The same `total` random clustered rows split into 1, 10 and 100 shards; p50/p99 of a k-query,
    shards searched one after another (the default here) and by 4 threads."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((max(8, total // 50), dim)).astype(np.float32)
    data = centres[rng.integers(0, len(centres), total)] + 0.35 * rng.standard_normal((total, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    qs = data[rng.integers(0, total, queries)] + 0.2 * rng.standard_normal((queries, dim)).astype(np.float32)
    out = []
    for shards in (1, 10, 100):
        out += _fanout(shards, total, dim, data, qs, k, work)
    base = out[0]["p50_ms"]
    for r in out:
        r["p50_vs_1_shard"] = r["p50_ms"] / base
    return out


def _fanout(shards: int, total: int, dim: int, data, qs, k: int, work: Path) -> list[dict]:
    from sen_infer.gallery.catalogue import Catalogue, make_sharded
    from sen_infer.gallery.sharded import ShardedGallery
    from sen_infer.store import Row, VectorStore

    out = []
    root = work / f"fanout{shards}"
    make_sharded(root)
    cat = Catalogue(root)
    per = total // shards
    t_build = time.perf_counter()
    for s in range(shards):
        info = cat.shard_for(f"cam{s:03d}", "2023-11-14")
        cat.widen(info["no"], START, START + 86_399)
        store = VectorStore.open(root / info["path"], "bench", dim, create=True)
        part = data[s * per:(s + 1) * per]
        rows = [Row(f"v{s}", f"cam{s:03d}", i, START + i % 86_399, (0, 0, 8, 16), None) for i in range(len(part))]
        for a in range(0, len(part), 20_000):
            store.add_embeddings(part[a:a + 20_000], rows[a:a + 20_000])
        store.persist_index()
        store.close()
    build = time.perf_counter() - t_build
    for workers in ((1,) if shards == 1 else (1, 4)):
        g = ShardedGallery(root, encoders=_Dim(dim), workers=workers)
        t0 = time.perf_counter()
        g.search(qs[0], k)
        first = (time.perf_counter() - t0) * 1000
        ms = []
        for q in qs:
            t0 = time.perf_counter()
            g.search(q, k)
            ms.append((time.perf_counter() - t0) * 1000)
        one_cam = []
        for q in qs[: max(10, len(qs) // 4)]:
            t0 = time.perf_counter()
            g.search(q, k, camera="cam000")
            one_cam.append((time.perf_counter() - t0) * 1000)
        g.close()
        out.append({"case": f"{shards} shard{'s' if shards > 1 else ''} x {per:,} rows, {workers} thread"
                            f"{'s' if workers > 1 else ''}", "shards": shards, "threads": workers,
                    "rows_per_shard": per, "first_query_ms (opens shards)": first,
                    "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                    "one_camera_p50_ms": float(np.percentile(one_cam, 50)), "build_s": build})
    return out


class _Dim:
    """Stands in for encoders where only vectors are searched (no model)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.manifest = type("M", (), {"fingerprint": "bench", "embed_dim": dim})()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="demo_out/engine")
    ap.add_argument("--video-dir", default="demo_out/video")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--chunk-seconds", type=float, default=60.0)
    ap.add_argument("--writers", type=int, default=8, help="writer actors at most (as the cluster CLI's "
                    "--writers); fewer than --videos makes each writer serve several shards")
    ap.add_argument("--detector", default="mog2-split",
                    help="the ingest's detector (default mog2-split: the demo's cameras are synthetic, and the "
                         "neural detector sees no one in them)")
    ap.add_argument("--rows", type=int, default=50_000, help="rows in total for the fan-out figures")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-fanout", action="store_true")
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--name", default="cluster", help="results name (e.g. the plan's shard size: --rows 240000 "
                    "--dim 512 makes 100 shards of 2,400 x 512)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    if not args.skip_ingest:
        videos = copies(Path(args.video_dir), args.videos, work)
        for r in ingest_rows(Path(args.engine), videos, work, args.chunk_seconds, args.detector, args.writers):
            rows.append({"part": "ingest", **r})
            print(rows[-1], flush=True)
    for r in ([] if args.skip_fanout else fanout_rows(args.rows, args.dim, args.queries, args.k, work)):
        rows.append({"part": "query fan-out", **r})
        print(rows[-1], flush=True)
    figures = {"videos": args.videos, "writers": args.writers, "detector": args.detector, "rows_total": args.rows,
               "dim": args.dim, "k": args.k}
    columns = ["part", "case", "seconds", "frames_per_s", "speedup_vs_1_worker", "rows", "writer_actors",
               "writer_rss_mb_started", "writer_rss_mb_peak", "writer_rss_mb_after_job", "p50_ms", "p99_ms",
               "p50_vs_1_shard", "one_camera_p50_ms", "first_query_ms (opens shards)"]
    path = report.write(args.name, figures, rows, columns)
    plot(path.with_suffix(".png"), rows, args.rows)
    return 0


def plot(png: Path, rows: list[dict], total: int) -> None:
    """Query p50 (ms) over shards and ingest wall time (s), each bar's unit in its label."""
    fan = [r for r in rows if r["part"] == "query fan-out"]
    ing = [r for r in rows if r["part"] == "ingest"]
    parts = ([f"query p50 over shards ({total:,} rows in all)"] if fan else []) + (["video ingest wall time"] if ing else [])
    report.plot_bars(png, " and ".join(parts),
                     [f"query, {r['case']} [ms]" for r in fan] + [f"ingest, {r['case']} [s]" for r in ing],
                     [r["p50_ms"] for r in fan] + [r["seconds"] for r in ing],
                     "ms (query rows) / s (ingest rows)" if fan and ing else ("ms" if fan else "s"))


if __name__ == "__main__":
    sys.exit(main())
