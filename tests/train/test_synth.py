"""SynthPEDES: read by the real CUHK-PEDES reader, deterministic, and its ground truth consistent."""

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2

from sen_train.data import read_dataset
from sen_train.data.attributes import COLOURS, PersonAttributes
from sen_train.data.captions import COLOUR_SYNONYMS
from sen_train.data.readers import detect_format
from sen_train.data.render import Pose, render_person
from sen_train.data.synth import SynthConfig, generate, split_sizes

from helpers import ROOT  # noqa: E402


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_written_in_cuhk_format_and_read_back(synth_small):
    assert detect_format(synth_small)[0] == "CUHK-PEDES"
    data = read_dataset(synth_small)
    cfg = SynthConfig(ids=24, seed=3)
    n_train, n_val, n_test = split_sizes(24, cfg.split_ratios)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        assert len({s.image for s in data[split]}) == n * cfg.images_per_id
        assert len(data[split]) == n * cfg.images_per_id * cfg.captions_per_image
    assert {s.pid for s in data["train"]} == set(range(n_train))
    img = cv2.imread(data["test"][0].image)
    assert img.shape == (384, 128, 3)


def test_splits_are_disjoint_by_identity(synth_small):
    truth = json.loads((synth_small / "attributes.json").read_text())
    split_of = {p["id"]: p["split"] for p in truth["identities"]}
    records = json.loads((synth_small / "reid_raw.json").read_text())
    assert all(split_of[r["id"]] == r["split"] for r in records)
    assert {p["split"] for p in truth["identities"]} == {"train", "val", "test"}


def test_same_seed_same_bytes_regardless_of_workers(tmp_path):
    cfg = SynthConfig(ids=6, seed=11, images_per_id=2)
    generate(cfg, tmp_path / "a", workers=1, progress=False)
    generate(cfg, tmp_path / "b", workers=2, progress=False)
    generate(replace(cfg, seed=12), tmp_path / "c", workers=1, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_hard_negatives_differ_in_exactly_the_named_attribute(synth_small):
    truth = json.loads((synth_small / "attributes.json").read_text())
    by_id = {p["id"]: p for p in truth["identities"]}
    negatives = [p for p in truth["identities"] if p["hard_negative_of"] is not None]
    assert negatives, "a 24-identity set at rate 0.3 should hold hard negatives"
    for p in negatives:
        base = by_id[p["hard_negative_of"]]
        diff = [k for k in p["attributes"] if p["attributes"][k] != base["attributes"][k]]
        assert diff == [p["changed"]]
        assert p["split"] == base["split"]


def _colour_words(name):
    return COLOUR_SYNONYMS.get(name, (name,))


def test_captions_name_the_drawn_top_and_bottom_colours(synth_small):
    truth = json.loads((synth_small / "attributes.json").read_text())
    attrs = {p["id"]: p["attributes"] for p in truth["identities"]}
    records = json.loads((synth_small / "reid_raw.json").read_text())
    assert len(truth["images"]) == len(records)
    for r in records:
        a = attrs[r["id"]]
        assert len(r["captions"]) == 2 and len(set(r["captions"])) >= 1
        for c in r["captions"]:
            assert any(w in c for w in _colour_words(a["top_colour"])), c
            assert any(w in c for w in _colour_words(a["bottom_colour"])), c
        assert r["processed_tokens"][0][0] == r["captions"][0].split()[0].lower()


def test_captions_vary_in_phrasing(synth_small):
    records = json.loads((synth_small / "reid_raw.json").read_text())
    captions = [c for r in records for c in r["captions"]]
    assert len(set(captions)) > 0.95 * len(captions)
    lengths = [len(c.split()) for c in captions]
    assert max(lengths) - min(lengths) >= 10


def test_renderer_draws_the_named_colours():
    a = PersonAttributes(gender="man", body="average", skin=0, hair_colour="black", hair_length="short",
                         top_type="t-shirt", top_colour="green", bottom_type="trousers", bottom_colour="blue",
                         shoe_colour="white", bag_type="none", bag_colour="red", hat_type="none",
                         hat_colour="red", glasses=False, scarf_colour=None)
    img, mask = render_person(a, Pose("front", 0.0), 300)
    cx = img.shape[1] // 2
    assert tuple(img[int(0.3 * 300), cx]) == COLOURS["green"]
    leg_x = cx + int(round(0.07 * 0.55 * 300))
    assert tuple(img[int(0.6 * 300), leg_x]) == COLOURS["blue"]
    assert mask[int(0.3 * 300), cx] == 255 and mask[2, 2] == 0
    assert tuple(img[int(0.955 * 300), leg_x]) == COLOURS["white"]


def test_cli_writes_dataset_and_prints_statistics(tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "sen_train.data.synth", "--out", str(out), "--ids", "5",
                        "--seed", "2", "--quiet", "--workers", "1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "vocabulary" in r.stdout
    assert (out / "reid_raw.json").is_file() and (out / "attributes.json").is_file()


def test_cli_rejects_bad_arguments(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sen_train.data.synth", "--out", str(tmp_path / "x"), "--ids", "1"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: need at least 3 identities (one per split), got 1"
    assert not (tmp_path / "x").exists()
