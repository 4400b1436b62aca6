"""Engine dir + TensorRT 10 plans: fp16 (optionally int8) engines for the image and text towers.

    python -m export.trt --ckpt RUN/best --out ENGINE_DIR [--fp16] [--int8 --calib DIR] [--max-batch 256]

Runs the ONNX export first when ENGINE_DIR lacks this checkpoint's ONNX towers, then builds one plan
per tower with the TensorRT Python API and its ONNX parser:
  image: one profile, batch 1 / 32 / max (ingest);  text: batch 1 / 1 / 64, length 1 / 16 / 77 (queries).
Plan names carry their precision: image_encoder.fp16.plan or image_encoder.int8.plan, and
text_encoder.fp16.plan (the text tower is always fp16). Normalisation, softmax and reductions are
pinned to fp32 (fp16 overflows there). A timing cache speeds up rebuilds.

Plans are built in a temporary dir beside ENGINE_DIR, the parity gate runs on the GPU through
sen_infer's own TensorRT runner (the code deployments use), and only then are the plans moved in
and the manifest rewritten with their validity (TensorRT version, GPU, compute capability, profiles,
ONNX sha256). A failed build or gate leaves ENGINE_DIR exactly as it was.

Written against the TensorRT 10 Python API documentation; it has not run here (no GPU, no wheel).
Without TensorRT or a CUDA GPU it exits with code 2 and one line, leaving the ONNX engine dir intact.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

TIMING_CACHE = "trt_timing.cache"


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot run here: the module is missing or there is no CUDA GPU."""


