"""The real search service for tests: `python -m sen_infer serve` as a subprocess on a free loopback
port (the server binds port 0 and prints the one it got), stopped with SIGTERM at the end
(a helper module, not tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 120  # seconds for the engine to load and the port to open on a slow CI machine


@contextmanager
def served(engine_dir, gallery=None, keys=None, extra_args=(), host="127.0.0.1", env=None):
    """Yields the base URL ("http://127.0.0.1:PORT"). The server's output is kept in `served.log` lines
    of the yielded URL's process, shown when it fails to start."""
    cmd = [sys.executable, "-m", "sen_infer", "serve", "--engine", str(engine_dir), "--host", host, "--port", "0",
           "--quiet"]
    if gallery is not None:
        cmd += ["--gallery", str(gallery)]
    if keys is not None:
        cmd += ["--keys", str(keys)]
    cmd += list(extra_args)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    url: list[str] = []
    found = threading.Event()

    def read():  # keep draining the pipe so the server never blocks on a full one
        for line in proc.stdout:
            lines.append(line.rstrip())
            if not url and "listening on " in line:
                url.append(line.split("listening on ", 1)[1].strip())
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(READY_TIMEOUT) or not url:
            raise RuntimeError("the server did not start:\n" + "\n".join(lines[-30:]))
        yield url[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)


def call(base: str, path: str, body=None, key: str | None = None, method: str | None = None,
         headers: dict | None = None, data: bytes | None = None, timeout: float = 60):
    """(status, headers, parsed JSON or raw bytes) of one request; never raises on an HTTP status."""
    h = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(base + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, rh, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, rh, raw = e.code, dict(e.headers), e.read()
    kind = rh.get("content-type", rh.get("Content-Type", ""))
    return status, rh, json.loads(raw) if kind.startswith("application/json") else raw


def wait_until(predicate, timeout: float = 60, every: float = 0.2):
    """Polls `predicate()` until it is truthy (returned) or `timeout` seconds pass (AssertionError)."""
    end = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
