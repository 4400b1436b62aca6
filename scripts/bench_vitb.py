"""`make bench-vitb`: the benchmarks on the deployment model, ViT-B/16 at 384x128, beside `small`.

Builds a ViT-B/16 checkpoint with **random weights** (speed depends on the architecture and input
size, not the weights; OpenAI's weights cannot be fetched here), exports it to ONNX fp32 + int8
(static QDQ with the sweep's sensitive nodes in fp32, export.quantize; if the int8 gate still refused,
the output says so and fp32 alone is timed), then runs
benchmarks.encoders (torch eager beside onnxruntime, batch 1 and 8) and benchmarks.e2e on it.
Work files: benchmarks/work/vitb/. Results: benchmarks/results/encoders_ViT-B-16-quickgelu.* and
e2e_vitb.* (the e2e figures of `small` stay in e2e.*).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _dynamic_int8(engine: Path) -> bool:
    """An engine dir left by an older run with dynamic int8 (no sweep record): re-export it."""
    import json

    parity = json.loads((engine / "manifest.json").read_text()).get("parity", {})
    return "int8" not in parity or "quantisation" not in parity["int8"]


def main() -> int:
    t0 = time.perf_counter()
    work = ROOT / "benchmarks" / "work" / "vitb"
    ckpt, engine = work / "ckpt", work / "engine"
    from benchmarks import e2e, encoders, random_checkpoint

    if not (ckpt / "model.safetensors").is_file():
        random_checkpoint.main(["--preset", "sen-vit-b-16", "--out", str(ckpt)])
    if not (engine / "manifest.json").is_file() or _dynamic_int8(engine):
        from export.onnx import export_engine_dir
        from export.parity import ParityError

        try:
            export_engine_dir(ckpt, engine, int8=True, force=True)
        except ParityError as e:  # the int8 gate refused: the fp32 engine is still worth timing
            print(f"int8 refused by the parity gate ({e}); exporting fp32 only")
            export_engine_dir(ckpt, engine, int8=False, force=True)
    print("\n== encoders (ViT-B/16, random weights)", flush=True)
    encoders.main(["--engine", str(engine), "--ckpt", str(ckpt), "--batches", "1", "8", "--repeats", "5"])
    print("\n== e2e (ViT-B/16, random weights)", flush=True)
    e2e.main(["--engine", str(engine), "--n", "20000", "--queries", "20", "--name", "e2e_vitb"])
    print(f"\nViT-B/16 benchmarks done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
