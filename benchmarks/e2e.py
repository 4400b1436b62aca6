"""End to end: one text query on a gallery of N items, stage by stage; and video ingest speed.

    python -m benchmarks.e2e --engine ENGINE_DIR [--n 20000] [--queries 50] [--video VIDEO_DIR]

Query stages: tokenize / encode (text tower) / search (gallery, exact or graph) / metadata (SQLite
rows of the hits) / total (`Retriever.query`), p50 and p99. The gallery is filled with N clustered
synthetic embeddings (the search cost depends on N, not on where vectors came from). Ingest: the
synthetic camera videos (generated when --video is not given): frames/s, crops embedded/s and the
real-time factor (video seconds per wall second).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.index import clustered
from benchmarks.report import write
from benchmarks.timing import summarise
from sen_infer import Retriever, Row

QUERIES = ["a woman in a red coat carrying a black backpack", "a man in a grey hoodie and blue jeans",
           "a person with a yellow cap and white shoes", "a girl with long blonde hair and a pink skirt",
           "a man wearing glasses and a green jacket"]


def fill(gallery, n: int, seed: int = 0) -> None:
    """N synthetic rows over 4 cameras and a day of timestamps, in transactions of 5,000."""
    emb = clustered(n, gallery.dim, seed=seed).astype(np.float16)
    for start in range(0, n, 5000):
        part = range(start, min(n, start + 5000))
        gallery.store.add_embeddings(emb[start : part.stop], [
            Row(f"bench:{i}", f"cam{i % 4}", i, 1_700_000_000 + 86400 * i / n, (0, 0, 64, 128), i // 8) for i in part])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.e2e")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--n", type=int, default=20000, help="gallery size for the query benchmark")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--video", help="dir of synthetic camera videos (generated if omitted)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--name", default="e2e", help="results file name under benchmarks/results")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        r = Retriever(args.engine, gallery=tmp / "g", backend=args.backend)
        g = r.gallery
        t0 = time.perf_counter()
        fill(g, args.n)
        fill_s = time.perf_counter() - t0
        stages = {k: [] for k in ("tokenize", "encode", "search", "metadata", "total")}
        for i in range(args.queries + 2):
            text = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            tokens, _ = r.encoders.tokenizer.encode([text])
            t1 = time.perf_counter()
            q = r.encoders._text(tokens)[0]
            t2 = time.perf_counter()
            pairs = g.store.nearest(q, 10)
            t3 = time.perf_counter()
            g.rows([k for k, _ in pairs])
            t4 = time.perf_counter()
            r.query(text, k=10)
            t5 = time.perf_counter()
            if i >= 2:  # the first two warm caches up
                for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                    stages[name].append(dt * 1e3)
        rows = [{"stage": k, **{m: round(v, 3) for m, v in summarise(ms).items() if m in ("p50_ms", "p99_ms")}}
                for k, ms in stages.items()]

        video = Path(args.video) if args.video else None
        if video is None:
            from sen_train.data.synth_video import VideoConfig, generate

            video = tmp / "video"
            generate(VideoConfig(cameras=2, seconds=10, seed=1), video, progress=False)
        table = json.loads((video / "identities.json").read_text())
        ingest = {"frames": 0, "crops": 0, "tracks": 0, "seconds": 0.0, "video_seconds": 0.0}
        for cam, info in table["cameras"].items():
            t0 = time.perf_counter()
            rep = g.add_video(video / info["video"], camera=cam)
            ingest["seconds"] += time.perf_counter() - t0
            ingest["frames"] += rep.frames
            ingest["crops"] += rep.crops_embedded
            ingest["tracks"] += rep.tracks
            ingest["video_seconds"] += rep.frames / info["fps"]
    figures = {"gallery_size": args.n, "backend": r.backend, "fill_rows_per_s": args.n / fill_s,
               "ingest_frames_per_s": ingest["frames"] / ingest["seconds"],
               "ingest_crops_embedded_per_s": ingest["crops"] / ingest["seconds"],
               "ingest_real_time_factor": ingest["video_seconds"] / ingest["seconds"], "ingest": ingest}
    path = write(args.name, figures, rows, ["stage", "p50_ms", "p99_ms"], plot=("stage", "p50_ms"))
    for row in rows:
        print(f"{row['stage']:<9} p50 {row['p50_ms']:8.3f} ms   p99 {row['p99_ms']:8.3f} ms")
    print(f"ingest: {figures['ingest_frames_per_s']:.1f} frames/s, {figures['ingest_crops_embedded_per_s']:.1f} "
          f"crops embedded/s, real-time factor {figures['ingest_real_time_factor']:.2f} ({r.backend})")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
