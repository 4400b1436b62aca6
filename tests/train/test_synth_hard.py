"""The `hard` SynthPEDES difficulty: near shades, patterned tops, fine-grained negatives, harder captions."""

import hashlib
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from sen_train.data.attributes import ALL_COLOURS, COLOURS, NEAR_COLOURS, SHADES, sample_attributes
from sen_train.data.captions import PATTERN_PHRASES, add_typos, make_caption
from sen_train.data.render import Pose, render_person
from sen_train.data.synth import SynthConfig, generate
from sen_train.data.synth_video import dataset_difficulty

from helpers import ROOT  # noqa: E402
STANDARD_DIGEST = "d67a4c2691d05082fe000ac24791e76928371033b8bdaf789d829ec07992f374"  # before the hard mode existed


@pytest.fixture(scope="module")
def synth_hard(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_hard")
    generate(SynthConfig(ids=40, seed=5, hard_negative_rate=0.5, difficulty="hard"), out, workers=1, progress=False)
    return out


def test_hard_dataset_uses_shades_and_patterns_and_records_its_difficulty(synth_hard):
    truth = json.loads((synth_hard / "attributes.json").read_text())
    assert truth["config"]["difficulty"] == "hard" and dataset_difficulty(synth_hard) == "hard"
    attrs = [p["attributes"] for p in truth["identities"]]
    assert {a["top_pattern"] for a in attrs} == {"plain", "striped", "checked", "logo"}
    used = {a[k] for a in attrs for k in ("top_colour", "bottom_colour", "bag_colour")}
    assert used & set(SHADES), "a 40-identity hard set should use some of the near shades"
    for a in attrs:
        assert (a["pattern_colour"] is None) == (a["top_pattern"] == "plain")
        assert a["pattern_colour"] != a["top_colour"]


def test_hard_negatives_differ_by_one_fine_grained_detail(synth_hard):
    truth = json.loads((synth_hard / "attributes.json").read_text())
    by_id = {p["id"]: p["attributes"] for p in truth["identities"]}
    negatives = [p for p in truth["identities"] if p["hard_negative_of"] is not None]
    assert len(negatives) >= 8
    for p in negatives:
        base, mine = by_id[p["hard_negative_of"]], p["attributes"]
        diff = {k for k in mine if mine[k] != base[k]}
        assert p["changed"] in diff and diff <= {p["changed"], "pattern_colour"}, (p, diff)
        if p["changed"].endswith("_colour"):
            assert mine[p["changed"]] in NEAR_COLOURS[base[p["changed"]]]


def test_standard_difficulty_draws_nothing_new():
    for seed in range(20):
        a = sample_attributes(np.random.default_rng(seed))
        assert a.top_pattern == "plain" and a.pattern_colour is None
        assert {a.top_colour, a.bottom_colour, a.bag_colour, a.hat_colour} <= set(COLOURS)


def test_standard_dataset_bytes_are_those_of_before_the_hard_mode(tmp_path):
    """Golden digest of a small standard set: published SynthPEDES results must stay reproducible."""
    generate(SynthConfig(ids=6, seed=11, images_per_id=2), tmp_path, workers=1, progress=False)
    captions = json.loads((tmp_path / "reid_raw.json").read_text())
    digest = hashlib.sha256(json.dumps(captions).encode()).hexdigest()
    assert digest == STANDARD_DIGEST


def test_pattern_is_drawn_inside_the_torso_only():
    base = sample_attributes(np.random.default_rng(2), "hard")
    plain = replace(base, top_type="t-shirt", top_colour="navy", top_pattern="plain", pattern_colour=None,
                    scarf_colour=None, bag_type="none")
    pose = Pose("front", 0.0)
    img0, mask0 = render_person(plain, pose, 300)
    for pattern in ("striped", "checked", "logo"):
        img, mask = render_person(replace(plain, top_pattern=pattern, pattern_colour="white"), pose, 300)
        changed = (img != img0).any(axis=2)
        assert changed.sum() > 50, pattern
        assert (mask == mask0).all()
        ys, _ = np.nonzero(changed)
        assert ys.min() >= int(0.17 * 300) - 1 and ys.max() <= int(0.51 * 300) + 1  # shoulders to hips
        assert (img[changed] == ALL_COLOURS["white"]).all()
    back_logo, _ = render_person(replace(plain, top_pattern="logo", pattern_colour="white"), Pose("back", 0.0), 300)
    assert (back_logo == render_person(plain, Pose("back", 0.0), 300)[0]).all()  # a chest print is not seen from behind


def test_hard_captions_describe_the_pattern_in_several_ways():
    a = replace(sample_attributes(np.random.default_rng(4), "hard"), top_colour="maroon", top_pattern="striped",
                pattern_colour="white")
    rng = np.random.default_rng(0)
    captions = [make_caption(a, "front", rng, hard=True) for _ in range(60)]
    with_stripes = [c for c in captions if "stripe" in c.lower()]
    assert len(with_stripes) > 30
    assert any("maroon" in c or "burgundy" in c or "dark red" in c for c in with_stripes)
    forms = {f.split("{n}")[0].replace("{c}", "").replace("{p}", "").strip() for f in PATTERN_PHRASES["striped"]}
    assert len(forms) == 3 and len({c for c in with_stripes}) > 20
    std = [make_caption(a, "front", np.random.default_rng(k)) for k in range(20)]
    assert not any("stripe" in c for c in std)  # standard captions never mention patterns


def test_typos_change_only_long_words_and_keep_the_word_count():
    text = "The pedestrian is wearing a yellow jacket and black trousers carrying a backpack"
    noisy = [add_typos(text, np.random.default_rng(k), rate=0.5) for k in range(20)]
    assert any(n != text for n in noisy)
    for n in noisy:
        a, b = text.split(), n.split()
        assert len(a) == len(b)
        for w0, w1 in zip(a, b):
            assert w0 == w1 or (len(w0) >= 5 and len(w0) - len(w1) in (0, 1) and w0[0] == w1[0])


def test_cli_hard_prints_patterns_and_rejects_unknown_difficulty(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sen_train.data.synth", "--out", str(tmp_path / "h"), "--ids", "8",
                        "--difficulty", "hard", "--quiet", "--workers", "1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "difficulty: hard" in r.stdout and "top_pattern:" in r.stdout
    assert json.loads((tmp_path / "h" / "attributes.json").read_text())["config"]["hard_negative_rate"] == 0.5
    r = subprocess.run([sys.executable, "-m", "sen_train.data.synth", "--out", str(tmp_path / "x"),
                        "--difficulty", "extreme"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice: 'extreme'" in r.stderr
    assert not (tmp_path / "x").exists()

