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

from helpers import ROOT  # noqa: E402


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


# ---- the reference TIR decoder --------------------------------------------------------------------

def _reference_decoder_model():
    import torch

    from sen_train.model import SEN

    torch.manual_seed(0)
    cfg = load_config("tiny", ["model.tir_decoder=reference", "model.tir_width=64", "model.tir_heads=4",
                               "model.tir_layers=2"])
    return SEN(cfg, num_classes=4).double()


def test_reference_tir_decoder_shape_masking_and_positions():
    import torch

    from sen_train.model import sincos_2d

    model = _reference_decoder_model()
    assert model.num_patches == 48 and model.visible_count() == 14  # int(48 * 0.3): truncated, as the reference
    cfg = load_config("tiny", ["model.tir_decoder=project"])
    from sen_train.model import SEN

    assert SEN(cfg, 4).visible_count() == 14  # round(14.4): the project rounds
    keep, mask = model.random_keep(3, "cpu")
    assert keep.shape == (3, 14) and mask.sum(dim=1).tolist() == [34.0] * 3
    vis = torch.randn(3, 15, model.embed_dim, dtype=torch.float64)
    txt = torch.randn(3, 77, model.embed_dim, dtype=torch.float64)
    out = model.tir(vis, keep, txt, model.num_patches)
    assert out.shape == (3, 48, 16 * 16 * 3)
    # the fixed positions, by hand: width 8 -> frequencies 1 and 10000^-1/2; column half first, CLS zero
    table = sincos_2d(8, (2, 3))
    assert table[0].abs().max() == 0
    r, c = 1, 2  # token 1 + 1 * 3 + 2
    want = [math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100),
            math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100)]
    assert table[6].tolist() == pytest.approx(want, abs=1e-6)
    assert not model.tir.pos.requires_grad and "tir.pos" not in model.state_dict()  # fixed, rebuilt, not stored


def test_reference_tir_decoder_every_token_sees_all_text_without_residual():
    """With every text token equal, the attention weights are uniform and the cross-attention output
    is the same for every query: without a residual the decoder's output then no longer depends on the
    image at all. With distinct text, a padding position changes the output (no padding mask)."""
    import torch

    model = _reference_decoder_model()
    keep, _ = model.random_keep(2, "cpu")
    torch.manual_seed(1)
    same_txt = torch.randn(2, 1, model.embed_dim, dtype=torch.float64).expand(-1, 77, -1)
    a = model.tir(torch.randn(2, 15, model.embed_dim, dtype=torch.float64), keep, same_txt, 48)
    b = model.tir(torch.randn(2, 15, model.embed_dim, dtype=torch.float64), keep, same_txt, 48)
    assert torch.allclose(a, b, atol=1e-12)  # float64: equality up to rounding, not a tuned margin
    vis = torch.randn(2, 15, model.embed_dim, dtype=torch.float64)
    txt = torch.randn(2, 77, model.embed_dim, dtype=torch.float64)
    base = model.tir(vis, keep, txt, 48)
    padded = txt.clone()
    padded[:, 70] = torch.randn(2, model.embed_dim, dtype=torch.float64)  # where the caption's padding is
    changed = (model.tir(vis, keep, padded, 48) - base).abs().amax(dim=-1)
    assert (changed > 1e-6).all()  # every patch, visible or masked, sees the padding token too
    # the project's decoder masks padding out: the same perturbation changes nothing there
    from sen_train.model import SEN

    torch.manual_seed(0)
    project = SEN(load_config("tiny"), 4).double()
    pvis = torch.randn(2, 15, 128, dtype=torch.float64)
    ptxt = torch.randn(2, 77, 128, dtype=torch.float64)
    pad = torch.zeros(2, 77, dtype=torch.bool)
    pad[:, 20:] = True
    p0 = project.tir(pvis, keep, ptxt, pad, 48)
    ptxt[:, 70] = torch.randn(2, 128, dtype=torch.float64)
    assert torch.equal(project.tir(pvis, keep, ptxt, pad, 48), p0)


