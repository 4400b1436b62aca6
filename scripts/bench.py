"""`make bench`: the quick benchmark set, in under 10 minutes on a 2-core CPU.

Uses the demo's engine and checkpoint when `make demo` has run; otherwise trains the `tiny` preset
for two epochs on a small SynthPEDES set and exports it (about a minute), so it runs from a fresh
clone. Results: benchmarks/results/*.json, *.md, *.png.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def engine_and_ckpt() -> tuple[Path, Path, Path | None]:
    demo = ROOT / "demo_out"
    if (demo / "engine" / "manifest.json").is_file() and (demo / "run" / "best").is_dir():
        return demo / "engine", demo / "run" / "best", demo / "video"
    from export.onnx import export_engine_dir
    from sen_train.config import load_config
    from sen_train.data.synth import SynthConfig, generate
    from sen_train.train import train

    base = ROOT / "benchmarks" / "work"
    if not (base / "engine" / "manifest.json").is_file():
        print("no demo engine: training and exporting the tiny preset (about a minute)")
        generate(SynthConfig(ids=60, seed=0), base / "data", progress=False)
        if not (base / "run" / "best").is_dir():
            train(load_config("tiny", ["epochs=2"]), str(base / "data"), str(base / "run"), progress=False)
        export_engine_dir(base / "run" / "best", base / "engine", int8=True, force=True, log=lambda *_: None)
    return base / "engine", base / "run" / "best", None


def main() -> int:
    t0 = time.perf_counter()
    engine, ckpt, video = engine_and_ckpt()
    from benchmarks import e2e, encoders, index, synth_speed, video_retrieval

    runs = [("encoders", encoders.main, ["--engine", str(engine), "--ckpt", str(ckpt), "--repeats", "8"]),
            ("index", index.main, ["--n", "100000", "--engine", str(engine), "--real", "2000"]),
            ("e2e", e2e.main, ["--engine", str(engine), "--n", "20000"] + (["--video", str(video)] if video else [])),
            ("SynthPEDES generator", synth_speed.main, ["--n", "2000"])]
    if video is not None:
        runs.insert(3, ("video retrieval", video_retrieval.main, ["--engine", str(engine), "--video", str(video)]))
    for title, fn, args in runs:
        print(f"\n== {title}", flush=True)
        fn(args)
    print(f"\nbenchmarks done in {time.perf_counter() - t0:.0f} s -> {ROOT / 'benchmarks' / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
