"""The engine dir's `manifest.json`: what a deployment needs to know about the exported model.

Owned by sen_infer (the reader); written by `export`. `format_version` is "MAJOR.MINOR": readers
accept any minor of the majors they know and refuse other majors with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sen_infer.errors import ManifestError

FORMAT_VERSION = "1.0"
SUPPORTED_MAJORS = (1,)
MANIFEST = "manifest.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CONTEXT = 1024  # CLIP uses 77; longer-context variants exist, nothing sane is beyond this
MAX_SIDE = 4096  # image side in pixels


@dataclass
class Manifest:
    """What `export` recorded about an engine dir's model (`manifest.json`), the contract a deployment
    checks before it embeds anything; `read_manifest` reads and validates it.

    Attributes:
        fingerprint: sha256 of the checkpoint's weights; a gallery stores it and refuses another model.
        model_name: the model's name in its training config.
        embed_dim: size of the embeddings both towers return.
        image_size: (H, W) the image tower takes. mean / std: per-channel RGB normalisation of its input.
        context_length: tokens the text tower takes (77 for CLIP).
        sot_id / eot_id: start- and end-of-text token ids, checked against `tokenizer.json`.
        files: file name -> sha256 of every file a backend may load.
        precisions: what was exported, e.g. ["fp32", "int8", "trt-fp16"].
        parity: figures measured at export, per precision (each passed its gate to be listed).
        tensorrt: TensorRT version, GPU, compute capability and profiles of the plans; None without plans.
        opset: the ONNX opset. created: when it was exported. producer: library versions used.
        format_version: "MAJOR.MINOR"; readers refuse majors they do not know.
    """
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
        """The manifest as JSON-ready values (tuples as lists), as `write` stores it."""
        d = asdict(self)
        d["image_size"], d["mean"], d["std"] = list(self.image_size), list(self.mean), list(self.std)
        return d

    def write(self, engine_dir: str | os.PathLike) -> Path:
        """Write `manifest.json` into `engine_dir` (`export` does, after its parity gates passed).

        Args:
            engine_dir: the engine dir.

        Returns:
            The path written.

        Raises:
            OSError: it cannot be written.
        """
        path = Path(engine_dir) / MANIFEST
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path


def check_version(version: str, where: str = MANIFEST) -> None:
    """ManifestError, naming `where`, for a format_version whose major this reader does not know (or one
    that is not "MAJOR.MINOR"); any minor of a known major passes."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise ManifestError(f"{where}: malformed format_version {version!r}") from None
    if major not in SUPPORTED_MAJORS:
        raise ManifestError(f"{where}: format_version {version} is not supported by this sen_infer "
                            f"(reads {', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}); re-export the engine "
                            f"dir with a matching release or upgrade sen-person-search")


def read_manifest(engine_dir: str | os.PathLike) -> Manifest:
    """Read and validate the manifest of an engine dir (types and ranges; not the files' sha256).

    Args:
        engine_dir: the engine dir.

    Returns:
        The `Manifest`; fields it does not know (a newer minor version's) are ignored.

    Raises:
        ManifestError: no manifest.json, invalid JSON, an unsupported format_version, a missing field,
            or a value out of range (the first one found is named).
    """
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{engine_dir} is not an engine dir: {MANIFEST} is missing")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ManifestError(f"{path}: invalid JSON: {e}") from None
    except RecursionError:  # brackets nested deeper than the parser's stack: not a manifest anyone wrote
        raise ManifestError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise ManifestError(f"{path}: no format_version")
    check_version(data["format_version"], str(path))
    known = {f.name for f in fields(Manifest)}
    try:
        m = Manifest(**{k: v for k, v in data.items() if k in known})
    except TypeError as e:
        raise ManifestError(f"{path}: {e}") from None
    validate(m, path)
    m.image_size, m.mean, m.std = tuple(m.image_size), tuple(m.mean), tuple(m.std)
    return m


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate(m: Manifest, where) -> None:
    """Types and value ranges of every field a loader relies on; ManifestError names the first bad one.
    Whether the values fit the towers themselves is checked when the towers are opened."""
    def bad(name, why):
        raise ManifestError(f"{where}: {name} {why}")

    if not isinstance(m.fingerprint, str) or not _SHA256.fullmatch(m.fingerprint):
        bad("fingerprint", "is not a sha256 hex digest")
    if not isinstance(m.model_name, str):
        bad("model_name", "is not a string")
    if not _is_int(m.embed_dim) or not 1 <= m.embed_dim <= 65536:
        bad("embed_dim", f"must be an integer in 1..65536, not {m.embed_dim!r}")
    size = m.image_size
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and 1 <= v <= MAX_SIDE
                                                                        for v in size):
        bad("image_size", f"must be [H, W] with integers in 1..{MAX_SIDE}, not {size!r}")
    for name in ("mean", "std"):
        v = getattr(m, name)
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_is_number(x) for x in v):
            bad(name, f"must be three finite numbers, not {v!r}")
    if not all(x > 0 for x in m.std):
        bad("std", f"must be positive, not {m.std!r}")
    if not _is_int(m.context_length) or not 2 <= m.context_length <= MAX_CONTEXT:
        bad("context_length", f"must be an integer in 2..{MAX_CONTEXT}, not {m.context_length!r}")
    for name in ("sot_id", "eot_id"):
        if not _is_int(getattr(m, name)) or getattr(m, name) < 0:
            bad(name, f"must be a non-negative integer, not {getattr(m, name)!r}")
    if not isinstance(m.files, dict) or not all(isinstance(k, str) and isinstance(v, str) and _SHA256.fullmatch(v)
                                                for k, v in m.files.items()):
        bad("files", "must map file names to sha256 hex digests")
    for name in m.files:
        if Path(name).name != name or name in (".", ".."):
            bad("files", f"lists {name!r}, which is not a plain file name inside the engine dir")
    if not isinstance(m.precisions, list) or not all(isinstance(p, str) for p in m.precisions):
        bad("precisions", "must be a list of strings")
    if m.tensorrt is not None and not isinstance(m.tensorrt, dict):
        bad("tensorrt", "must be an object")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read `chunk` bytes at a time (towers are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_files(engine_dir: str | os.PathLike, manifest: Manifest, names=None, digest=sha256_file) -> None:
    """Raise ManifestError if a listed file is missing or its sha256 differs from the manifest.
    `digest(path)` computes the sha256 (the SDK passes a cached one)."""
    for name in names or manifest.files:
        path = Path(engine_dir) / name
        if name not in manifest.files:
            raise ManifestError(f"{path}: not listed in {MANIFEST}, so it cannot be verified (re-export the "
                                f"engine dir, or pass --skip-verify if you know why)")
        if not path.is_file():
            raise ManifestError(f"{path}: missing (listed in {MANIFEST})")
        actual = digest(path)
        if actual != manifest.files[name]:
            raise ManifestError(f"{path}: sha256 {actual[:12]}... differs from {manifest.files[name][:12]}... in "
                                f"{MANIFEST} (the file was modified or belongs to another export)")
