"""What one request and one client may hold: sizes, counts and deadlines (`Limits`). Plain data, with no
web framework imported, so the CLI can show the defaults in `serve --help` without loading FastAPI; the
middleware that applies them is `bodies.py`, and `run.py` gives the connection settings to uvicorn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request and one client may hold. Documented in docs/serve.md; shown by GET /api/v1/info;
    each has a `serve` flag."""
    max_body: int = 64 * 1024  # a JSON request: a query is a few hundred bytes
    max_upload: int = 8 * 1024 * 1024  # an image upload ("find by example")
    max_text: int = 1000  # characters of a text query (the model reads 77 tokens of it)
    max_k: int = 200  # hits per request
    max_cameras: int = 256  # cameras named in one filter
    max_audit: int = 1000  # audit lines per GET /audit
    header_timeout: float = 10.0  # seconds from a connection's (or a request's) first byte to its last header
    body_timeout: float = 30.0  # seconds to read a whole body (8 MiB in 30 s: 280 KB/s, any working link)
    keep_alive: float = 5.0  # seconds an idle keep-alive connection is kept open
    max_connections: int = 1000  # open connections per process; past it new requests get a 503
    decode_budget_mb: int = 256  # MiB of decoded pixels in flight at once; past it uploads get a 503
    decode_workers: int = 2  # threads decoding uploaded pictures (off the event loop)
