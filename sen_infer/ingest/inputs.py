"""Inputs of an ingest: which files are images or videos, what identifies a file's content, and the checks
of the values a caller passes (camera names, times)."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

from sen_infer.engine.preprocess import is_regular_file
from sen_infer.errors import IngestError, require_utf8
from sen_infer.ingest.report import IngestReport

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg"}

def fingerprint_range(path: str, a: int, b: int) -> str:
    """The hex sha1 of bytes [a, b) of the file at `path` (the content part of `file_identity`)."""
    with open(path, "rb") as f:
        f.seek(a)
        return hashlib.sha1(f.read(b - a)).hexdigest()


def file_identity(path: str) -> dict:
    """What identifies a file's content cheaply: size, mtime and a sha1 of up to 1 MiB of its early
    bytes, "a:b:sha1". The range skips the first 64 KiB (container headers that a recorder rewrites as
    the file grows: frame counts, sizes) and the last quarter (indexes written at the end), so a
    recording that grew keeps its fingerprint and a replaced one does not."""
    st = os.stat(path)
    a = min(65536, st.st_size // 2)
    b = max(a, min(a + (1 << 20), st.st_size * 3 // 4))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head": f"{a}:{b}:{fingerprint_range(path, a, b)}"}


def same_beginning(path: str, head: str, size: int) -> bool:
    """Whether the file at `path` (now `size` bytes) still holds the bytes fingerprinted as `head`."""
    try:
        a, b, digest = head.split(":")
        a, b = int(a), int(b)
    except ValueError:
        return False
    return size >= b and fingerprint_range(path, a, b) == digest



# the boxes an MP4/QuickTime file may start with (ISO 14496-12 and Apple's QuickTime): anything else at byte 4
# means the head of the file is missing, and a decoder would read its tail with another file's offsets
MP4_START = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx", b"moof",
             b"junk", b"pict"}


def missing_head(path: str) -> str | None:
    """Why an .mp4/.mov/.m4v file cannot be a whole recording (its first bytes are not an MP4 box: a tail
    cut from a longer file, a partial copy), or None. A decoder may still "decode" such a tail into
    wrong frames, so it is refused before that."""
    if Path(path).suffix.lower() not in {".mp4", ".mov", ".m4v"}:
        return None
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and head[4:8] not in MP4_START:
        return "its first bytes are not an MP4 box: the head of the file is missing (a cut or partial copy?)"
    return None


def default_camera(source: str) -> str:
    """A video's camera when none is given: its file name with extension (cam.avi and cam.mp4 are two
    cameras), or for the common `<camera>/<file>` layout of recorders (cam07/2026-11-29_10.mp4) the
    folder's name when the file name looks like a time stamp."""
    p = Path(source)
    if any(ch.isdigit() for ch in p.stem) and not any(ch.isalpha() for ch in p.stem.replace("T", "")) \
            and p.parent.name:
        return p.parent.name
    return p.name


LATEST_TIME = 7_258_118_400.0  # 2200-01-01 UTC: a later "recording time" is a mistake (ms, µs, a typo)


def finite_time(value, what: str) -> float | None:
    """`value` as float Unix seconds (None stays None); IngestError naming `what` for anything else:
    NaN and infinities (they would break filters and JSON), and times before 1970 or after 2199 (a time in
    milliseconds, or 1e300, would put every row outside any search window and any UTC day)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise IngestError(f"{what} must be a finite number of seconds, not {value!r}")
    if not 0.0 <= value < LATEST_TIME:
        raise IngestError(f"{what} must be Unix seconds between 1970 and 2199, not {value!r} "
                          f"(milliseconds? divide by 1000)")
    return float(value)


def camera_name(camera) -> str | None:
    """`camera` checked (None stays None): IngestError for a non-string, a blank one or one that is not
    UTF-8, so a bad name stops an ingest before anything is stored under it."""
    if camera is None:
        return None
    if not isinstance(camera, str) or not camera.strip():
        raise IngestError(f"camera name must be a non-empty string, not {camera!r}")
    return require_utf8(camera, "camera name", IngestError)


def expand_inputs(paths, report: IngestReport, videos: bool = True) -> tuple[list[Path], list[Path]]:
    """(images, videos) from files and folders (searched recursively, sorted). Inputs that cannot be
    ingested (missing, not a regular file, a name that is not UTF-8, an unknown type named explicitly)
    go to `report` with the reason and never stop the rest; unrelated files inside a folder are ignored."""
    images, found_videos = [], []
    wanted = IMAGE_EXTENSIONS | (VIDEO_EXTENSIONS if videos else set())
    for p in map(Path, paths):
        if not os.path.lexists(p):
            report.skip(p, "no such file or folder")
            continue
        files = sorted(f for f in p.rglob("*") if not f.is_dir()) if p.is_dir() else [p]
        for f in files:
            ext = f.suffix.lower()
            if ext not in wanted and (p.is_dir() or videos):
                if not p.is_dir():  # named explicitly, but neither an image nor a video by its name
                    report.skip(f, f"not an image or video ({', '.join(sorted(wanted))})")
                continue  # an image named explicitly without a known extension is left to the decoder
            why = unusable_file(str(f))
            if why is not None:
                report.skip(f, why)
                continue
            (found_videos if ext in VIDEO_EXTENSIONS and videos else images).append(f)
    return images, found_videos


def unusable_file(path: str) -> str | None:
    """Why a file given to the ingest cannot be read as one (checked before OpenCV sees it), or None."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (rename it)"
    if not os.path.lexists(path):
        return "no such file"
    if not is_regular_file(path):
        return "not a regular file (FIFO, device, socket or broken link)"
    return None
