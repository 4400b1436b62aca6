"""Contact sheet: the top-k crops in a grid, each labelled with rank, score, camera and time."""

from __future__ import annotations

import os
import time
import unicodedata
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import QueryError, require_utf8
from sen_infer.engine.preprocess import read_bgr

CELL_H, CELL_W, LABEL_H = 192, 96, 34
SHEET_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def check_sheet_path(path) -> Path:
    """`path` as a Path if a contact sheet can be written there, else QueryError: checked before the
    query runs, and before OpenCV sees the name (it crashes on names that are not UTF-8).

    Args:
        path: where the sheet is to go; its extension picks the image format.

    Returns:
        `path` as a Path.

    Raises:
        QueryError: not UTF-8, a directory, an extension OpenCV cannot write, or a folder that is missing
            or not writable.
    """
    path = Path(path)
    require_utf8(str(path), "--sheet path")
    if path.is_dir():
        raise QueryError(f"--sheet {path} is a directory; give a file name such as {path / 'hits.jpg'}")
    if path.suffix.lower() not in SHEET_EXTENSIONS:
        raise QueryError(f"--sheet {path}: name the image with one of {', '.join(SHEET_EXTENSIONS)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise QueryError(f"--sheet {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise QueryError(f"--sheet {path}: folder {parent} is not writable")
    return path


def ascii_label(text: str) -> str:
    """Text OpenCV's Hershey fonts can draw (ASCII only): accented letters lose their accents ("ünïcode"
    reads "unicode", not "?n?code"), anything else becomes '?' rather than garbage."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in plain)


def _label_time(ts) -> str:
    if ts is None:
        return "-"
    if ts > 1e8:  # an epoch time
        return time.strftime("%H:%M:%S", time.gmtime(ts))
    return f"{ts:.1f}s"


def contact_sheet(hits, path: str, columns: int = 5, title: str | None = None) -> np.ndarray:
    """Write the sheet to `path` (JPEG/PNG by extension) and return it: the hits at a glance, where a
    list of crop paths makes a person hard to compare across cameras.

    Args:
        hits: the query's hits (crop_path, score, camera, timestamp; superseded ones are framed red).
        path: the image to write (see `check_sheet_path`).
        columns: crops per row.
        title: drawn above the grid (the query text), ASCII only.

    Returns:
        The sheet as a BGR array.

    Raises:
        QueryError: a bad `path`, or the image cannot be encoded or written.
    """
    path = check_sheet_path(path)
    rows = max(1, -(-len(hits) // columns))
    top = 28 if title else 0
    sheet = np.full((top + rows * (CELL_H + LABEL_H), columns * CELL_W, 3), 255, np.uint8)
    if title:
        cv2.putText(sheet, ascii_label(title)[:90], (4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, h in enumerate(hits):
        r, c = divmod(i, columns)
        y, x = top + r * (CELL_H + LABEL_H), c * CELL_W
        img = read_bgr(h.crop_path) if h.crop_path else None
        if img is not None:
            scale = min(CELL_W / img.shape[1], CELL_H / img.shape[0])
            small = cv2.resize(img, (max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
            oy, ox = y + (CELL_H - small.shape[0]) // 2, x + (CELL_W - small.shape[1]) // 2
            sheet[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(sheet, f"#{i + 1} {h.score:.3f}", (x + 3, y + CELL_H + 13), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        if getattr(h, "superseded", False):  # its file was later replaced: a red frame and a word say so
            cv2.rectangle(sheet, (x + 1, y + 1), (x + CELL_W - 2, y + CELL_H - 2), (0, 0, 200), 2)
            cv2.putText(sheet, "superseded", (x + 4, y + 12), font, 0.34, (0, 0, 200), 1, cv2.LINE_AA)
        cv2.putText(sheet, ascii_label(f"{h.camera or '-'} {_label_time(h.timestamp)}")[:16], (x + 3, y + CELL_H + 28), font,
                    0.36, (60, 60, 60), 1, cv2.LINE_AA)
    ok, data = cv2.imencode(path.suffix.lower(), sheet)
    try:
        if not ok:
            raise OSError("encoding failed")
        data.tofile(str(path))
    except OSError as e:
        raise QueryError(f"cannot write contact sheet {path}: {e.strerror or e}") from None
    return sheet
