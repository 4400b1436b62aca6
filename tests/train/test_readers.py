"""Dataset readers: each public format from fixtures written here, and every bad input."""

import json
from pathlib import Path

import pytest

from sen_train.data import DatasetError, Sample, read_dataset
from sen_train.data.readers import detect_format, unique_images


def _touch_images(root: Path, rels):
    for rel in rels:
        p = root / "imgs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xff\xd8fake")


def _pedes_records():
    return [
        {"split": "train", "captions": ["A man in red.", "Red shirt man."], "file_path": "a/1.jpg",
         "processed_tokens": [["a", "man", "in", "red"], ["red", "shirt", "man"]], "id": 17},
        {"split": "train", "captions": ["A woman in blue."], "file_path": "a/2.jpg", "processed_tokens": [], "id": 5},
        {"split": "train", "captions": ["Same man, other view."], "file_path": "a/3.jpg", "processed_tokens": [], "id": 17},
        {"split": "val", "captions": ["Val person."], "file_path": "b/4.jpg", "processed_tokens": [], "id": 900},
        {"split": "test", "captions": ["Test person one.", "  Test person, again.  "], "file_path": "c/5.jpg",
         "processed_tokens": [], "id": 1001},
    ]


def _write(root: Path, name: str, records, jsonl=False):
    root.mkdir(parents=True, exist_ok=True)
    if jsonl:
        (root / name).write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        (root / name).write_text(json.dumps(records))
    return root / name


@pytest.mark.parametrize("filename", ["reid_raw.json", "caption_all.json"])
def test_cuhk_pedes_fields_splits_and_relabelling(tmp_path, filename):
    records = _pedes_records()
    _write(tmp_path, filename, records)
    _touch_images(tmp_path, [r["file_path"] for r in records])
    assert detect_format(tmp_path)[0] == "CUHK-PEDES"
    data = read_dataset(tmp_path)
    assert set(data) == {"train", "val", "test"}
    imgs = tmp_path.resolve() / "imgs"
    # train ids 5 and 17 become 0 and 1 (sorted by original id), one sample per caption
    assert data["train"] == [
        Sample(1, str(imgs / "a/1.jpg"), "A man in red."),
        Sample(1, str(imgs / "a/1.jpg"), "Red shirt man."),
        Sample(0, str(imgs / "a/2.jpg"), "A woman in blue."),
        Sample(1, str(imgs / "a/3.jpg"), "Same man, other view."),
    ]
    assert data["val"] == [Sample(900, str(imgs / "b/4.jpg"), "Val person.")]
    assert [s.caption for s in data["test"]] == ["Test person one.", "Test person, again."]
    assert {s.pid for s in data["test"]} == {1001}
    assert all(Path(s.image).is_absolute() for split in data.values() for s in split)


