"""The reference recipe's pieces (Delong-liu-bupt/SEN run_SEN.sh), each against a hand computation:
its sampler, augmentation, parameter groups, per-epoch schedule, and the preset itself."""

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sen_train.config import REFERENCE, REQUIRED, load_config
from sen_train.loader import pad_crop, random_erasing
from sen_train.sampler import ReferenceIdentitySampler
from sen_train.train import EpochWarmupCosine, reference_param_groups

ROOT = Path(__file__).resolve().parents[1]


def test_reference_sampler_draws_1_or_2_per_identity_in_rounds_of_distinct_identities():
    pids = [p for p in range(40) for _ in range(3 + p % 4)]  # 40 identities, 3 to 6 captions each
    s = ReferenceIdentitySampler(pids, batch_size=16, num_instance=2, seed=3)
    draws = s.draws(0)
    sizes = {}
    for pid, group in draws:
        assert all(pids[i] == pid for i in group)
        sizes.setdefault(pid, set()).add(len(group))
    assert all(v in ({1}, {2}) for v in sizes.values())  # k is drawn once per identity per epoch
    assert set(Counter(next(iter(v)) for v in sizes.values())) == {1, 2}
    rounds = [draws[i : i + 8] for i in range(0, len(draws), 8)]  # P = 16 // 2 identities a round
    assert all(len(r) == 8 and len({pid for pid, _ in r}) == 8 for r in rounds)
    flat = [i for _, g in draws for i in g]
    assert len(flat) == len(set(flat))  # enough captions everywhere: nothing drawn twice
    batches = s.batches(0)
    assert [len(b) for b in batches[:-1]] == [16] * (len(batches) - 1) and 0 < len(batches[-1]) <= 16
    assert [i for b in batches for i in b] == flat  # the flat list cut in order, the last batch kept
    assert s.batches(0) == batches and s.batches(1) != batches  # a pure function of (seed, epoch)


def test_reference_augmentation_shapes_border_and_erasing_statistics():
    rng = np.random.default_rng(0)
    img = np.full((48, 16, 3), 200, np.uint8)
    shifted = [pad_crop(img, 10, rng) for _ in range(200)]
    assert all(x.shape == img.shape for x in shifted)
    black = [float((x == 0).all(axis=2).mean()) for x in shifted]
    assert max(black) <= 1 - (48 - 10) * (16 - 10) / (48 * 16) + 1e-9  # at most a 10-pixel shift each way
    # shifts dy, dx uniform in -10..10: E[black] = 1 - E[48 - |dy|] E[16 - |dx|] / 768, E|d| = 110 / 21
    expected = 1 - (48 - 110 / 21) * (16 - 110 / 21) / (48 * 16)
    assert abs(np.mean(black) - expected) < 0.05
    mean = (0.48145466, 0.4578275, 0.40821073)
    x = np.full((3, 48, 16), 7.0, np.float32)
    erased = []
    for _ in range(2000):
        y = random_erasing(x, rng, mean)
        hit = (y != 7.0).all(axis=0)
        if hit.any():
            assert np.allclose(y[:, hit], np.asarray(mean, np.float32)[:, None])
            erased.append(hit.mean())
    assert 0.45 < len(erased) / 2000 < 0.55  # p = 0.5 (seeded: the same draws on every machine)
    # the rectangle's area is U(0.02, 0.4) of the image, up to rounding of its sides
    assert 0.01 < min(erased) and max(erased) < 0.45 and 0.15 < np.mean(erased) < 0.25


def test_reference_param_groups_by_name():
    import torch

    from sen_train.model import SEN

    cfg = load_config("tiny", ["param_groups=reference", "lr=1e-5", "new_module_lr_mult=5", "weight_decay=4e-5",
                               "loss.mlm=1"])
    model = SEN(cfg, num_classes=10)
    groups = {g["name"]: (g["lr"], g["weight_decay"]) for g in reference_param_groups(model, cfg)}
    assert len(groups) == sum(1 for p in model.parameters() if p.requires_grad)
    want = {
        "tir.cross.in_proj_weight": (5e-5, 4e-5), "tir.cross.in_proj_bias": (2e-5, 0.0),
        "classifier.weight": (5e-5, 4e-5), "classifier.bias": (5e-5, 0.0),
        "tir.vis_in.weight": (1e-5, 4e-5), "tir.head.weight": (1e-5, 4e-5), "tir.mask_token": (1e-5, 4e-5),
        "clip.visual.conv1.weight": (1e-5, 4e-5), "clip.ln_final.bias": (2e-5, 0.0),
        "clip.ln_final.weight": (1e-5, 4e-5),
    }
    for name, value in want.items():
        assert groups[name] == pytest.approx(value), name
    assert all(v == pytest.approx((5e-5, 4e-5)) for n, v in groups.items()
               if n.startswith(("tir.blocks.", "mlm.")) and "bias" not in n)
    torch.optim.Adam(reference_param_groups(model, cfg), eps=1e-3)  # a valid optimiser


def test_reference_schedule_is_per_epoch_from_a_tenth():
    s = EpochWarmupCosine(5, 60)
    got = []
    for e in range(60):
        s.epoch = e
        got.append(s(12345))  # the step does not matter, the epoch does
    assert got[:6] == pytest.approx([0.1, 0.28, 0.46, 0.64, 0.82, 1.0])
    assert got[59] == pytest.approx(0.5 * (1 + math.cos(math.pi * 54 / 55)))


def test_preset_is_the_reference_table_and_refuses_to_start_without_weights(tmp_path):
    cfg = load_config("sen-vit-b-16").to_dict()
    for key, value in REFERENCE.items():
        if isinstance(value, dict):
            for k, v in value.items():
                assert cfg[key][k] == (list(v) if isinstance(v, list) else v) or list(cfg[key][k]) == v, (key, k)
        else:
            assert cfg[key] == value, key
    assert cfg["model"]["pretrained"] == REQUIRED
    r = subprocess.run([sys.executable, "-m", "sen_train.train", "--config", "sen-vit-b-16", "--data", str(tmp_path),
                        "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "model.pretrained=" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()


def test_two_steps_with_every_reference_option(synth_learn, tmp_path):
    from sen_train.train import train

    cfg = load_config("tiny", ["sampler=reference", "augment=reference", "param_groups=reference", "adam_eps=1e-3",
                               "lr_schedule=epoch", "max_steps=2", "loss.prune_p=0.2"])
    result = train(cfg, str(synth_learn), str(tmp_path / "run"), progress=False)
    assert result["steps"] == 2


def test_papers_protocol_is_reported_apart_and_labelled(synth_learn, tmp_path):
    import json

    from sen_train.train import PAPERS_PROTOCOL, train

    cfg = load_config("tiny", ["epochs=1", "select=test-every-epoch"])
    result = train(cfg, str(synth_learn), str(tmp_path / "run"), progress=False)
    papers = result["papers_protocol"]
    assert papers["protocol"] == PAPERS_PROTOCOL and "optimistic" in papers["protocol"] and papers["epoch"] == 1
    assert result["best_val"]["epoch"] == 1  # best/ is still chosen on val
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("split") == "test" and r.get("protocol") == PAPERS_PROTOCOL for r in logged)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["papers_protocol"]["R1"] == papers["R1"]
