"""Training throughput (samples/s) of SEN presets on this machine, measured side by side in one run.

    python -m benchmarks.train_speed [--presets tiny small sen-vit-b-16] [--steps 5]

Each step is a full SEN step (SDM + ID + triplet + TIR forward, backward, Adam update) on a batch
of SynthPEDES-sized inputs at the preset's image size; the first step is warm-up and not timed.
"""

from __future__ import annotations

import argparse
import time

import open_clip
import torch

from benchmarks.report import write
from sen_train.config import load_config
from sen_train.model import SEN
from sen_train.train import param_groups


def measure(preset: str, steps: int, batch: int | None) -> dict:
    cfg = load_config(preset, [f"batch_size={batch}"] if batch else [])
    torch.manual_seed(0)
    model = SEN(cfg, num_classes=100)
    opt = torch.optim.Adam(param_groups(model, cfg))
    b = cfg.batch_size
    h, w = model.image_size
    images = torch.randn(b, 3, h, w)
    tokens = open_clip.tokenize(["a woman in a red coat carrying a black backpack and white shoes"] * b)
    pids = torch.arange(b) // cfg.k_per_id
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = model(images, tokens, pids)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    per_step = sorted(times)[len(times) // 2]
    return {"preset": preset, "model": cfg.model.name, "image": f"{h}x{w}", "batch": b,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "s_per_step": per_step, "samples_per_s": b / per_step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_speed")
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "sen-vit-b-16"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0, help="override every preset's batch size (0 = preset's)")
    args = ap.parse_args(argv)
    rows = [measure(p, args.steps, args.batch or None) for p in args.presets]
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["ratio_to_first"] = r["samples_per_s"] / base
        print(f"{r['preset']:<14} {r['image']:>8} batch {r['batch']:>3}  {r['params_M']:7.1f} M params  "
              f"{r['s_per_step']:7.2f} s/step  {r['samples_per_s']:8.1f} samples/s  x{r['ratio_to_first']:.3f}")
    path = write("train_speed", {"threads": torch.get_num_threads()}, rows,
                 ["preset", "model", "image", "batch", "params_M", "s_per_step", "samples_per_s", "ratio_to_first"],
                 plot=("preset", "samples_per_s"))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
