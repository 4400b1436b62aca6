"""Engine dir + TensorRT 10 plans: fp16 (optionally int8) engines for the image and text towers.

    python -m export.trt --ckpt RUN/best --out ENGINE_DIR [--fp16] [--int8 --calib DIR] [--max-batch 256]

Runs the ONNX export first when ENGINE_DIR lacks this checkpoint's ONNX towers, then builds one plan
per tower with the TensorRT Python API and its ONNX parser:
  image: one profile, batch 1 / 32 / max (ingest);  text: batch 1 / 1 / 64, length 1 / 16 / 77 (queries).
Normalisation, softmax and reductions are pinned to fp32 (fp16 overflows there). A timing cache
speeds up rebuilds. The parity gate runs again on the GPU, and the plans' validity (TensorRT version,
GPU, compute capability, profiles, ONNX sha256) goes into the manifest.

Written against the TensorRT 10 Python API documentation; it has not run here (no GPU, no wheel).
Without TensorRT or a CUDA GPU it exits with code 2 and one line, leaving the ONNX engine dir intact.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

IMAGE_PLAN, TEXT_PLAN = "image_encoder.fp16.plan", "text_encoder.fp16.plan"
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


class PlanSession:
    """Runs a plan with torch CUDA buffers, with onnxruntime's `run(None, {name: array})` shape,
    so the parity gate can check it exactly like an ONNX session."""

    def __init__(self, trt, torch, plan_path: Path):
        self.torch = torch
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan_path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def run(self, _outputs, feeds: dict):
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(feeds[self.input])).cuda()
        self.context.set_input_shape(self.input, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input, x.data_ptr())
        self.context.set_tensor_address(self.output, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return [out.cpu().numpy()]


def _calibration_images(folder: Path, size, mean, std, limit: int = 512) -> list[np.ndarray]:
    from sen_train.transforms import normalise, read_rgb, resize

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))[:limit]
    if not paths:
        raise ValueError(f"--calib {folder}: no images found")
    return [normalise(resize(read_rgb(str(p)), size), mean, std) for p in paths]


def export_trt(ckpt, out, max_batch: int = 256, int8_calib: str | None = None, force: bool = False, log=print):
    trt, torch = require_tensorrt()
    from export.onnx import IMAGE_ONNX, TEXT_ONNX, TOKENIZER, export_engine_dir
    from export.parity import check
    from sen_infer.manifest import ManifestError, read_manifest, sha256_file
    from sen_infer.tokenizer import ClipTokenizer
    from sen_train.checkpoint import load_model

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
    model = load_model(ckpt)
    h, w = manifest.image_size
    cache = out / TIMING_CACHE
    calibrator = None
    if int8_calib:
        images = _calibration_images(Path(int8_calib), (h, w), manifest.mean, manifest.std)
        calibrator = _Calibrator(trt, torch, images, 32, out / "int8_calibration.cache")
    log("building the image engine ...")
    image_info = build_plan(trt, out / IMAGE_ONNX, out / IMAGE_PLAN,
                            {"image": ((1, 3, h, w), (min(32, max_batch), 3, h, w), (max_batch, 3, h, w))},
                            cache, calibrator)
    log("building the text engine ...")
    text_info = build_plan(trt, out / TEXT_ONNX, out / TEXT_PLAN,
                           {"tokens": ((1, 1), (1, 16), (64, manifest.context_length))}, cache)
    log("parity gate (TensorRT) ...")
    tokenizer = ClipTokenizer(out / TOKENIZER)
    precision = "int8" if int8_calib else "fp16"  # torch (fp32, CPU) is the reference
    figures = check(model, PlanSession(trt, torch, out / IMAGE_PLAN), PlanSession(trt, torch, out / TEXT_PLAN),
                    tokenizer, precision)
    major, minor = torch.cuda.get_device_capability()
    manifest.tensorrt = {
        "version": trt.__version__, "gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}",
        "image": {**image_info, "onnx_sha256": manifest.files[IMAGE_ONNX]},
        "text": {**text_info, "onnx_sha256": manifest.files[TEXT_ONNX]},
    }
    manifest.parity[f"trt-{precision}"] = figures
    for name in (IMAGE_PLAN, TEXT_PLAN, TIMING_CACHE):
        manifest.files[name] = sha256_file(out / name)
    manifest.precisions = sorted(set(manifest.precisions) | {"trt-fp16"} | ({"trt-int8"} if int8_calib else set()))
    manifest.write(out)
    return manifest


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
