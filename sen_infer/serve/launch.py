"""The service as a subprocess, for tests, benchmarks and integrators' scripts:
`with served(engine_dir, gallery=...) as url:` starts `python -m sen_infer serve` on a free loopback port
(the server binds port 0 and prints the port it got), and stops it with SIGTERM on exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

READY_TIMEOUT = 120  # seconds for the engine to load and the port to open on a slow machine


@contextmanager
def served(engine_dir, gallery=None, keys=None, extra_args=(), host: str = "127.0.0.1", env: dict | None = None,
           cwd=None, ready_timeout: float = READY_TIMEOUT, output: list | None = None):
    """Yields the base URL ("http://127.0.0.1:PORT"); RuntimeError with the server's last lines when it
    does not start. `output`, when given, receives every line the server prints (a test reads its log)."""
    cmd = [sys.executable, "-m", "sen_infer", "serve", "--engine", str(engine_dir), "--host", host, "--port", "0",
           "--quiet"]
    if gallery is not None:
        cmd += ["--gallery", str(gallery)]
    if keys is not None:
        cmd += ["--keys", str(keys)]
    cmd += [str(a) for a in extra_args]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    url: list[str] = []
    found = threading.Event()

    def read():  # keep draining the pipe so the server never blocks on a full one
        for line in proc.stdout:
            lines.append(line.rstrip())
            if output is not None:
                output.append(line.rstrip())
            del lines[:-200]
            if not url and "listening on " in line:
                url.append(line.split("listening on ", 1)[1].strip())
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(ready_timeout) or not url:
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
