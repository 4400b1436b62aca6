"""The engine-dir contract where models are loaded and written: verification on open (and its hash
cache), TensorRT validity, export.trt's gate-then-swap, and export.onnx never touching a gallery."""

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from sen_infer import EngineDirError, Retriever
from sen_infer.engine.encoders import HashCache, Encoders, trt_mismatch
from sen_infer.errors import ManifestError


def tree_digest(root: Path) -> dict:
    """Every file under root (gallery included) -> sha256 of its bytes: "byte-identical" made checkable."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def engine_copy(engine, tmp_path):
    dst = tmp_path / "engine"
    shutil.copytree(engine, dst, ignore=shutil.ignore_patterns("gallery"))
    return dst


def test_hash_cache_hashes_once_and_still_catches_a_rewrite(engine_copy, tmp_path):
    cache = HashCache(tmp_path / "cache.json")
    Encoders(engine_copy, "onnx-cpu", hash_cache=cache)
    assert cache.hashed == 3  # tokenizer + two towers
    Encoders(engine_copy, "onnx-cpu", hash_cache=cache)
    assert cache.hashed == 3  # second open: nothing re-read
    fresh = HashCache(tmp_path / "cache.json")  # another process reads the same cache file
    Encoders(engine_copy, "onnx-cpu", hash_cache=fresh)
    assert fresh.hashed == 0
    # rewrite the image tower with other bytes of the same size and put its mtime back
    path = engine_copy / "image_encoder.onnx"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(EngineDirError, match=r"image_encoder\.onnx: sha256 .* differs"):
        Encoders(engine_copy, "onnx-cpu", hash_cache=fresh)
    Encoders(engine_copy, "onnx-cpu", verify=False, hash_cache=fresh)  # --skip-verify: the user's call


def test_only_the_chosen_backends_files_are_hashed(engine_copy, tmp_path):
    (engine_copy / "image_encoder.onnx").write_bytes(b"not this one")
    cache = HashCache(tmp_path / "cache.json")
    enc = Encoders(engine_copy, "onnx-cpu-int8", hash_cache=cache)
    assert enc.backend == "onnx-cpu-int8" and cache.hashed == 3
    with pytest.raises(EngineDirError, match="image_encoder.onnx"):
        Encoders(engine_copy, "onnx-cpu", hash_cache=cache)


def test_unlisted_towers_are_ignored_by_auto_with_a_warning(engine_copy, tmp_path):
    m = json.loads((engine_copy / "manifest.json").read_text())
    del m["files"]["image_encoder.int8.onnx"]
    (engine_copy / "manifest.json").write_text(json.dumps(m))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = Encoders(engine_copy, hash_cache=HashCache(tmp_path / "c.json"))
    assert enc.backend == "onnx-cpu"
    assert any("image_encoder.int8.onnx" in str(w.message) and "not listed" in str(w.message) for w in caught)
    with pytest.raises(ManifestError, match="image_encoder.int8.onnx: not listed"):
        Encoders(engine_copy, "onnx-cpu-int8", hash_cache=HashCache(tmp_path / "c.json"))


def test_trt_validity_names_both_versions_and_both_gpus():
    built = {"version": "10.3.0", "gpu": "NVIDIA A100", "compute_capability": "8.0"}
    assert trt_mismatch(built, "10.3.0", "8.0") is None
    why = trt_mismatch(built, "10.7.0", "9.0")
    assert "TensorRT 10.3.0" in why and "TensorRT 10.7.0" in why
    assert "compute capability 8.0" in why and "this GPU is 9.0" in why
    assert "records no TensorRT build" in trt_mismatch(None, "10.3.0", "8.0")


class FakeToolkit:
    """A CPU stand-in for TensorRT: 'plans' are bytes, the runner is onnxruntime over the ONNX tower
    (optionally corrupted, to force the gate to fail). Exercises export.trt's build-aside, gate and swap."""

    def __init__(self, engine: Path, broken: bool):
        self.engine, self.broken, self.built = engine, broken, []

    def build(self, onnx_path, plan_path, profiles, cache_path, calibration=None):
        plan_path.write_bytes(b"fake plan of " + onnx_path.name.encode())
        cache_path.write_bytes(b"timing cache")
        self.built.append(plan_path)
        return {"profiles": {k: [list(s) for s in v] for k, v in profiles.items()}, "int8": calibration is not None}

    def runner(self, plan_path):
        import onnxruntime as ort

        name = "image_encoder.onnx" if plan_path.name.startswith("image") else "text_encoder.onnx"
        session = ort.InferenceSession(str(self.engine / name), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)

        def run(x):
            out = session.run(None, {session.get_inputs()[0].name: x})[0]
            if self.broken and name.startswith("image"):
                out = out + rng.normal(0, 0.2, out.shape).astype(np.float32)
                out /= np.linalg.norm(out, axis=1, keepdims=True)
            return out
        return run

    def describe(self):
        return {"version": "10.0.fake", "gpu": "CPU stand-in", "compute_capability": "0.0"}


