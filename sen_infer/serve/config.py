"""What `python -m sen_infer serve` was asked to serve, and how (its command-line options, as one value)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sen_infer.serve.limits import Limits


@dataclass
class ServeConfig:
    """The service's settings: the CLI builds one from its options, `create_app` and `serve` take it, so
    an integrator can run the same service from Python without going through argv."""

    engine: Path
    gallery: Path | None = None  # default: ENGINE/gallery
    host: str = "127.0.0.1"
    port: int = 8080
    keys: Path | None = None  # a key file (`sen_infer keys add`); required off loopback
    audit: Path | None = None  # default: GALLERY/audit.jsonl
    backend: str = "auto"
    verify: bool = True
    limits: Limits = field(default_factory=Limits)
    frame_cache: int = 64  # rendered frames kept in memory
    audit_max_mb: int = 64  # the audit log is rotated past this size (0: never; logrotate may, with copytruncate)
    audit_keep: int = 5  # rotated audit files kept (audit.jsonl.1 ... .5)
    trusted_proxies: tuple[str, ...] = ()  # reverse proxies whose X-Forwarded-For/-Proto are believed
