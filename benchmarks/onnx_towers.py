"""ONNX tower latency on this CPU, side by side in one run (interleaved, so machine noise hits all
variants alike): a typical 12-token query vs the same query padded to 77, int8 vs fp32 for both
towers (speed and cosine to fp32).

    python -m benchmarks.onnx_towers --engine ENGINE_DIR [--repeats 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.report import write
from benchmarks.timing import interleaved
from export.parity import probe_inputs_rgb
from sen_infer.engine.manifest import read_manifest
from sen_infer.engine.tokenizer import ClipTokenizer
from sen_train.transforms import normalise, resize

QUERY = "a woman in a red coat with a black backpack"  # 12 tokens with start/end


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.onnx_towers")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    engine = Path(args.engine)
    m = read_manifest(engine)
    tok = ClipTokenizer(engine / "tokenizer.json")
    short, padded = tok([QUERY]), tok([QUERY], pad_to=77)
    precisions = [p for p in ("fp32", "int8") if p in m.precisions]
    suffix = {"fp32": "", "int8": ".int8"}
    text = {p: _session(engine / f"text_encoder{suffix[p]}.onnx") for p in precisions}
    image = {p: _session(engine / f"image_encoder{suffix[p]}.onnx") for p in precisions}
    images, captions = probe_inputs_rgb()
    x = np.stack([normalise(resize(im, m.image_size), m.mean, m.std) for im in images])

    cases = {}
    for p in precisions:
        cases[f"text {p} b1 L={short.shape[1]}"] = lambda p=p: text[p].run(None, {"tokens": short})
        cases[f"text {p} b1 L=77"] = lambda p=p: text[p].run(None, {"tokens": padded})
        cases[f"image {p} b1"] = lambda p=p: image[p].run(None, {"image": x[:1]})
        cases[f"image {p} b8"] = lambda p=p: image[p].run(None, {"image": x[:8]})
    lat = interleaved(cases, args.repeats)
    rows = [{"case": k, **v} for k, v in lat.items()]
    figures = {"query": QUERY, "query_tokens": int(short.shape[1]), "model": m.model_name,
               "image_size": list(m.image_size)}
    for p in precisions:
        figures[f"text_{p}_77_over_short"] = lat[f"text {p} b1 L=77"]["p50_ms"] / lat[f"text {p} b1 L={short.shape[1]}"]["p50_ms"]
    if "int8" in precisions:
        figures["int8_over_fp32_speed"] = {
            "text": lat[f"text fp32 b1 L={short.shape[1]}"]["p50_ms"] / lat[f"text int8 b1 L={short.shape[1]}"]["p50_ms"],
            "image_b8": lat["image fp32 b8"]["p50_ms"] / lat["image int8 b8"]["p50_ms"],
        }
        toks = tok(captions)
        t32, t8 = text["fp32"].run(None, {"tokens": toks})[0], text["int8"].run(None, {"tokens": toks})[0]
        i32, i8 = image["fp32"].run(None, {"image": x})[0], image["int8"].run(None, {"image": x})[0]
        figures["int8_cosine_to_fp32"] = {
            "text_min": float((t32 * t8).sum(1).min()), "text_mean": float((t32 * t8).sum(1).mean()),
            "image_min": float((i32 * i8).sum(1).min()), "image_mean": float((i32 * i8).sum(1).mean())}
    path = write(f"onnx_towers_{m.model_name}", figures, rows, ["case", "p50_ms", "p95_ms"], plot=("case", "p50_ms"))
    for r in rows:
        print(f"{r['case']:<24} p50 {r['p50_ms']:8.2f} ms   p95 {r['p95_ms']:8.2f} ms")
    for k, v in figures.items():
        if k not in ("query",):
            print(f"{k}: {v}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
