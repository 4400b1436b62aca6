"""Readers for the public text-to-person datasets and a plain JSONL format for custom data.

Every format ends up as one record type, `Sample(pid, image, caption)`: one per (image, caption)
pair, grouped by split. `read_dataset(root)` picks the reader from the files found in `root`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset that cannot be read: the message names the file and, where known, the record."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One (image, caption) pair. `pid` is contiguous 0..N-1 in train, the dataset's id elsewhere."""

    pid: int
    image: str  # absolute path
    caption: str


@dataclass(frozen=True)
class _Format:
    name: str
    filenames: tuple[str, ...]
    parse: Callable[[Path, Path], list[tuple[str, int, str, list[str]]]]  # -> (split, pid, image, captions)
    splits: tuple[str, ...] = SPLITS


def _fail(path: Path, index: int | None, message: str) -> DatasetError:
    where = f"{path}" if index is None else f"{path}: record {index}"
    return DatasetError(f"{where}: {message}")


def _load_json_list(path: Path) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise _fail(path, None, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, list):
        raise _fail(path, None, f"expected a JSON list of records, got {type(data).__name__}")
    return data


def _field(path: Path, index: int, record: object, name: str, kind: type | tuple[type, ...]):
    if not isinstance(record, dict):
        raise _fail(path, index, f"expected an object, got {type(record).__name__}")
    if name not in record:
        raise _fail(path, index, f"missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _fail(path, index, f"field '{name}' must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind) -> str:
    names = {int: "an integer", str: "a string", list: "a list"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _captions(path: Path, index: int, record: dict) -> list[str]:
    captions = _field(path, index, record, "captions", (list, str))
    if isinstance(captions, str):  # a few public files store a single caption as a string
        captions = [captions]
    if not captions:
        raise _fail(path, index, "field 'captions' is empty")
    for j, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise _fail(path, index, f"caption {j} must be a string, got {type(caption).__name__}")
        if not caption.strip():
            raise _fail(path, index, f"caption {j} is empty")
    return [c.strip() for c in captions]


def _records(path: Path, image_key: str, id_key: str, image_dir: Path):
    """Shared reader for the three public JSON formats (they differ only in key names)."""
    out = []
    for i, record in enumerate(_load_json_list(path)):
        split = _field(path, i, record, "split", str)
        pid = _field(path, i, record, id_key, int)
        rel = _field(path, i, record, image_key, str)
        captions = _captions(path, i, record)
        out.append((split, pid, str(image_dir / rel), captions, i))
    return out


def _parse_pedes(path: Path, root: Path):
    return _records(path, "file_path", "id", root / "imgs")


def _parse_rstp(path: Path, root: Path):
    return _records(path, "img_path", "id", root / "imgs")


def _parse_jsonl(path: Path, root: Path):
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise _fail(path, i, f"malformed JSON at column {e.colno}: {e.msg}") from None
            split = _field(path, i, record, "split", str)
            pid = _field(path, i, record, "pid", int)
            rel = _field(path, i, record, "image", str)
            out.append((split, pid, str(root / rel), _captions(path, i, record), i))
    return out


FORMATS = (
    _Format("CUHK-PEDES", ("reid_raw.json", "caption_all.json"), _parse_pedes),
    _Format("ICFG-PEDES", ("ICFG-PEDES.json", "ICFG_PEDES.json"), _parse_pedes, ("train", "test")),
    _Format("RSTPReid", ("data_captions.json",), _parse_rstp),
    _Format("JSONL", ("annotations.jsonl",), _parse_jsonl),
)


def detect_format(root: str | os.PathLike) -> tuple[str, Path]:
    """Return (format name, annotation file) for the dataset in `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    found = []
    for fmt in FORMATS:
        for name in fmt.filenames:
            if (root / name).is_file():
                found.append((fmt.name, root / name))
                break
    if not found:
        known = ", ".join(n for f in FORMATS for n in f.filenames)
        raise DatasetError(f"{root}: no known annotation file (looked for {known})")
    if len(found) > 1:
        names = ", ".join(f"{p.name} ({n})" for n, p in found)
        raise DatasetError(f"{root}: ambiguous dataset, several annotation files: {names}")
    return found[0]


def read_dataset(root: str | os.PathLike, check_images: bool = True) -> dict[str, list[Sample]]:
    """Read the dataset in `root` into {"train", "val", "test"} lists of `Sample`.

    Train pids are relabelled to 0..N-1 in order of the original ids; val/test keep the
    dataset's ids so that results can be traced back to the source annotations.
    """
    root = Path(root).resolve()
    name, path = detect_format(root)
    fmt = next(f for f in FORMATS if f.name == name)
    records = fmt.parse(path, root)

    for split, _, image, _, index in records:
        if split not in fmt.splits:
            raise _fail(path, index, f"unknown split '{split}' (expected one of {', '.join(fmt.splits)})")
        if check_images and not os.path.isfile(image):
            raise _fail(path, index, f"image does not exist: {image}")

    train_ids = sorted({pid for split, pid, *_ in records if split == "train"})
    relabel = {pid: i for i, pid in enumerate(train_ids)}
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for split, pid, image, captions, _ in records:
        label = relabel[pid] if split == "train" else pid
        out[split].extend(Sample(label, image, c) for c in captions)
    return out


def unique_images(samples: Iterable[Sample]) -> tuple[list[str], list[int]]:
    """Gallery view of a split: each image once (first-seen order) with its pid."""
    seen: dict[str, int] = {}
    for s in samples:
        seen.setdefault(s.image, s.pid)
    return list(seen), list(seen.values())