def test_reference_grayscale_and_parameter_groups_of_the_reference_decoder():
    import torch

    model = _reference_decoder_model()
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    g = model.grayscale_reference(x)
    assert g.shape == x.shape and torch.allclose(g, torch.full_like(g, 0.2989 * 0.5 - 0.5870 + 0.1140 * 2))
    cfg = model.cfg
    cfg.param_groups, cfg.lr, cfg.new_module_lr_mult, cfg.weight_decay = "reference", 1e-5, 5.0, 4e-5
    groups = {g["name"]: (g["lr"], g["weight_decay"]) for g in reference_param_groups(model, cfg)}
    # names with "cross" in the reference (cross_attn_Text, cross_modal_transformer_mae) at x5
    # (width 64 queries, 128-wide text keys: separate q/k/v projections)
    assert groups["tir.cross.q_proj_weight"] == groups["tir.cross.k_proj_weight"] == pytest.approx((5e-5, 4e-5))
    assert groups["tir.blocks.layers.0.linear1.weight"] == pytest.approx((5e-5, 4e-5))
    # decoder_embed, norm_1..7, decoder_pred, mask_token at x1; every bias x2 without decay
    for name in ("tir.embed.weight", "tir.norm_image.weight", "tir.norm_attended.weight", "tir.head.weight",
                 "tir.mask_token"):
        assert groups[name] == pytest.approx((1e-5, 4e-5)), name
    assert groups["tir.embed.bias"] == pytest.approx((2e-5, 0.0))


# ---- NLTK tagging ---------------------------------------------------------------------------------

def _nltk_data(root: Path, tags: dict[str, str]) -> Path:
    """An nltk_data dir in NLTK 3.9's own file formats: a perceptron tagger whose tag dictionary holds
    `tags` (no learned weights), and an English sentence splitter with empty parameters."""
    import json

    tagger = root / "taggers" / "averaged_perceptron_tagger_eng"
    tagger.mkdir(parents=True)
    (tagger / "averaged_perceptron_tagger_eng.weights.json").write_text("{}")
    (tagger / "averaged_perceptron_tagger_eng.tagdict.json").write_text(json.dumps(tags))
    (tagger / "averaged_perceptron_tagger_eng.classes.json").write_text(json.dumps(sorted(set(tags.values()))))
    punkt = root / "tokenizers" / "punkt_tab" / "english"
    punkt.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (punkt / name).write_text("")
    return root


CAPTION_TAGS = {"She": "PRP", "wears": "VBZ", "a": "DT", "long-sleeved": "JJ", "T-shirt": "NN", ".": ".",
                "Her": "PRP$", "bag": "NN", "is": "VBZ", "black": "JJ"}


def test_nltk_tagger_prunes_with_nltk_tokens(tmp_path, monkeypatch):
    nltk = pytest.importorskip("nltk")
    from sen_train.pruning import TaggerUnavailable, pruned_captions

    caption = "She wears a long-sleeved T-shirt. Her bag is black."
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    with pytest.raises(TaggerUnavailable, match="averaged_perceptron_tagger_eng punkt_tab"):
        pruned_captions([caption], tmp_path / "c0.json", progress=False, tagger="nltk")
    monkeypatch.setattr(nltk.data, "path", [str(_nltk_data(tmp_path / "nltk_data", CAPTION_TAGS))])
    out = pruned_captions([caption], tmp_path / "c.json", progress=False, tagger="nltk")
    # NLTK keeps hyphenated words whole and splits the sentence's full stop off "T-shirt."
    assert out[caption] == "She long-sleeved T-shirt Her bag black"


def test_preset_aliases_and_the_vit_l_preset():
    from sen_train.backbone import model_config, round_image_size

    base = load_config("sen-vit-b-16").to_dict()
    assert load_config("sen-vit-b-16-icfg").to_dict() == base == load_config("sen-vit-b-16-rstp").to_dict()
    large = load_config("sen-vit-l-14")
    assert large.model.name == "ViT-L-14-quickgelu" and model_config(large.model.name).get("quick_gelu")
    patch = model_config(large.model.name)["vision_cfg"]["patch_size"]
    assert tuple(large.model.image_size) == round_image_size((384, 128), patch) == (378, 126)
    assert large.model.tir_width == model_config(large.model.name)["embed_dim"] == 768
    assert large.model.pretrained == REQUIRED and large.sampler == "reference"