def require_tensorrt():
    """(tensorrt module, torch) or TensorRTUnavailable with the reason in one line."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable("TensorRT is not installed (pip install tensorrt on a CUDA machine); "
                                  "the ONNX engine dir is usable with onnxruntime") from None
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA GPU is available; TensorRT engines can only be built on a GPU")
    if int(trt.__version__.split(".")[0]) < 10:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} found; this exporter needs TensorRT 10")
    return trt, torch


def _pin_fp32(trt, network) -> int:
    """Keep layers that overflow in fp16 (normalisation, softmax, reductions) in fp32."""
    pinned = 0
    risky = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in risky:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


class _Calibrator:
    """Entropy calibration from a folder of person crops (TensorRT's implicit INT8 path)."""

    def __new__(cls, trt, torch, images: list[np.ndarray], batch: int, cache_path: Path):
        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()
                self.batches = [np.stack(images[i : i + batch]) for i in range(0, len(images), batch)]
                self.device = None
                self.cache_path = cache_path

            def get_batch_size(self):
                return batch

            def get_batch(self, names):
                if not self.batches:
                    return None
                self.device = torch.from_numpy(self.batches.pop(0)).cuda()
                return [int(self.device.data_ptr())]

            def read_calibration_cache(self):
                return self.cache_path.read_bytes() if self.cache_path.is_file() else None

            def write_calibration_cache(self, cache):
                self.cache_path.write_bytes(bytes(cache))

        return Calibrator()


def build_plan(trt, onnx_path: Path, plan_path: Path, profiles: dict, cache_path: Path,
               int8_calibrator=None) -> dict:
    """Build and save one serialized engine; returns what the manifest records about it."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if int8_calibrator is not None:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = int8_calibrator
    pinned = _pin_fp32(trt, network)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if int8_calibrator is not None:
        config.set_calibration_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name}")
    plan_path.write_bytes(bytes(plan))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"profiles": {k: [list(s) for s in v] for k, v in profiles.items()}, "fp32_pinned_layers": pinned,
            "int8": int8_calibrator is not None}


def _calibration_images(folder: Path, size, mean, std, limit: int = 512) -> list[np.ndarray]:
    from sen_train.transforms import normalise, read_rgb, resize

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))[:limit]
    if not paths:
        raise ValueError(f"--calib {folder}: no images found")
    return [normalise(resize(read_rgb(str(p)), size), mean, std) for p in paths]


class TensorRTToolkit:
    """What export_trt needs from TensorRT and the GPU, in one place: build a plan, run a plan, say
    what it was built with. Tests substitute a CPU stand-in to exercise the gate and the swap."""

    def __init__(self):
        self.trt, self.torch = require_tensorrt()

    def build(self, onnx_path: Path, plan_path: Path, profiles: dict, cache_path: Path,
              calibration: list[np.ndarray] | None = None) -> dict:
        calibrator = None
        if calibration is not None:
            calibrator = _Calibrator(self.trt, self.torch, calibration, 32,
                                     plan_path.with_name("int8_calibration.cache"))
        return build_plan(self.trt, onnx_path, plan_path, profiles, cache_path, calibrator)

    def runner(self, plan_path: Path):
        from sen_infer.engine.encoders import TrtTower

        return TrtTower(plan_path)

    def describe(self) -> dict:
        from sen_infer.engine.encoders import trt_runtime

        version, capability = trt_runtime()
        return {"version": version, "gpu": self.torch.cuda.get_device_name(), "compute_capability": capability}


def export_trt(ckpt, out, max_batch: int = 256, int8_calib: str | None = None, force: bool = False, log=print,
               toolkit=None):
    """Build, gate and swap in the plans; returns the new manifest. Raises (ParityError, RuntimeError,
    TensorRTUnavailable) with ENGINE_DIR unchanged when anything fails before the swap."""
    import shutil
    import tempfile

    from export.onnx import IMAGE_ONNX, TEXT_ONNX, TOKENIZER, export_engine_dir
    from export.parity import check
    from sen_infer.engine.encoders import IMAGE_PLANS, TEXT_PLAN
    from sen_infer.engine.manifest import ManifestError, read_manifest, sha256_file, verify_files
    from sen_infer.engine.tokenizer import ClipTokenizer
    from sen_train.checkpoint import load_model

    toolkit = toolkit or TensorRTToolkit()
    out = Path(out)
    fingerprint = sha256_file(Path(ckpt) / "model.safetensors")
    try:
        manifest = read_manifest(out)
        current = manifest.fingerprint == fingerprint
    except ManifestError:
        current = False
    if not current:
        log("no ONNX export of this checkpoint in the engine dir: exporting ONNX first")
        manifest = export_engine_dir(ckpt, out, force=force, log=log)
    verify_files(out, manifest, (IMAGE_ONNX, TEXT_ONNX, TOKENIZER))  # build from the files the manifest vouches for
    model = load_model(ckpt).float()
    h, w = manifest.image_size
    precision = "int8" if int8_calib else "fp16"
    image_plan, text_plan = IMAGE_PLANS[precision], TEXT_PLAN
    calibration = None
    if int8_calib:
        calibration = _calibration_images(Path(int8_calib), (h, w), manifest.mean, manifest.std)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.trt-", dir=out.parent))
    try:
        cache = build / TIMING_CACHE
        if (out / TIMING_CACHE).is_file():
            shutil.copyfile(out / TIMING_CACHE, cache)
        log("building the image engine ...")
        image_info = toolkit.build(out / IMAGE_ONNX, build / image_plan,
                                   {"image": ((1, 3, h, w), (min(32, max_batch), 3, h, w), (max_batch, 3, h, w))},
                                   cache, calibration)
        log("building the text engine ...")
        text_info = toolkit.build(out / TEXT_ONNX, build / text_plan,
                                  {"tokens": ((1, 1), (1, 16), (64, manifest.context_length))}, cache)
        log("parity gate (TensorRT, through sen_infer's runner) ...")
        tokenizer = ClipTokenizer(out / TOKENIZER)
        figures = check(model, toolkit.runner(build / image_plan), toolkit.runner(build / text_plan), tokenizer,
                        precision)
        built = toolkit.describe()
        previous = manifest.tensorrt or {}
        plans = dict(previous.get("plans", {}))
        if (previous.get("version"), previous.get("compute_capability")) != (built["version"],
                                                                            built["compute_capability"]):
            plans = {}  # plans of another TensorRT or GPU are not valid next to these: drop them
        plans[image_plan] = {**image_info, "onnx_sha256": manifest.files[IMAGE_ONNX]}
        plans[text_plan] = {**text_info, "onnx_sha256": manifest.files[TEXT_ONNX]}
        manifest.tensorrt = {**built, "plans": plans}
        manifest.parity[f"trt-{precision}"] = figures
        stale = [n for n in manifest.files if n.endswith(".plan") and n not in plans]
        for name in stale:
            del manifest.files[name]
        new_files = {name: sha256_file(build / name) for name in (image_plan, text_plan, TIMING_CACHE)
                     if (build / name).is_file()}
        manifest.files.update(new_files)
        manifest.precisions = sorted({p for p in manifest.precisions if not p.startswith("trt-")}
                                     | {f"trt-{n.split('.')[1]}" for n in plans if n.startswith("image_encoder.")})
        for name in new_files:  # the gate passed: move the plans in, then the manifest
            os.replace(build / name, out / name)
        manifest.write(out)
        for name in stale:
            (out / name).unlink(missing_ok=True)
        return manifest
    finally:
        shutil.rmtree(build, ignore_errors=True)


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m export.trt", description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fp16", action="store_true", help="fp16 engines (the default; kept for explicitness)")
    ap.add_argument("--int8", action="store_true", help="INT8 image engine, calibrated on --calib")
    ap.add_argument("--calib", help="folder of person crops for INT8 calibration")
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    if args.int8 and not args.calib:
        print("error: --int8 needs --calib DIR (a folder of person crops)", file=sys.stderr)
        return 2
    try:
        export_trt(args.ckpt, args.out, args.max_batch, args.calib if args.int8 else None, args.force)
    except TensorRTUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # one line for the user; the parity gate's figures are in the message
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"TensorRT engines -> {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
