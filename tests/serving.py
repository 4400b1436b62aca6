"""The real search service for tests, and plain-urllib calls to it (a helper module, not tests)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

from helpers import ROOT  # noqa: E402  (re-exported: the service runs from the repository root)


@contextmanager
def served(engine_dir, gallery=None, keys=None, extra_args=(), host="127.0.0.1", env=None, output=None):
    """The real server on a free loopback port: yields its base URL (see sen_infer.serve.launch); `output`
    (a list) receives the lines it prints."""
    from sen_infer.serve.launch import served as launch

    with launch(engine_dir, gallery=gallery, keys=keys, extra_args=extra_args, host=host, env=env, cwd=ROOT,
                output=output) as url:
        yield url


def request_parts(body=None, key: str | None = None, headers: dict | None = None,
                  data: bytes | None = None) -> tuple[bytes | None, dict]:
    """(body bytes, headers) of a request: `body` as JSON when given, the key as a Bearer header."""
    h = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    return data, h


def call(base: str, path: str, body=None, key: str | None = None, method: str | None = None,
         headers: dict | None = None, data: bytes | None = None, timeout: float = 60):
    """(status, headers, parsed JSON or raw bytes) of one request; never raises on an HTTP status."""
    data, h = request_parts(body, key, headers, data)
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
