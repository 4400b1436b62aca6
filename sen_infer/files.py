"""Crash-safe file writing shared by every layer: temp name + fsync + rename, and removal of the temps a
killed writer left behind. Knows nothing of galleries; the store, the ingest and the service use it."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

_TEMP_NAME = re.compile(r"\.(\d+)\.\d+(?:\.\d+)?\.tmp$")  # .NAME.PID.THREAD[.OBJECT].tmp


def temp_name(target: Path, owner: object = None) -> Path:
    """A temp name beside `target` no other writer uses: process, thread (and object) in the name, the
    pid first so that `remove_stale_temps` can tell a dead writer's leftovers from a live one's."""
    tail = f".{id(owner)}" if owner is not None else ""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}{tail}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` by temp + fsync + rename; OSError (nothing left behind) when it cannot."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def fsync_path(path: Path) -> None:
    """Flush a file already written (by a library that wrote it by name) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (temp files carry their writer's pid)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files under `folder` left by writers that died mid-write (a killed ingest can leave a
    35 MB index copy); a temp whose process is still alive is left alone. Returns how many were removed."""
    removed = 0
    for t in [t for pattern in (".*.tmp", "*/*/.*.tmp", "*/*/*/.*.tmp") for t in folder.glob(pattern)]:
        match = _TEMP_NAME.search(t.name)
        if match is None or process_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            t.unlink()
            removed += 1
    return removed

