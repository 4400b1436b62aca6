"""Checkpoint -> engine dir with ONNX towers (fp32, optionally int8), tokenizer and manifest.

    python -m export.onnx --ckpt RUN/best --out ENGINE_DIR [--opset 18] [--int8] [--force]

`--int8`: static QDQ int8 towers calibrated on SynthPEDES crops and captions, with the nodes a
per-node sensitivity sweep finds precision-sensitive kept in fp32 (export.quantize; the sweep is
written to int8_sweep.json); dynamic quantisation is the fallback when static cannot pass the gate.

Everything is built in a temporary dir beside ENGINE_DIR and moved into place only after the
parity gate passes, so a failed export leaves nothing behind. Only model files move: an existing
engine dir's gallery/ (and anything else that is not the export's) is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch

from export.graph import export_graph
from export.parity import ParityError, check
from export.quantize import QuantizeConfig, QuantizeError, quantize_towers
from export.tokenizer import build_tokenizer_json
from export.towers import ImageTower, TextTower
from sen_infer.engine.manifest import Manifest, ManifestError, read_manifest, sha256_file
from sen_infer.engine.tokenizer import ClipTokenizer
from sen_train.checkpoint import CheckpointError, load_model, read_meta

IMAGE_ONNX, TEXT_ONNX = "image_encoder.onnx", "text_encoder.onnx"
IMAGE_INT8, TEXT_INT8 = "image_encoder.int8.onnx", "text_encoder.int8.onnx"
TOKENIZER = "tokenizer.json"


class ExportError(RuntimeError):
    """An export that cannot proceed (e.g. it would overwrite another model's engine dir)."""


def _versions() -> dict:
    out = {}
    for name in ("torch", "onnx", "onnxruntime", "onnxscript", "open_clip_torch", "tokenizers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_target(out: Path, fingerprint: str, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    try:
        existing = read_manifest(out)
    except ManifestError:
        if any(p.name != "gallery" for p in out.iterdir()) and not force:
            raise ExportError(f"{out} exists and is not an engine dir; pass --force to replace it") from None
        return
    if existing.fingerprint != fingerprint and not force:
        raise ExportError(f"{out} holds an export of another model (fingerprint {existing.fingerprint[:12]}, "
                          f"this checkpoint {fingerprint[:12]}); pass --force to replace it")


def swap_in(build: Path, out: Path, manifest: Manifest, keep: tuple[str, ...] = ()) -> None:
    """Move the model files of a finished, gated build into `out`, then its manifest (last), then
    remove the files the previous manifest listed that the new one does not (unless in `keep`).

    Only model files move, so a gallery/ inside `out` is never touched, whatever fails. Interrupted
    half way, the dir holds some new files under the old manifest: the SDK refuses it, naming the
    file whose sha256 differs, and re-running the export completes it."""
    if not out.exists():
        manifest.write(build)
        build.rename(out)
        return
    try:
        previous = set(read_manifest(out).files)
    except ManifestError:
        previous = set()
    for name in manifest.files:
        os.replace(build / name, out / name)
    manifest.write(out)
    for name in sorted(previous - set(manifest.files) - set(keep)):
        (out / name).unlink(missing_ok=True)


def export_engine_dir(ckpt: str | os.PathLike, out: str | os.PathLike, opset: int = 18, int8: bool = False,
                      force: bool = False, image_tower=ImageTower, text_tower=TextTower,
                      log=print, quantize: QuantizeConfig | None = None) -> Manifest:
    """Export `ckpt` to the engine dir `out`; returns its manifest. Raises ParityError on a failed gate."""
    ckpt, out = Path(ckpt), Path(out).resolve()
    meta = read_meta(ckpt)
    fingerprint = sha256_file(ckpt / "model.safetensors")
    _check_target(out, fingerprint, force)
    model = load_model(ckpt).float()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        t0 = time.perf_counter()
        h, w = model.image_size
        log(f"exporting image tower ({h}x{w}) ...")
        export_graph(image_tower(model), torch.zeros(2, 3, h, w), tmp / IMAGE_ONNX, "image", False, opset)
        log("exporting text tower ...")
        tokens = torch.zeros(2, 77, dtype=torch.int32)
        tokens[:, 0], tokens[:, 1] = 49406, 49407
        export_graph(text_tower(model), tokens, tmp / TEXT_ONNX, "tokens", True, opset)
        build_tokenizer_json(tmp / TOKENIZER)
        tokenizer = ClipTokenizer(tmp / TOKENIZER)
        export_seconds = time.perf_counter() - t0
        log("parity gate (fp32) ...")
        parity = {"fp32": check(model, _session(tmp / IMAGE_ONNX), _session(tmp / TEXT_ONNX), tokenizer, "fp32")}
        precisions = ["fp32"]
        if int8:
            try:
                parity["int8"] = quantize_towers(model, tmp, {"image": (IMAGE_ONNX, IMAGE_INT8),
                                                              "text": (TEXT_ONNX, TEXT_INT8)},
                                                 tokenizer, quantize, log)
            except ParityError as e:
                raise ParityError(f"{e} (the fp32 towers passed: export without --int8 to keep them)") from None
            precisions.append("int8")
        parity["export_seconds"] = round(export_seconds, 2)
        for leftover in tmp.glob("*.data"):  # no external-data files are expected; refuse silently-wrong dirs
            raise ExportError(f"unexpected external data file {leftover.name}")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = Manifest(
            fingerprint=fingerprint, model_name=meta["config"]["model"]["name"], embed_dim=int(model.embed_dim),
            image_size=(int(h), int(w)), mean=tuple(model.mean), std=tuple(model.std), context_length=77,
            sot_id=tokenizer.sot_id, eot_id=tokenizer.eot_id, files=files, precisions=precisions, parity=parity,
            opset=opset, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), producer=_versions())
        swap_in(tmp, out, manifest)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m export.onnx", description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True, help="checkpoint dir (model.safetensors + config.json)")
    ap.add_argument("--out", required=True, help="engine dir to write")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--int8", action="store_true",
                    help="also write static int8 (QDQ) towers, sensitive nodes kept fp32 by a measured sweep")
    ap.add_argument("--calibration", choices=("minmax", "percentile", "entropy"), default="minmax",
                    help="int8 activation calibration (default minmax: measured best, docs/export.md)")
    ap.add_argument("--force", action="store_true", help="replace an engine dir of another model")
    args = ap.parse_args(argv)
    try:
        m = export_engine_dir(args.ckpt, args.out, args.opset, args.int8, args.force,
                              quantize=QuantizeConfig(method=args.calibration))
    except (ExportError, ParityError, CheckpointError, ManifestError, QuantizeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, ParityError) else 2
    for precision in m.precisions:
        f = m.parity[precision]
        print(f"{precision}: image min cos {f['image_min_cosine']:.6f}, text min cos {f['text_min_cosine']:.6f}, "
              f"probe R@1 {f['probe_R1_export']:.2f} (torch {f['probe_R1_torch']:.2f})")
    q = m.parity.get("int8", {}).get("quantisation")
    if q:
        print(f"int8: {q['method']}" + (f", fp32 nodes kept {q['fp32_nodes']}" if q.get("fp32_nodes") else "")
              + f" (sweep in {q['sweep']}, {q['seconds']} s)")
    print(f"engine dir -> {Path(args.out).resolve()} (export {m.parity['export_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
