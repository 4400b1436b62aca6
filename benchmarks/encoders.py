"""Encoder latency and throughput for every backend available, side by side in one run.

    python -m benchmarks.encoders --engine ENGINE_DIR [--ckpt CKPT_DIR] [--batches 1 8 32] [--repeats 10]

Backends: torch eager fp32 (the reference, with --ckpt and torch installed), onnxruntime fp32,
onnxruntime int8, onnxruntime CUDA and TensorRT fp16 where available. Per tower and batch:
p50/p95/p99 latency, items/s and the ratio to torch eager measured in the same run; text at a
typical 12-token query and padded to 77; the image tower's achieved GFLOP/s against NumPy's
float32 GEMM rate on this machine (its practical peak).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.report import write
from benchmarks.timing import interleaved, matmul_peak_gflops
from export.parity import probe_inputs_rgb
from sen_infer.engine.encoders import Encoders, available_backends
from sen_infer.engine.preprocess import to_input

QUERY = "a woman in a red coat with a black backpack"  # 12 tokens with start and end


def _torch_towers(ckpt: str, device: str = "auto"):
    import torch

    from sen_train.checkpoint import load_model

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(ckpt, device)

    def image(x):
        with torch.no_grad():
            return model.encode_image(torch.from_numpy(x).to(device)).cpu().numpy()

    def text(t):
        with torch.no_grad():
            return model.encode_text(torch.from_numpy(t.astype(np.int64)).to(device)).cpu().numpy()

    def flops(x) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.encode_image(torch.from_numpy(x).to(device))
        return float(counter.get_total_flops())

    return image, text, flops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.encoders")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--ckpt", help="checkpoint dir: adds torch eager as the reference")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--torch-device", default="auto", help="where torch eager runs: auto (CUDA if present), cpu, cuda")
    args = ap.parse_args(argv)
    engine = Path(args.engine)

    towers = {}
    for b in reversed(available_backends(engine)):  # onnx-cpu, onnx-cpu-int8, onnx-cuda, tensorrt
        enc = Encoders(engine, backend=b)
        towers[b] = (enc._image, enc._text)
    enc = Encoders(engine, backend="onnx-cpu")
    manifest, tok = enc.manifest, enc.tokenizer
    flops_per_image = None
    if args.ckpt:
        try:
            image, text, flops = _torch_towers(args.ckpt, args.torch_device)
            towers = {"torch": (image, text), **towers}
        except ImportError:
            print("torch is not installed: no torch reference")
            flops = None
    images, _ = probe_inputs_rgb()
    x_all = np.stack([to_input(im[..., ::-1].copy(), manifest.image_size, manifest.mean, manifest.std)
                      for im in images])
    reps = max(1, -(-max(args.batches) // len(x_all)))
    x_all = np.concatenate([x_all] * reps)
    if args.ckpt and "torch" in towers:
        flops_per_image = flops(x_all[:1])
    short, padded = tok([QUERY]), tok([QUERY], pad_to=77)

    rows = []
    ref = {}
    for tower in ("image", "text"):
        for batch in args.batches:
            cases = {}
            for name, (img_fn, txt_fn) in towers.items():
                if tower == "image":
                    x = x_all[:batch]
                    cases[name] = lambda f=img_fn, x=x: f(x)
                else:
                    cases[f"{name} L={short.shape[1]}"] = lambda f=txt_fn, t=np.repeat(short, batch, 0): f(t)
                    cases[f"{name} L=77"] = lambda f=txt_fn, t=np.repeat(padded, batch, 0): f(t)
            lat = interleaved(cases, args.repeats)
            for case, v in lat.items():
                backend = case.split(" ")[0]
                row = {"tower": tower, "batch": batch, "backend": case, **{k: round(v[k], 3) for k in
                                                                           ("p50_ms", "p95_ms", "p99_ms")},
                       "items_per_s": round(batch / (v["p50_ms"] / 1e3), 2)}
                key = (tower, batch, case.replace(backend, "", 1))
                if backend == "torch":
                    ref[key] = v["p50_ms"]
                if key in ref:
                    row["speedup_vs_torch"] = round(ref[key] / v["p50_ms"], 3)
                if tower == "image" and flops_per_image:
                    row["gflops"] = round(flops_per_image * batch / (v["p50_ms"] / 1e3) / 1e9, 2)
                rows.append(row)
    peak = matmul_peak_gflops()
    int8 = manifest.parity.get("int8") or {}
    figures = {"model": manifest.model_name, "image_size": list(manifest.image_size), "backends": list(towers),
               "int8": {"quantisation": int8.get("quantisation") or ("dynamic" if int8 else None),
                        "image_min_cosine": int8.get("image_min_cosine"),
                        "text_min_cosine": int8.get("text_min_cosine")},
               "query_tokens": int(short.shape[1]), "matmul_peak_gflops": round(peak, 2),
               "image_gflop_per_item": round(flops_per_image / 1e9, 4) if flops_per_image else None}
    best_image = max((r for r in rows if r["tower"] == "image" and "gflops" in r), key=lambda r: r["gflops"],
                     default=None)
    if best_image:
        figures["best_image_gflops"] = best_image["gflops"]
        figures["best_image_share_of_peak"] = round(best_image["gflops"] / peak, 3)
    for r in rows:
        r["label"] = f"{r['tower']} b{r['batch']} {r['backend']}"
    path = write(f"encoders_{manifest.model_name}", figures, rows,
                 ["tower", "batch", "backend", "p50_ms", "p95_ms", "p99_ms", "items_per_s", "speedup_vs_torch",
                  "gflops"], plot=("label", "items_per_s"))
    for r in rows:
        print(f"{r['tower']:<6} b{r['batch']:<3} {r['backend']:<22} p50 {r['p50_ms']:9.2f} ms  p99 {r['p99_ms']:9.2f}"
              f"  {r['items_per_s']:9.1f}/s" + (f"  x{r['speedup_vs_torch']:.2f} vs torch" if "speedup_vs_torch" in r
                                                else ""))
    print({k: v for k, v in figures.items()})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
