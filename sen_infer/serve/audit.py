"""The audit log: one JSON line per search (who, when, what, how many hits) and per refused request.

Searches of surveillance footage are themselves sensitive, so they are recorded where the operator's
organisation can review them. Lines are appended with one write() on an O_APPEND file, which keeps
lines whole even with several server processes on one file, and flushed before the response goes out.

A line is a line for every reader: any character that some reader takes as a line break or that a
terminal would reorder (C0 and C1 controls, DEL, NEL, U+2028/U+2029, bidi and other format characters) is
written as a JSON \\u escape. Refusals for want of a valid key (401) are counted per client, and past
`RefusalBudget.per_window` a window they are summarised in one line rather than written one by one, so a
flood of bad keys cannot fill the disk. The file is rotated by size (`max_bytes`, `keep` old files), safely across processes.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
import unicodedata
from collections import deque
from pathlib import Path

from sen_infer.serve.errors import AccessError

# categories escaped in every line: controls (C0, DEL, C1 with NEL), format characters (bidi overrides,
# zero-width joiners), line and paragraph separators, and lone surrogates (which are not text at all)
ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def escape_line(text: str) -> str:
    """`text` (one JSON document) with every character of ESCAPED_CATEGORIES as a \\u escape, so no reader
    of any kind (str.splitlines, a terminal, a log shipper) sees a break or reordering inside it."""
    return "".join(c if " " <= c <= "~" or unicodedata.category(c) not in ESCAPED_CATEGORIES
                   else json.dumps(c)[1:-1] for c in text)  # json.dumps: a surrogate pair above U+FFFF


def _plain(value):
    """`value` with every float that JSON cannot carry (nan, inf) as its text, so each line stays JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:] + "Z"


class AuditLog:
    """The service's audit log file: `record(**fields)` appends one line, `tail(n)` reads the last n.

    Args:
        path: the log file (created with mode 0600).
        max_bytes: past this size the file is renamed to PATH.1 (older ones to .2 ... .keep) and a new one
            begun; 0 never rotates (an outside tool such as logrotate may then, with copytruncate).
        keep: rotated files kept.

    Raises:
        AccessError: (on opening) the file cannot be opened for appending.
    """

    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 << 20, keep: int = 5):
        self.path, self.max_bytes, self.keep = Path(path), max_bytes, max(keep, 1)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open()
        except OSError as e:
            raise AccessError(f"audit log {self.path}: cannot open it for appending ({e.strerror or e}); "
                              f"choose another place with --audit FILE") from None

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, **fields) -> None:
        """Appends one JSON line of `fields`, stamped with the UTC time (milliseconds), in one write()."""
        line = escape_line(json.dumps(_plain({"at": _stamp(), **fields}), ensure_ascii=False,
                                      separators=(",", ":"), default=str)) + "\n"
        with self._lock:
            self._follow_rotation()
            os.write(self._fd, line.encode("utf-8"))
            if self.max_bytes and os.fstat(self._fd).st_size > self.max_bytes:
                self._rotate()

    def _follow_rotation(self) -> None:
        """Reopens the path when another process (or logrotate) has moved the file this one writes."""
        try:
            moved = os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            os.close(self._fd)
            self._fd = self._open()

    def _rotate(self) -> None:
        """PATH -> PATH.1 -> ... -> PATH.keep, under an exclusive lock so two processes never both rotate."""
        with open(f"{self.path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:  # not rotated meanwhile by another
                for i in range(self.keep - 1, 0, -1):
                    older = Path(f"{self.path}.{i}")
                    if older.exists():
                        os.replace(older, f"{self.path}.{i + 1}")
                os.replace(self.path, f"{self.path}.1")
            os.close(self._fd)
            self._fd = self._open()

    def tail(self, limit: int) -> list[dict]:
        """The last `limit` records, oldest first, reaching into rotated files when the current one has
        fewer (lines that are not JSON are skipped, not fatal)."""
        keep: deque = deque(maxlen=limit)
        files = [self.path] + [Path(f"{self.path}.{i}") for i in range(1, self.keep + 1)]
        chunks = []
        for path in files:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    chunks.append(deque(f, maxlen=limit))
            except FileNotFoundError:
                continue
            if sum(len(c) for c in chunks) >= limit:
                break
        for chunk in reversed(chunks):
            keep.extend(chunk)
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


class RefusalBudget:
    """How many refusals of one client are written line by line: `per_window` per `window` seconds; past
    that they are counted, and the count is written as one summary line when the client's window ends
    (checked on every audited request), so a flood is visible in the log without filling it.

    Args:
        log: the audit log to write summaries to.
        per_window: refusal lines per client per window.
        window: seconds.
        max_clients: clients tracked at once; the oldest windows are summarised early past it.
    """

    def __init__(self, log: AuditLog, per_window: int = 30, window: float = 60.0, max_clients: int = 10_000):
        self.log, self.per_window, self.window, self.max_clients = log, per_window, window, max_clients
        self._lock = threading.Lock()
        self._clients: dict[str, list] = {}  # client -> [window start, lines written, suppressed]

    def admit(self, client: str | None) -> bool:
        """Whether this refusal of `client` is written (True) or only counted (False)."""
        now = time.monotonic()
        self.flush(now)
        with self._lock:
            entry = self._clients.setdefault(client or "-", [now, 0, 0])
            if entry[1] < self.per_window:
                entry[1] += 1
                return True
            entry[2] += 1
            return False

    def flush(self, now: float | None = None, everything: bool = False) -> None:
        """Writes the summary of every client whose window has ended (or of all, with `everything`)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ended = [c for c, e in self._clients.items() if everything or now - e[0] >= self.window]
            while len(self._clients) - len(ended) >= self.max_clients:  # oldest first (dicts keep order)
                ended.append(next(c for c in self._clients if c not in ended))
            summaries = [(c, self._clients.pop(c)) for c in ended]
        for client, (start, _, suppressed) in summaries:
            if suppressed:
                self.log.record(event="refusals suppressed", client=client, count=suppressed,
                                window_s=round(min(now - start, self.window), 1))
