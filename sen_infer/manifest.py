"""The engine dir's `manifest.json`: what a deployment needs to know about the exported model.

Owned by sen_infer (the reader); written by `export`. `format_version` is "MAJOR.MINOR": readers
accept any minor of the majors they know and refuse other majors with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FORMAT_VERSION = "1.0"
SUPPORTED_MAJORS = (1,)
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest that is missing, malformed or of an unsupported format version."""


@dataclass
class Manifest:
    fingerprint: str  # sha256 of the checkpoint's model.safetensors
    model_name: str
    embed_dim: int
    image_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    sot_id: int
    eot_id: int
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    precisions: list[str] = field(default_factory=list)  # e.g. ["fp32", "int8", "trt-fp16"]
    parity: dict = field(default_factory=dict)  # figures measured at export, per precision
    tensorrt: dict | None = None  # TRT version, GPU, compute capability, profiles, ONNX sha256
    opset: int = 18
    created: str = ""
    producer: dict = field(default_factory=dict)  # library versions used for the export
    format_version: str = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"], d["mean"], d["std"] = list(self.image_size), list(self.mean), list(self.std)
        return d

    def write(self, engine_dir: str | os.PathLike) -> Path:
        path = Path(engine_dir) / MANIFEST
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path


def check_version(version: str, where: str = MANIFEST) -> None:
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise ManifestError(f"{where}: malformed format_version {version!r}") from None
    if major not in SUPPORTED_MAJORS:
        raise ManifestError(f"{where}: format_version {version} is not supported by this sen_infer "
                            f"(reads {', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}); re-export the engine "
                            f"dir with a matching release or upgrade sen-person-search")


def read_manifest(engine_dir: str | os.PathLike) -> Manifest:
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{engine_dir} is not an engine dir: {MANIFEST} is missing")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ManifestError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise ManifestError(f"{path}: no format_version")
    check_version(data["format_version"], str(path))
    known = {f.name for f in fields(Manifest)}
    try:
        m = Manifest(**{k: v for k, v in data.items() if k in known})
    except TypeError as e:
        raise ManifestError(f"{path}: {e}") from None
    m.image_size, m.mean, m.std = tuple(m.image_size), tuple(m.mean), tuple(m.std)
    return m


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_files(engine_dir: str | os.PathLike, manifest: Manifest, names=None) -> None:
    """Raise ManifestError if a listed file is missing or its sha256 differs from the manifest."""
    for name in names or manifest.files:
        path = Path(engine_dir) / name
        if name not in manifest.files:
            raise ManifestError(f"{engine_dir}: {name} is not listed in {MANIFEST}")
        if not path.is_file():
            raise ManifestError(f"{engine_dir}: {name} is missing")
        if sha256_file(path) != manifest.files[name]:
            raise ManifestError(f"{engine_dir}: {name} does not match its sha256 in {MANIFEST} (modified?)")
