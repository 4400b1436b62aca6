"""onnxruntime session options on this CPU, side by side in one run: which settings should the SDK use?

    python -m benchmarks.session_options --engine ENGINE [ENGINE ...] [--batches 1 8] [--repeats 5]

One factor at a time from the SDK's setting (intra-op threads = onnxruntime's default, CPU memory
arena on, ORT_ENABLE_ALL): intra-op threads 1 / 2, arena off, graph optimisation BASIC / EXTENDED.
Per engine, precision (fp32, int8 where exported) and tower, all variants of one case are timed
round-robin (`benchmarks.timing.interleaved`), so machine noise hits them alike; `vs_sdk` is the
variant's throughput over the SDK setting's in the same round-robin. The image tower is timed at
each batch, the text tower at a 12-token query, batch 1. The embeddings of every variant are
compared with the SDK setting's (max |difference|) so a faster setting that changes results shows.

`--busy N` times everything again while N other processes spin on the CPU (what a box that also
decodes video, or runs anything else, looks like): onnxruntime pins its threads to cores when the
thread count is left at its default, which costs most when those cores are shared.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.report import write
from benchmarks.timing import interleaved
from export.parity import probe_inputs_rgb
from sen_infer.engine.manifest import read_manifest
from sen_infer.engine.preprocess import to_input
from sen_infer.engine.tokenizer import ClipTokenizer

QUERY = "a woman in a red coat with a black backpack"  # 12 tokens with start and end
LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
FILES = {"fp32": ("image_encoder.onnx", "text_encoder.onnx"), "int8": ("image_encoder.int8.onnx",
                                                                      "text_encoder.int8.onnx")}


@dataclass(frozen=True)
class Options:
    threads: int = 0  # 0: onnxruntime's default (one per physical core)
    arena: bool = True
    level: str = "all"

    @property
    def label(self) -> str:
        return f"threads={self.threads or 'default'} arena={'on' if self.arena else 'off'} opt={self.level}"

    def session(self, path: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.enable_cpu_mem_arena = self.arena
        opts.graph_optimization_level = LEVELS[self.level]
        opts.log_severity_level = 3
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


SDK = Options()
VARIANTS = (SDK, Options(threads=1), Options(threads=2), Options(arena=False), Options(level="basic"),
            Options(level="extended"))


def _cases(engine: Path, batches: list[int], repeats: int, log=print) -> list[dict]:
    m = read_manifest(engine)
    tok = ClipTokenizer(engine / "tokenizer.json")
    images, _ = probe_inputs_rgb()
    x = np.stack([to_input(np.ascontiguousarray(im[..., ::-1]), m.image_size, m.mean, m.std) for im in images])
    x = np.concatenate([x] * max(1, -(-max(batches) // len(x))))
    short = tok([QUERY])
    rows = []
    for precision in [p for p in ("fp32", "int8") if p in m.precisions]:
        for tower, file in zip(("image", "text"), FILES[precision]):
            sessions = {o: o.session(engine / file) for o in VARIANTS}
            name = sessions[SDK].get_inputs()[0].name
            for batch in (batches if tower == "image" else [1]):
                feed = {name: x[:batch] if tower == "image" else short}
                ref = sessions[SDK].run(None, feed)[0]
                lat = interleaved({o: (lambda s=s: s.run(None, feed)) for o, s in sessions.items()}, repeats)
                for o, v in lat.items():
                    diff = float(np.abs(sessions[o].run(None, feed)[0].astype(np.float64) - ref).max())
                    rows.append({"model": m.model_name, "precision": precision, "tower": tower, "batch": batch,
                                 "options": o.label, "threads": o.threads, "arena": o.arena, "level": o.level,
                                 "p50_ms": round(v["p50_ms"], 3), "p95_ms": round(v["p95_ms"], 3),
                                 "items_per_s": round(batch / (v["p50_ms"] / 1e3), 2),
                                 "vs_sdk": round(lat[SDK]["p50_ms"] / v["p50_ms"], 3), "max_abs_diff": diff})
                best = max((r for r in rows[-len(lat):]), key=lambda r: r["vs_sdk"])
                log(f"{m.model_name} {precision} {tower} b{batch}: best {best['options']} x{best['vs_sdk']:.2f} "
                    f"vs the SDK setting ({lat[SDK]['p50_ms']:.1f} ms)")
            del sessions
    return rows


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10000))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.session_options", description=__doc__.split("\n")[0])
    ap.add_argument("--engine", nargs="+", required=True)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="session_options")
    ap.add_argument("--busy", type=int, default=0, help="other processes spinning on the CPU while timing")
    args = ap.parse_args(argv)
    rows = []
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    time.sleep(0.5 if spinners else 0)
    try:
        for engine in args.engine:
            rows += _cases(Path(engine), args.batches, args.repeats)
    finally:
        stop.set()
        for p in spinners:
            p.join()
    for r in rows:
        r["busy_processes"] = args.busy
    winners = {}
    for r in rows:
        key = f"{r['model']} {r['precision']} {r['tower']} b{r['batch']}"
        if key not in winners or r["vs_sdk"] > winners[key]["vs_sdk"]:
            winners[key] = {"options": r["options"], "vs_sdk": r["vs_sdk"], "p50_ms": r["p50_ms"]}
    figures = {"sdk_setting": SDK.label, "variants": [o.label for o in VARIANTS], "repeats": args.repeats,
               "busy_processes": args.busy,
               "winners": winners}
    for r in rows:
        r["label"] = f"{r['model']} {r['precision']} {r['tower']} b{r['batch']} {r['options']}"
    path = write(args.name, figures, rows, ["model", "precision", "tower", "batch", "options", "p50_ms", "p95_ms",
                                            "items_per_s", "vs_sdk", "max_abs_diff"], plot=("label", "vs_sdk"))
    for k, w in winners.items():
        print(f"{k:<40} {w['options']:<40} x{w['vs_sdk']:.2f}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