def test_reference_preset_from_openai_torchscript_weights_two_steps(synth_learn, tmp_path, monkeypatch):
    """The preset as a user runs it, on a 2-layer QuickGELU CLIP saved the way OpenAI released theirs
    (a TorchScript archive with its scalar buffers); every reference option on, NLTK tagging included."""
    import json

    import torch

    nltk = pytest.importorskip("nltk")
    from sen_train.backbone import create_clip
    from sen_train.train import train

    class Release(torch.nn.Module):
        """OpenAI's layout: the CLIP's modules and tensors at the top level, plus three scalar buffers."""

        def __init__(self, clip):
            super().__init__()
            for name, child in clip.named_children():
                self.add_module(name, child)
            for name, p in clip.named_parameters(recurse=False):
                self.register_parameter(name, p)
            for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
                self.register_buffer(name, torch.tensor(value))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    clip, _ = create_clip("tiny-quickgelu", (224, 224))
    weights = tmp_path / "ViT-tiny-16.pt"
    torch.jit.script(Release(clip)).save(str(weights))
    monkeypatch.setattr(nltk.data, "path", [str(_nltk_data(tmp_path / "nltk_data", CAPTION_TAGS))])
    cfg = load_config("sen-vit-b-16", ["model.name=tiny-quickgelu", f"model.pretrained={weights}",
                                       "batch_size=32", "max_steps=2", "eval_batch_size=64"])
    assert (cfg.sampler, cfg.augment, cfg.param_groups, cfg.lr_schedule, cfg.model.tir_decoder, cfg.loss.pos_tagger) \
        == ("reference", "reference", "reference", "epoch", "reference", "nltk")
    result = train(cfg, str(synth_learn), str(tmp_path / "run"), progress=False)
    assert result["steps"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["pretrained"] == str(weights) and saved["adam_eps"] == 1e-3
    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    source = clip.state_dict()["token_embedding.weight"]
    # two Adam steps at lr <= 1e-5 move a weight by ~1e-5; a fresh init differs by ~1e-2
    assert (trained["clip.token_embedding.weight"] - source).abs().max() < 1e-3
    assert (Path(synth_learn) / ".sen_cache" / "pos_tags_nltk.json").is_file()


def test_published_anchors_only_for_the_real_benchmarks():
    from sen_train.anchors import benchmark_of, format_anchors
    from sen_train.data import Sample

    def split(ids, images, per_image=2):
        return [Sample(i % ids, f"/x/{i}.jpg", f"caption {i} {k}") for i in range(images) for k in range(per_image)]

    assert benchmark_of("CUHK-PEDES", split(1000, 3074)) == "CUHK-PEDES"
    assert benchmark_of("RSTPReid", split(200, 1000)) == "RSTPReid"
    assert benchmark_of("ICFG-PEDES", split(1000, 19848, 1)) == "ICFG-PEDES"
    # SynthPEDES is written in CUHK-PEDES's format: its figures must not stand beside the paper's
    assert benchmark_of("CUHK-PEDES", split(48, 192)) is None
    assert benchmark_of("JSONL", split(1000, 3074)) is None
    text = format_anchors({"R1": 70.0, "mAP": 60.0}, "CUHK-PEDES")
    assert "75.00" in text and "67.23" in text and "75.94" in text and "70.00" in text and "optimistic" in text


def test_docs_table_reference_column_is_what_the_preset_resolves_to():
    """Every `key=value` in docs/training.md's `sen-vit-b-16` column holds for the resolved preset."""
    import re

    text = (ROOT / "docs" / "training.md").read_text()
    table = text[text.index("| component | reference (file) |"):]
    table = table[: table.index("\n\n")]
    cfg = load_config("sen-vit-b-16").to_dict()
    checked = []
    for line in table.splitlines()[2:]:
        column = line.split(" | ")[2]  # component | reference | sen-vit-b-16 | project default
        for key, value in re.findall(r"`([a-z_.]+)=([^`]+)`", column):
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert str(node) == value or float(node) == float(value), (key, value, node)
            checked.append(key)
    assert {"model.name", "batch_size", "sampler", "augment", "param_groups", "adam_eps", "lr_schedule",
            "loss.prune_p", "loss.pos_tagger", "model.tir_decoder"} <= set(checked)
