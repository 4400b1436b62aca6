"""Export: a tiny checkpoint through the parity gate into an engine dir that onnxruntime runs."""

import json
import os
import subprocess
import sys

import onnxruntime as ort
import open_clip
import pytest
import torch

from export.onnx import ExportError, export_engine_dir
from export.parity import ParityError
from export.towers import ImageTower, TextTower
from sen_infer.engine.manifest import ManifestError, read_manifest, verify_files
from sen_train.checkpoint import load_model

from helpers import ROOT  # noqa: E402
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def ckpt(tiny_run):
    return tiny_run[1] / "best"



def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_engine_dir_contents_and_manifest(engine, ckpt):
    out = engine
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "image_encoder.onnx", "text_encoder.onnx", "image_encoder.int8.onnx",
            "text_encoder.int8.onnx", "tokenizer.json"} <= names
    m = read_manifest(out)
    assert m.format_version.startswith("1.") and m.precisions == ["fp32", "int8"]
    assert m.image_size == (192, 64) and m.embed_dim == 128 and m.context_length == 77
    assert (m.sot_id, m.eot_id) == (49406, 49407)
    verify_files(out, m)
    for precision, bar in (("fp32", 0.9999), ("int8", 0.99)):
        f = m.parity[precision]
        assert f["image_min_cosine"] >= bar and f["text_min_cosine"] >= bar
        assert abs(f["probe_R1_export"] - f["probe_R1_torch"]) <= f["probe_R1_tolerance"]
    # fp32 allows no R@1 change beyond near-ties explained by the measured score error (usually none)
    fp32 = m.parity["fp32"]
    assert fp32["probe_R1_tolerance"] == 100.0 * fp32["probe_R1_ties"] / fp32["probe_captions"]
    assert m.parity["export_seconds"] > 0
    assert not list(out.parent.glob(".tiny.build-*"))  # the temporary build dir is gone


def test_dynamic_batch_agrees_with_torch(engine, ckpt):
    out = engine
    model = load_model(ckpt)
    session = _session(out / "image_encoder.onnx")
    torch.manual_seed(0)
    for batch in (1, 3, 17):
        x = torch.randn(batch, 3, 192, 64)
        got = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            want = model.encode_image(x).numpy()
        assert got.shape == (batch, 128)
        assert (got * want).sum(axis=1).min() > 0.9999


def test_every_text_length_agrees_with_torch(engine, ckpt):
    out = engine
    model = load_model(ckpt)
    session = _session(out / "text_encoder.onnx")
    full = open_clip.tokenize(["a woman in a red coat carrying a black backpack " * 8,
                               "a man", "grey hoodie and blue jeans"]).int()
    for length in range(1, 78):
        tokens = full[:, :length].clone()
        tokens[0, -1] = 49407  # the long caption truncated to `length` with end-of-text last
        got = session.run(None, {"tokens": tokens.numpy()})[0]
        with torch.no_grad():
            want = TextTower(model)(tokens).numpy()
        assert (got * want).sum(axis=1).min() > 0.9999, length
    # a short query padded to its length or to 77 gives the same embedding
    short = open_clip.tokenize(["a man in red"]).int()
    a = session.run(None, {"tokens": short[:, :6].numpy()})[0]
    b = session.run(None, {"tokens": short.numpy()})[0]
    assert float((a * b).sum()) > 0.99999


class WrongNormalisation(ImageTower):
    """A deliberately broken export: the graph re-normalises an already normalised image."""

    def forward(self, image):
        return super().forward((image - 0.45) / 0.27)


def test_broken_export_is_refused_and_leaves_nothing(ckpt, tmp_path):
    out = tmp_path / "broken"
    with pytest.raises(ParityError, match=r"fp32 export fails the parity gate: image min cosine 0\.\d+ < 0.9999"):
        export_engine_dir(ckpt, out, image_tower=WrongNormalisation, log=lambda *_: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_other_model_refused_without_force_and_gallery_kept(engine, ckpt, tmp_path):
    out = tmp_path / "engine"
    export_engine_dir(ckpt, out, log=lambda *_: None)
    (out / "gallery").mkdir()
    (out / "gallery" / "gallery.sqlite").write_bytes(b"precious")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="another model.*--force"):
        export_engine_dir(ckpt, out, log=lambda *_: None)
    export_engine_dir(ckpt, out, force=True, log=lambda *_: None)
    assert (out / "gallery" / "gallery.sqlite").read_bytes() == b"precious"
    assert read_manifest(out).fingerprint != "0" * 64


def test_unknown_major_version_is_refused(engine, tmp_path):
    out = engine
    data = json.loads((out / "manifest.json").read_text())
    for version, ok in (("1.7", True), ("2.0", False)):
        (tmp_path / "manifest.json").write_text(json.dumps({**data, "format_version": version}))
        if ok:
            assert read_manifest(tmp_path).format_version == "1.7"
        else:
            with pytest.raises(ManifestError, match="format_version 2.0 is not supported.*reads 1.x"):
                read_manifest(tmp_path)


def test_cli_bad_checkpoint_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "export.onnx", "--ckpt", str(tmp_path), "--out", str(tmp_path / "e")],
                       cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1


def test_trt_on_a_cpu_box_exits_2_with_one_line(ckpt, tmp_path):
    try:
        import tensorrt  # noqa: F401
        has_trt = torch.cuda.is_available()
    except ImportError:
        has_trt = False
    if has_trt:
        pytest.skip("TensorRT and a GPU are present: see the gpu-marked test")
    r = subprocess.run([sys.executable, "-m", "export.trt", "--ckpt", str(ckpt), "--out", str(tmp_path / "e")],
                       cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and ("TensorRT is not installed" in lines[0] or "no CUDA GPU" in lines[0])
    assert not (tmp_path / "e").exists()


@pytest.mark.gpu
def test_trt_engines_pass_the_gate_on_a_gpu(ckpt, tmp_path):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from export.trt import export_trt

    m = export_trt(ckpt, tmp_path / "e", max_batch=64, log=lambda *_: None)
    assert "trt-fp16" in m.precisions and m.parity["trt-fp16"]["image_min_cosine"] >= 0.999
    assert m.tensorrt["compute_capability"] and (tmp_path / "e" / "image_encoder.fp16.plan").is_file()
