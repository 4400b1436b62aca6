"""Training end to end on SynthPEDES: resume equivalence, learning, checkpoints, CLI errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sen_train.config import load_config
from sen_train.train import train

from helpers import run_cli  # noqa: E402


def _run(*args):
    return run_cli(*args, module=None, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}, timeout=None)


def test_resume_equals_uninterrupted_run(synth_small, tmp_path):
    # 2 steps + resume + 2 steps == 4 steps: model, optimizer, scheduler, sampler and RNG all restored
    base = ["batch_size=16", "loss.mlm=1"]
    train(load_config("tiny", base + ["max_steps=4"]), synth_small, tmp_path / "a", progress=False)
    train(load_config("tiny", base + ["max_steps=2"]), synth_small, tmp_path / "b", progress=False)
    state = json.loads((tmp_path / "b" / "last" / "train_state.json").read_text())
    assert state["progress"]["step"] == 2 and state["sampler"]["skip"] == 2
    train(load_config("tiny", base + ["max_steps=4"]), synth_small, tmp_path / "b", resume=True, progress=False)
    a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    one_step = load_file(str(tmp_path / "b" / "last" / "train_state.safetensors"))
    assert any(k.startswith("optim.") for k in one_step)


def test_tiny_config_learns(synth_learn, tiny_run):
    result, run = tiny_run
    chance = 100 / 24  # R1 by chance: 4 relevant among 24 val identities x 4 images
    val, test = result["best_val"], result["test"]
    assert val["R1"] > 2.5 * chance, val
    assert test["R1"] > 2 * chance, test
    for name in ("best", "last"):
        assert (run / name / "model.safetensors").is_file()
        assert (run / name / "config.json").is_file()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("split") == "val" for r in log) and log[-1]["split"] == "test"
    assert all(k in log[0] for k in ("sdm", "id", "triplet", "tir", "loss", "lr"))
    # the evaluate CLI reproduces the test figures of the best checkpoint
    r = _run("-m", "sen_train.evaluate", "--ckpt", str(run / "best"), "--data", str(synth_learn),
             "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert set(metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert metrics["R1"] == pytest.approx(test["R1"])


def test_cli_refuses_existing_run_and_missing_resume(synth_small, tmp_path):
    (tmp_path / "run" / "last").mkdir(parents=True)
    r = _run("-m", "sen_train.train", "--config", "tiny", "--data", str(synth_small), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "already holds a run; pass --resume" in r.stderr
    r = _run("-m", "sen_train.train", "--data", str(synth_small), "--out", str(tmp_path / "empty"), "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_cli_config_errors(synth_small, tmp_path):
    r = _run("-m", "sen_train.train", "--config", "tiny", "--data", str(synth_small), "--out", str(tmp_path / "x"),
             "--set", "loss.nope=1")
    assert r.returncode == 2 and "unknown config key 'loss.nope'" in r.stderr
    r = _run("-m", "sen_train.train", "--config", "tiny", "--data", str(synth_small), "--out", str(tmp_path / "x"),
             "--set", "batch_size=2", "--set", "k_per_id=2")
    assert r.returncode == 2 and "at least two identities" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_empty_caption_is_a_clear_error(synth_small, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "imgs").symlink_to(synth_small / "imgs")
    records = json.loads((synth_small / "reid_raw.json").read_text())
    records[5]["captions"][1] = "  "
    (data / "reid_raw.json").write_text(json.dumps(records))
    r = _run("-m", "sen_train.train", "--config", "tiny", "--data", str(data), "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {data / 'reid_raw.json'}: record 5: caption 1 is empty"


def test_cli_missing_weights_file(synth_small, tmp_path):
    r = _run("-m", "sen_train.train", "--config", "tiny", "--data", str(synth_small), "--out", str(tmp_path / "r"),
             "--set", f"model.pretrained={tmp_path / 'missing.pt'}")
    assert r.returncode == 2 and "neither a weights file nor a pretrained tag" in r.stderr
