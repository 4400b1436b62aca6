"""Configuration: presets, YAML with a base preset, `--set` overrides, clear errors, round trip."""

import pytest

from sen_train.config import ConfigError, TrainConfig, load_config


def test_published_defaults():
    cfg = load_config("sen-vit-b-16")
    assert (cfg.model.name, cfg.model.image_size, cfg.lr, cfg.epochs, cfg.warmup_epochs) == \
        ("ViT-B-16-quickgelu", (384, 128), 1e-5, 60, 5)
    assert (cfg.loss.tau, cfg.loss.margin, cfg.loss.triplet, cfg.loss.tir, cfg.loss.prune_p) == (0.02, 0.05, 10, 10, 0.2)
    assert cfg.new_module_lr_mult == 5.0 and cfg.model.tir_layers == 4 and cfg.model.tir_width == 512


def test_yaml_base_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("base: tiny\nepochs: 7\nloss: {tir: 0, mlm: 0.5}\nmodel: {pretrained_grid: [24, 8]}\n")
    cfg = load_config(str(path), ["loss.tir=2", "model.image_size=96,32", "amp=off"])
    assert cfg.model.name == "tiny" and cfg.epochs == 7
    assert cfg.loss.tir == 2.0 and cfg.loss.mlm == 0.5
    assert cfg.model.image_size == (96, 32) and cfg.model.pretrained_grid == (24, 8)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("overrides,message", [
    (["nope=1"], "unknown config key 'nope'"),
    (["loss.nope=1"], "unknown config key 'loss.nope'"),
    (["epochs=2.5"], "epochs: expected int"),
    (["loss=3"], "'loss' is a section"),
    (["loss.sdm=0", "loss.id=0", "loss.triplet=0"], "at least one retrieval loss"),
    (["batch_size=30", "k_per_id=4"], "must be a multiple of k_per_id"),
    (["amp=maybe"], "amp must be"),
    (["epochs"], "is not key=value"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides)


def test_unknown_preset_or_file():
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("huge")
