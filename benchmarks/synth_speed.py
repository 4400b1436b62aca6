"""SynthPEDES generator speed: images/s rendering only, and written to disk with 1 and all workers.

    python -m benchmarks.synth_speed --n 10000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks.report import write
from sen_train.data.synth import SynthConfig, generate, plan_identities, render_image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.synth_speed")
    ap.add_argument("--n", type=int, default=10000, help="images to generate")
    ap.add_argument("--images-per-id", type=int, default=4)
    args = ap.parse_args(argv)
    cfg = SynthConfig(ids=max(3, args.n // args.images_per_id), images_per_id=args.images_per_id, seed=0)
    n = cfg.ids * cfg.images_per_id
    rows = []

    people = plan_identities(cfg)[: max(1, 500 // cfg.images_per_id)]
    t0 = time.perf_counter()
    count = 0
    for p in people:
        for k in range(cfg.images_per_id):
            render_image(p.attributes, cfg, p.pid, k)
            count += 1
    dt = time.perf_counter() - t0
    rows.append({"stage": "render only (1 process)", "images": count, "seconds": dt, "images/s": count / dt})

    for workers in sorted({1, os.cpu_count() or 1}):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            generate(cfg, tmp, workers=workers, progress=False)
            dt = time.perf_counter() - t0
        rows.append({"stage": f"full dataset, {workers} worker(s)", "images": n, "seconds": dt, "images/s": n / dt})
    base = rows[1]["images/s"]
    for r in rows:
        r["ratio to 1 worker"] = r["images/s"] / base
    path = write("synth_speed", {"images": n}, rows, ["stage", "images", "seconds", "images/s", "ratio to 1 worker"],
                 plot=("stage", "images/s"))
    for r in rows:
        print(f"{r['stage']:<32} {r['images']:>6} img  {r['seconds']:7.2f} s  {r['images/s']:8.1f} img/s"
              f"  x{r['ratio to 1 worker']:.2f}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