def test_failed_trt_gate_leaves_the_engine_dir_byte_identical(tiny_run, engine_copy):
    from export.parity import ParityError
    from export.trt import export_trt

    (engine_copy / "gallery").mkdir()
    (engine_copy / "gallery" / "gallery.sqlite").write_bytes(b"evidence")
    before = tree_digest(engine_copy)
    toolkit = FakeToolkit(engine_copy, broken=True)
    with pytest.raises(ParityError, match="fp16 export fails the parity gate: image min cosine"):
        export_trt(tiny_run[1] / "best", engine_copy, max_batch=8, log=lambda *_: None, toolkit=toolkit)
    assert toolkit.built and not any(p.exists() for p in toolkit.built)  # plans were built, then discarded
    assert tree_digest(engine_copy) == before
    assert not list(engine_copy.parent.glob(".engine.trt-*"))  # no build dir left behind


def test_passed_trt_gate_swaps_in_named_plans_and_records_their_build(tiny_run, engine_copy, tmp_path):
    from export.trt import export_trt
    from sen_infer.engine.manifest import read_manifest, verify_files

    m = export_trt(tiny_run[1] / "best", engine_copy, max_batch=8, log=lambda *_: None,
                   toolkit=FakeToolkit(engine_copy, broken=False))
    assert (engine_copy / "image_encoder.fp16.plan").read_bytes() == b"fake plan of image_encoder.onnx"
    assert read_manifest(engine_copy).to_dict() == m.to_dict()
    assert "trt-fp16" in m.precisions and m.parity["trt-fp16"]["image_min_cosine"] >= 0.999
    assert m.tensorrt["version"] == "10.0.fake" and m.tensorrt["compute_capability"] == "0.0"
    assert set(m.tensorrt["plans"]) == {"image_encoder.fp16.plan", "text_encoder.fp16.plan"}
    verify_files(engine_copy, m)  # every listed file, plans included, matches
    # TensorRT is not installed here, so auto passes over the plans; the ONNX towers still verify
    assert Encoders(engine_copy, hash_cache=HashCache(tmp_path / "c.json")).backend == "onnx-cpu-int8"


def test_onnx_export_failing_mid_swap_never_touches_the_gallery(tiny_run, synth_learn, engine_copy, monkeypatch):
    import export.onnx as onnx_export

    g = engine_copy / "gallery"
    r = Retriever(engine_copy)
    images = [str(p) for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:3]]
    assert r.gallery.add_images(images).added == 3
    r.gallery.close()
    gallery_before = tree_digest(g)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).parent == engine_copy and Path(dst).name == "text_encoder.onnx":
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(onnx_export.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        onnx_export.export_engine_dir(tiny_run[1] / "best", engine_copy, int8=True, log=lambda *_: None)
    monkeypatch.undo()
    assert "image_encoder.onnx" in calls  # it failed part-way through the swap, not before it
    assert tree_digest(g) == gallery_before
    assert not list(engine_copy.parent.glob(".engine.build-*"))
    # the half-swapped dir is refused or consistent, never silently mixed; a re-run completes it
    onnx_export.export_engine_dir(tiny_run[1] / "best", engine_copy, int8=True, log=lambda *_: None)
    assert tree_digest(g) == gallery_before
    r = Retriever(engine_copy)
    assert len(r.query("a person", k=3)) == 3
