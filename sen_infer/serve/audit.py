"""The audit log: one JSON line per search (who, when, what, how many hits) and per refused request.

Searches of surveillance footage are themselves sensitive, so they are recorded where the operator's
organisation can review them. Lines are appended with one write() on an O_APPEND file, which keeps
lines whole even with several server processes on one file, and flushed before the response goes out.
"""

from __future__ import annotations

import json
import os
import threading
import time
import unicodedata
from collections import deque
from pathlib import Path

from sen_infer.serve.errors import AccessError


class AuditLog:
    """The service's audit log file: `record(**fields)` appends one line, `tail(n)` reads the last n.

    Raises:
        AccessError: (on opening) the file cannot be opened for appending.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as e:
            raise AccessError(f"audit log {self.path}: cannot open it for appending ({e.strerror or e}); "
                              f"choose another place with --audit FILE") from None

    def record(self, **fields) -> None:
        """Appends one JSON line of `fields`, stamped with the UTC time (milliseconds), in one write()."""
        line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f"{time.time() % 1:.3f}"[1:] + "Z",
                           **fields}, ensure_ascii=False, separators=(",", ":"))
        # format characters (bidi overrides such as U+202E, zero-width joiners) are written as \u escapes:
        # a reviewer reading the log sees what was typed, not text the terminal reordered
        line = "".join(json.dumps(c)[1:-1] if unicodedata.category(c) == "Cf" else c for c in line) + "\n"
        with self._lock:
            os.write(self._fd, line.encode("utf-8", "surrogateescape"))

    def tail(self, limit: int) -> list[dict]:
        """The last `limit` records, oldest first (lines that are not JSON are skipped, not fatal)."""
        keep: deque = deque(maxlen=limit)
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                keep.append(line)
        out = []
        for line in keep:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def close(self) -> None:
        """Closes the file (a test or an embedding app that opens many services; the server never does)."""
        os.close(self._fd)
