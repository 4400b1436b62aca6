"""Static QDQ int8: the sweep ranks nodes by measured sensitivity, excluded nodes stay fp32, the gate
result is recorded, and a tower int8 cannot serve is refused with the figures."""

import json

import numpy as np
import onnx
import pytest
import torch

from export.onnx import export_engine_dir
from export.parity import ParityError
from export.quantize import SWEEP_FILE, QuantizeConfig, QuantizeError, quantised_nodes
from export.towers import ImageTower
from sen_infer.engine.encoders import Encoders
from sen_infer.engine.manifest import read_manifest


@pytest.fixture(scope="module")
def ckpt(tiny_run):
    return tiny_run[1] / "best"


def _dq_fed(model) -> dict[str, list[str]]:
    """node name -> the inputs it reads from a DequantizeLinear (empty list: the node computes in fp32)."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name: [i for i in n.input if i in dq] for n in model.graph.node}


def _planted_matrices(dim: int):
    """W and W^-1 with condition number 100: exact to ~1e-5 in fp32, but an int8 rounding of the
    activation between them (or of either weight) is multiplied by up to 100 on the way out."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    s = np.logspace(0, -2, dim)
    return (q * s) @ q.T, (q / s) @ q.T


class IllConditioned(ImageTower):
    """A real image tower followed by x @ W @ W^-1 (the identity in exact arithmetic)."""

    def __init__(self, model):
        super().__init__(model)
        w, w_inv = _planted_matrices(int(model.embed_dim))
        self.register_buffer("w", torch.tensor(w, dtype=torch.float32))
        self.register_buffer("w_inv", torch.tensor(w_inv, dtype=torch.float32))

    def forward(self, image):
        return torch.nn.functional.normalize((super().forward(image) @ self.w) @ self.w_inv, dim=-1)


def _planted_nodes(model, dim: int) -> set[str]:
    """Names of the two MatMuls whose weights are W and W^-1 (found by value, not by exporter naming)."""
    w, w_inv = _planted_matrices(dim)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    found = set()
    for n in model.graph.node:
        for i in n.input:
            a = inits.get(i)
            if a is not None and a.shape == w.shape and (np.allclose(a, w, atol=1e-5) or
                                                         np.allclose(a, w_inv, atol=1e-3)):
                found.add(n.name)
    return found


def test_static_int8_engine_records_the_sweep_and_the_gate(engine):
    out = engine
    m = read_manifest(out)
    assert SWEEP_FILE in m.files  # hashed like the towers: an edited record is refused by verify_files
    sweep = json.loads((out / SWEEP_FILE).read_text())
    assert sweep["method"] == "static-qdq" and m.parity["int8"]["quantisation"]["method"] == "static-qdq"
    assert sweep["gate"]["image_min_cosine"] == m.parity["int8"]["image_min_cosine"] >= 0.99
    for tower, file in (("image", "image_encoder.int8.onnx"), ("text", "text_encoder.int8.onnx")):
        rec = sweep["towers"][tower]
        model = onnx.load(str(out / file))
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not dynamic quantisation
        ranked = rec["ranked"]
        assert len(ranked) == rec["quantised_nodes"] > 0
        assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
        assert all(a["gain"] >= b["gain"] for a, b in zip(ranked, ranked[1:]))
        fed = _dq_fed(model)
        for name in rec["excluded"]:
            assert fed[name] == [], f"{name} is listed as fp32 but reads int8 inputs"
        assert set(quantised_nodes(model)) == {r["node"] for r in ranked} - set(rec["excluded"])
        assert rec["probe_min_cosine"] >= 0.99
    # the SDK runs it
    enc = Encoders(out, backend="onnx-cpu-int8")
    assert enc.encode_text(["a man in a red jacket"]).shape == (1, 128)


def test_planted_sensitive_nodes_rank_first_and_stay_fp32(ckpt, tmp_path):
    out = tmp_path / "planted"
    m = export_engine_dir(ckpt, out, int8=True, image_tower=IllConditioned, log=lambda *_: None)
    planted = _planted_nodes(onnx.load(str(out / "image_encoder.onnx")), m.embed_dim)
    assert len(planted) == 2
    rec = json.loads((out / SWEEP_FILE).read_text())["towers"]["image"]
    # all int8, the planted pair ruins the tower; the sweep finds exactly them at the top
    assert rec["greedy_steps"][0]["min_cosine"] < 0.99
    assert {r["node"] for r in rec["ranked"][:2]} == planted
    assert planted <= set(rec["excluded"])
    fed = _dq_fed(onnx.load(str(out / "image_encoder.int8.onnx")))
    assert all(fed[name] == [] for name in planted)
    assert m.parity["int8"]["image_min_cosine"] >= QuantizeConfig().target


def test_a_tower_int8_cannot_serve_is_refused(ckpt, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(ParityError, match=r"int8 refused: static QDQ \(.*image min cosine 0\.\d+ < 0\.99.*\) "
                                          r"and dynamic \(.*image min cosine"):
        export_engine_dir(ckpt, out, int8=True, image_tower=IllConditioned, log=lambda *_: None,
                          quantize=QuantizeConfig(max_excluded=0))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_calibration_method_is_refused():
    with pytest.raises(QuantizeError, match="unknown calibration method 'kl'"):
        QuantizeConfig(method="kl")