@pytest.mark.parametrize("filename", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_pedes_has_no_val(tmp_path, filename):
    records = [r for r in _pedes_records() if r["split"] != "val"]
    _write(tmp_path, filename, records)
    _touch_images(tmp_path, [r["file_path"] for r in records])
    data = read_dataset(tmp_path)
    assert data["val"] == []
    assert len(data["train"]) == 4 and len(data["test"]) == 2


def test_icfg_pedes_refuses_val_split(tmp_path):
    records = _pedes_records()
    path = _write(tmp_path, "ICFG-PEDES.json", records)
    _touch_images(tmp_path, [r["file_path"] for r in records])
    with pytest.raises(DatasetError, match=rf"{path}: record 3: unknown split 'val'"):
        read_dataset(tmp_path)


def test_rstpreid(tmp_path):
    records = [
        {"id": 3, "img_path": "0003_c1.jpg", "captions": ["One.", "Two."], "split": "train"},
        {"id": 8, "img_path": "0008_c2.jpg", "captions": ["Three."], "split": "val"},
        {"id": 9, "img_path": "0009_c2.jpg", "captions": ["Four."], "split": "test"},
    ]
    _write(tmp_path, "data_captions.json", records)
    _touch_images(tmp_path, [r["img_path"] for r in records])
    data = read_dataset(tmp_path)
    assert [(s.pid, Path(s.image).name, s.caption) for s in data["train"]] == [(0, "0003_c1.jpg", "One."),
                                                                                (0, "0003_c1.jpg", "Two.")]
    assert [(s.pid, s.caption) for s in data["val"]] == [(8, "Three.")]
    assert [(s.pid, s.caption) for s in data["test"]] == [(9, "Four.")]


def test_jsonl_custom_format(tmp_path):
    records = [
        {"image": "cams/x.png", "pid": 42, "captions": ["Custom one."], "split": "train"},
        {"image": "cams/y.png", "pid": 7, "captions": ["Custom two.", "Custom three."], "split": "test"},
    ]
    _write(tmp_path, "annotations.jsonl", records, jsonl=True)
    for r in records:
        (tmp_path / r["image"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / r["image"]).write_bytes(b"x")
    data = read_dataset(tmp_path)
    assert data["train"] == [Sample(0, str(tmp_path.resolve() / "cams/x.png"), "Custom one.")]
    assert [s.caption for s in data["test"]] == ["Custom two.", "Custom three."]
    assert unique_images(data["test"]) == ([str(tmp_path.resolve() / "cams/y.png")], [7])


def test_no_known_file(tmp_path):
    (tmp_path / "something.json").write_text("[]")
    with pytest.raises(DatasetError, match="no known annotation file"):
        read_dataset(tmp_path)


def test_not_a_directory(tmp_path):
    with pytest.raises(DatasetError, match="not a directory"):
        read_dataset(tmp_path / "missing")


def test_ambiguous_formats(tmp_path):
    _write(tmp_path, "reid_raw.json", [])
    _write(tmp_path, "data_captions.json", [])
    with pytest.raises(DatasetError, match="ambiguous"):
        read_dataset(tmp_path)


def test_malformed_json(tmp_path):
    (tmp_path / "reid_raw.json").write_text('[{"split": "train",')
    with pytest.raises(DatasetError, match=r"reid_raw.json: malformed JSON at line 1"):
        read_dataset(tmp_path)


def test_malformed_jsonl_line_names_record(tmp_path):
    (tmp_path / "annotations.jsonl").write_text('{"image": "a", "pid": 1, "captions": ["x"], "split": "train"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"annotations.jsonl: record 1: malformed JSON"):
        read_dataset(tmp_path)


def test_top_level_not_a_list(tmp_path):
    (tmp_path / "reid_raw.json").write_text('{"split": "train"}')
    with pytest.raises(DatasetError, match="expected a JSON list"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("field", ["split", "captions", "file_path", "id"])
def test_missing_field_names_file_and_record(tmp_path, field):
    records = _pedes_records()
    del records[2][field]
    path = _write(tmp_path, "reid_raw.json", records)
    _touch_images(tmp_path, [r.get("file_path", "x") for r in records])
    with pytest.raises(DatasetError, match=rf"^{path}: record 2: missing field '{field}'$"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("field,value,expect", [
    ("id", "17", "field 'id' must be an integer, got str"),
    ("id", True, "field 'id' must be an integer, got bool"),
    ("captions", [], "field 'captions' is empty"),
    ("captions", ["ok", "   "], "caption 1 is empty"),
    ("captions", ["ok", 3], "caption 1 must be a string"),
])
def test_bad_field_values(tmp_path, field, value, expect):
    records = _pedes_records()
    records[1][field] = value
    path = _write(tmp_path, "reid_raw.json", records)
    _touch_images(tmp_path, [r["file_path"] for r in records])
    with pytest.raises(DatasetError, match=rf"{path}: record 1: {expect}"):
        read_dataset(tmp_path)


def test_missing_image(tmp_path):
    records = _pedes_records()
    path = _write(tmp_path, "reid_raw.json", records)
    _touch_images(tmp_path, [r["file_path"] for r in records if r["file_path"] != "b/4.jpg"])
    with pytest.raises(DatasetError, match=rf"{path}: record 3: image does not exist: .*b/4.jpg"):
        read_dataset(tmp_path)
    assert read_dataset(tmp_path, check_images=False)["val"][0].pid == 900
