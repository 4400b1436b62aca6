"""Static QDQ int8 towers, with the precision-sensitive nodes kept in fp32 by a measured sweep.

Why static QDQ: dynamic quantisation measures every activation's range at run time (a reduction per
MatMul per call) and leaves the attention products in fp32; static QDQ fixes the ranges once, from
person crops and captions preprocessed exactly as the SDK does, so onnxruntime fuses each
DequantizeLinear -> MatMul -> QuantizeLinear into one int8 kernel. Weights are int8 per output
channel (symmetric), activations uint8 (asymmetric): the fast u8s8 path of x86 CPUs.

Which nodes stay fp32 is measured, not guessed (`sweep`): starting from the fully quantised tower,
each quantised node is put back to fp32 alone ("exclude one at a time") and the drop in the tower's
error against the fp32 graph on the calibration inputs is that node's sensitivity. Nodes are then
excluded greedily in that order until the tower's min cosine to torch on the parity probe reaches
`QuantizeConfig.target` (0.995: the gate's 0.99 with margin). The ranking, the greedy steps and the
result are written to `int8_sweep.json` beside the towers.

The per-node trials are built by graph surgery on the quantised model (the node's inputs rewired
to their fp32 originals), which costs a session, not a re-quantisation; the towers that ship are
made by `onnxruntime.quantization.quantize_static` with `nodes_to_exclude`, from the same cached
calibration, and then pass the ordinary parity gate.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SWEEP_FILE = "int8_sweep.json"
CALIB_SEED = 77  # not the parity probe's seed: the gate must not grade the calibration data
QUANTISED_OPS = ("MatMul", "Gemm", "Conv")
METHODS = ("minmax", "percentile", "entropy")


class QuantizeError(RuntimeError):
    """Static quantisation could not be built (as opposed to a gate failure, which is ParityError)."""


@dataclass
class QuantizeConfig:
    """How the int8 towers are made. The defaults are the measured choice (docs/export.md)."""

    method: str = "minmax"  # activation calibration: minmax | percentile | entropy
    percentile: float = 99.999  # for method=percentile
    calib_images: int = 32  # SynthPEDES person crops (batches of 8)
    calib_captions: int = 64  # SynthPEDES captions (batches of 8, padded to each batch's longest)
    sweep_images: int = 8  # calibration inputs each sweep trial is scored on
    sweep_captions: int = 16
    target: float = 0.995  # min cosine to torch on the probe the greedy exclusion aims for
    max_excluded_share: float = 0.34  # beyond this share of nodes in fp32, int8 buys little speed
    max_excluded: int | None = None  # absolute cap (tests); None: max_excluded_share of the nodes

    def __post_init__(self):
        if self.method not in METHODS:
            raise QuantizeError(f"unknown calibration method {self.method!r} (choose from {', '.join(METHODS)})")

    def cap(self, nodes: int) -> int:
        return self.max_excluded if self.max_excluded is not None else int(self.max_excluded_share * nodes)


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs advice (pre-processing, opset) on the root logger on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# ---- calibration inputs: what the SDK feeds the towers ------------------------------------------
def calibration_inputs(image_size, mean, std, tokenizer, cfg: QuantizeConfig):
    """(image batches float32 [8, 3, H, W], token batches int32 [8, L]) from SynthPEDES people drawn
    with CALIB_SEED, preprocessed by `sen_infer.engine.preprocess.to_input` (the SDK's own code)."""
    from export.probe import probe_set
    from sen_infer.engine.preprocess import to_input

    n = max(cfg.calib_images, cfg.calib_captions)
    images, _, captions, _ = probe_set(ids=max(3, -(-n // 2)), images_per_id=2, seed=CALIB_SEED)
    x = np.stack([to_input(np.ascontiguousarray(im[..., ::-1]), tuple(image_size), mean, std)
                  for im in images[: cfg.calib_images]]).astype(np.float32)
    caps = captions[: cfg.calib_captions]
    # the histogram calibrators stack all batches, so they need one length; min/max does not
    pad = None if cfg.method == "minmax" else int(tokenizer(caps).shape[1])
    return ([x[i : i + 8] for i in range(0, len(x), 8)],
            [tokenizer(caps[i : i + 8], pad_to=pad) for i in range(0, len(caps), 8)])


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a list of arrays."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self._it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self._it, None)


# ---- sessions and graph surgery -----------------------------------------------------------------
def session(model):
    """A CPU session with the SDK's optimisation level (so trials are scored on the fused int8 kernels
    that run in deployment) from a path or a ModelProto."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    data = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def quantised_nodes(model) -> list[str]:
    """Names of the compute nodes (QUANTISED_OPS) that read a DequantizeLinear output: the int8 compute.
    (The quantiser also lets Reshape/Transpose carry int8 between them; they follow their neighbours.)"""
    produced_by_dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type in QUANTISED_OPS and any(i in produced_by_dq for i in n.input)]


def _prune(graph) -> None:
    """Drop nodes whose outputs nobody reads (Q/DQ pairs orphaned by surgery), then unused initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        used = outputs | {i for n in graph.node for i in n.input}
        dead = [k for k, n in enumerate(graph.node) if not any(o in used for o in n.output)]
        if not dead:
            break
        for k in reversed(dead):
            del graph.node[k]
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def restore_fp32(qdq, fp32, names) -> object:
    """A copy of the quantised model `qdq` in which the nodes `names` read their original fp32 inputs
    (weights taken from `fp32`): what `nodes_to_exclude` would give, without re-quantising."""
    import onnx

    names = set(names)
    originals = {n.name: n for n in fp32.graph.node if n.name in names}
    missing = names - set(originals)
    if missing:
        raise QuantizeError(f"nodes not in the fp32 graph: {sorted(missing)[:5]}")
    inits = {t.name: t for t in fp32.graph.initializer}
    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    present = {t.name for t in m.graph.initializer}
    produced = {o for n in m.graph.node for o in n.output}  # e.g. a bias dequantised under its own name
    for node in m.graph.node:
        if node.name in names:
            del node.input[:]
            for i in originals[node.name].input:
                if i in inits and i in produced:
                    fp32_name = f"{i}__fp32"
                    if fp32_name not in present:
                        t = onnx.TensorProto()
                        t.CopyFrom(inits[i])
                        t.name = fp32_name
                        m.graph.initializer.append(t)
                        present.add(fp32_name)
                    i = fp32_name
                elif i in inits and i not in present:
                    m.graph.initializer.append(inits[i])
                    present.add(i)
                node.input.append(i)
    _prune(m.graph)
    return m


# ---- the quantiser ----------------------------------------------------------------------------------
def quantize_static_qdq(src: Path, dst: Path, cfg: QuantizeConfig, cache: Path, batches=None, input_name=None,
                        exclude=()) -> None:
    """`quantize_static` in QDQ format, per-channel int8 weights, uint8 activations, on QUANTISED_OPS.
    The first call (with `batches`) calibrates and writes `cache`; later calls reuse it."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.method]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if cfg.method == "percentile":
        extra["CalibPercentile"] = cfg.percentile
    reader = _Batches(input_name, batches) if batches is not None else None
    with _quiet():
        try:
            quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTISED_OPS), per_channel=True, reduce_range=False,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude), calibrate_method=method, extra_options=extra,
                            calibration_cache_path=str(cache))
        except (ValueError, RuntimeError, KeyError) as e:
            raise QuantizeError(f"static quantisation of {src.name} failed: {e}") from None


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row cosines in float64 (the towers' outputs are L2-normalised; re-normalise anyway)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _run_all(sess, name: str, batches: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([sess.run(None, {name: b})[0] for b in batches])


def sweep(qdq, fp32, name: str, batches: list[np.ndarray], reference: np.ndarray, log=print) -> dict:
    """Exclude-one-at-a-time sensitivity of every quantised node, ranked (most sensitive first).
    error = mean(1 - cos) to the fp32 graph over `batches`; gain = error(all int8) - error(node in fp32)."""
    full = _cosines(_run_all(session(qdq), name, batches), reference)
    base = float((1 - full).mean())
    nodes = quantised_nodes(qdq)
    op = {n.name: n.op_type for n in qdq.graph.node}
    ranked = []
    t0 = time.perf_counter()
    for k, node in enumerate(nodes):
        cos = _cosines(_run_all(session(restore_fp32(qdq, fp32, [node])), name, batches), reference)
        err = float((1 - cos).mean())
        ranked.append({"node": node, "op_type": op[node], "error_without": err, "gain": base - err,
                       "min_cosine_without": float(cos.min())})
        if k == 0:
            log(f"  sweep: {len(nodes)} nodes, ~{(time.perf_counter() - t0) * len(nodes):.0f} s")
    ranked.sort(key=lambda r: -r["gain"])
    for rank, r in enumerate(ranked, 1):
        r["rank"] = rank
    return {"quantised_nodes": len(nodes), "error_all_int8": base, "min_cosine_all_int8": float(full.min()),
            "sweep_inputs": int(len(reference)), "ranked": ranked}


def greedy_exclude(qdq, fp32, ranked: list[dict], score, target: float, cap: int, log=print):
    """Put the ranked nodes back to fp32 one by one until `score(model)` (min cosine to torch on the
    probe) reaches `target` or `cap` nodes are excluded. Returns (excluded names, steps)."""
    excluded, steps = [], []
    best = score(qdq)
    steps.append({"excluded": 0, "min_cosine": best})
    for r in ranked[:cap]:
        if best >= target:
            break
        excluded.append(r["node"])
        best = score(restore_fp32(qdq, fp32, excluded))
        steps.append({"excluded": len(excluded), "node": r["node"], "min_cosine": best})
    return excluded, steps


def config_dict(cfg: QuantizeConfig) -> dict:
    return {**asdict(cfg), "format": "QDQ", "weights": "int8 per-channel symmetric",
            "activations": "uint8 asymmetric, static", "op_types": list(QUANTISED_OPS)}


def build_tower(src: Path, dst: Path, name: str, batches, probe_score, cfg: QuantizeConfig, log=print) -> dict:
    """Calibrate, sweep, exclude greedily and write the static int8 tower `dst`. Returns its sweep record.
    `probe_score(session) -> min cosine to torch on the parity probe`."""
    import onnx

    t0 = time.perf_counter()
    fp32 = onnx.load(str(src))
    tower, name = name, fp32.graph.input[0].name  # "image" / "tokens"
    n = cfg.sweep_images if tower == "image" else cfg.sweep_captions
    sweep_batches = batches[: max(1, -(-n // 8))]
    reference = _run_all(session(src), name, sweep_batches)
    with tempfile.TemporaryDirectory(prefix="sen-int8-") as work:
        cache, full_path = Path(work) / "calibration.json", Path(work) / "all_int8.onnx"
        quantize_static_qdq(src, full_path, cfg, cache, batches, name)
        calib_s = time.perf_counter() - t0
        qdq = onnx.load(str(full_path))
        record = sweep(qdq, fp32, name, sweep_batches, reference, log)
        cap = cfg.cap(record["quantised_nodes"])
        excluded, steps = greedy_exclude(qdq, fp32, record["ranked"], lambda m: probe_score(session(m)),
                                         cfg.target, cap, log)
        quantize_static_qdq(src, dst, cfg, cache, exclude=excluded)
    final = probe_score(session(dst))
    record.update({"excluded": excluded, "greedy_steps": steps, "cap": cap, "target": cfg.target,
                   "probe_min_cosine": final, "target_reached": final >= cfg.target,
                   "calibration_seconds": round(calib_s, 2), "seconds": round(time.perf_counter() - t0, 2)})
    log(f"  {tower}: {record['quantised_nodes']} nodes int8, all-int8 probe min cos {steps[0]['min_cosine']:.4f}; "
        f"{len(excluded)} kept fp32 -> {final:.4f}" + (f" (top: {', '.join(excluded[:3])})" if excluded else ""))
    return record


def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    """The fallback: dynamic quantisation (QInt8 weights on MatMul/Gemm, activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])


def quantize_towers(model, build: Path, files: dict, tokenizer, cfg: QuantizeConfig | None = None,
                    log=print) -> dict:
    """Write the int8 towers into `build` and return their parity figures (raises ParityError when
    neither static QDQ nor the dynamic fallback passes the gate). `files`: {"image": (fp32 name,
    int8 name), "text": (...)}. The sweep record goes to `build / SWEEP_FILE`."""
    import json

    from export.parity import ParityError, check, probe_inputs, reference_embeddings, run_image, run_text

    cfg = cfg or QuantizeConfig()
    t0 = time.perf_counter()
    x, _, captions, _ = probe_inputs(model)
    ref_img, ref_txt = reference_embeddings(model, x, tokenizer(captions))

    def image_score(sess) -> float:
        return float(_cosines(run_image(sess, x), ref_img).min())

    def text_score(sess) -> float:
        return min(float(_cosines(run_text(sess, captions, tokenizer, pad_to=pad), ref_txt).min())
                   for pad in (None, 77))

    img_batches, txt_batches = calibration_inputs(model.image_size, model.mean, model.std, tokenizer, cfg)
    record = {"method": "static-qdq", "config": config_dict(cfg), "calibration_seed": CALIB_SEED,
              "calibration_inputs": {"images": int(sum(len(b) for b in img_batches)),
                                     "captions": int(sum(len(b) for b in txt_batches))},
              "sweep": "exclude one at a time: gain = drop of mean(1 - cos) to the fp32 graph when only that "
                       "node is put back to fp32; then greedy exclusion in rank order until the probe min "
                       "cosine to torch reaches the target", "towers": {}}
    static_error = None
    try:
        for name, batches, score in (("image", img_batches, image_score), ("text", txt_batches, text_score)):
            src, dst = (build / f for f in files[name])
            log(f"static int8 ({cfg.method} calibration) for the {name} tower ...")
            record["towers"][name] = build_tower(src, dst, name, batches, score, cfg, log)
        figures = check(model, session(build / files["image"][1]), session(build / files["text"][1]), tokenizer,
                        "int8")
    except (ParityError, QuantizeError) as e:
        static_error = str(e)
        log(f"static int8 refused ({static_error}); trying dynamic quantisation")
        for name in ("image", "text"):
            quantize_dynamic_int8(build / files[name][0], build / files[name][1])
        record["method"] = "dynamic"
        record["static_failure"] = static_error
        try:
            figures = check(model, session(build / files["image"][1]), session(build / files["text"][1]),
                            tokenizer, "int8")
        except ParityError as e2:
            raise ParityError(f"int8 refused: static QDQ ({static_error}) and dynamic ({e2})") from None
    record["gate"] = figures
    record["seconds"] = round(time.perf_counter() - t0, 2)
    (build / SWEEP_FILE).write_text(json.dumps(record, indent=1))
    figures["quantisation"] = {
        "method": record["method"], "calibration": cfg.method if record["method"] == "static-qdq" else None,
        "fp32_nodes": {k: len(v["excluded"]) for k, v in record["towers"].items()} if not static_error else None,
        "sweep": SWEEP_FILE, "seconds": record["seconds"]}
    return figures


def compare_methods(ckpt, engine, methods=METHODS, log=print) -> dict:
    """Every tower fully int8 (no node in fp32) under each calibration method: probe min and mean
    cosine to torch. How the default method was chosen (docs/export.md)."""
    from export.parity import probe_inputs, reference_embeddings, run_image, run_text
    from sen_infer.engine.tokenizer import ClipTokenizer
    from sen_train.checkpoint import load_model

    engine = Path(engine)
    model = load_model(ckpt).float()
    tokenizer = ClipTokenizer(engine / "tokenizer.json")
    x, _, captions, _ = probe_inputs(model)
    ref_img, ref_txt = reference_embeddings(model, x, tokenizer(captions))
    out = {}
    for method in methods:
        cfg = QuantizeConfig(method=method)
        img_b, txt_b = calibration_inputs(model.image_size, model.mean, model.std, tokenizer, cfg)
        out[method] = {}
        with tempfile.TemporaryDirectory(prefix="sen-int8-") as work:
            for tower, file, batches in (("image", "image_encoder.onnx", img_b), ("text", "text_encoder.onnx", txt_b)):
                dst, t0 = Path(work) / f"{tower}.onnx", time.perf_counter()
                quantize_static_qdq(engine / file, dst, cfg, Path(work) / f"{tower}.json", batches,
                                    "image" if tower == "image" else "tokens")
                seconds = time.perf_counter() - t0
                sess = session(dst)
                got = run_image(sess, x) if tower == "image" else run_text(sess, captions, tokenizer)
                cos = _cosines(got, ref_img if tower == "image" else ref_txt)
                out[method][tower] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                                      "seconds": round(seconds, 1)}
                log(f"{method:<10} {tower:<5} all int8: probe min cos {cos.min():.5f}, mean {cos.mean():.5f} "
                    f"({seconds:.0f} s to calibrate + quantise)")
    return out


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m export.quantize",
                                 description="Compare int8 calibration methods on an exported engine dir.")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--engine", required=True, help="an engine dir with the fp32 towers")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    try:
        figures = compare_methods(args.ckpt, args.engine, args.methods)
    except QuantizeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
