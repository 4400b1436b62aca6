"""`python -m sen_infer serve`: the search service (HTTP API and search page) over one engine and gallery.

The service is the optional `serve` extra: fastapi and uvicorn are imported only when this command runs,
so the rest of the CLI works without them.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sen_infer.cli.args import add_engine_args, finite_float, non_negative_int, port, positive_int
from sen_infer.errors import EngineDirError, GalleryError, SenInferError, require_utf8
from sen_infer.serve.limits import Limits

DEFAULT_LIMITS = Limits()


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `serve` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("serve", help="the search service: HTTP API under /api/v1 and a search page at / (needs "
                                     "the serve extra)")
    add_engine_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --keys)")
    p.add_argument("--port", type=port, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--keys", help="API key file (python -m sen_infer keys add); required off loopback")
    p.add_argument("--audit", help="audit log, one JSON line per search (default: GALLERY/audit.jsonl)")
    p.add_argument("--audit-max-mb", type=non_negative_int, default=64, metavar="MIB",
                   help="rotate the audit log past this size (default 64; 0: never, for logrotate's copytruncate)")
    p.add_argument("--audit-keep", type=positive_int, default=5, metavar="N", help="rotated audit logs kept (default 5)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                   help="a reverse proxy's address (repeatable): its X-Forwarded-For / -Proto are believed, so the "
                        "audit names the client behind it (docs/serve.md, Behind a reverse proxy)")
    limits = p.add_argument_group("connection limits (defaults suit most sites; docs/serve.md, Limits)")
    for name, kind, unit, text in LIMIT_FLAGS:
        limits.add_argument("--" + name.replace("_", "-"), type=kind, default=None, metavar=unit,
                            help=f"{text} (default {getattr(DEFAULT_LIMITS, name):g})")
    return p


def seconds(text: str) -> float:
    """argparse type for a timeout: a finite number of seconds above 0.

    Raises:
        argparse.ArgumentTypeError: not a number, not finite, or not above 0.
    """
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


# (Limits field, argparse type, metavar, help): the limits an operator may set per site
LIMIT_FLAGS = (
    ("header_timeout", seconds, "S", "seconds a request's headers may take to arrive"),
    ("body_timeout", seconds, "S", "seconds a request's body may take to arrive"),
    ("keep_alive", seconds, "S", "seconds an idle keep-alive connection stays open"),
    ("max_connections", positive_int, "N", "open connections per process; past it requests get a 503"),
    ("decode_budget_mb", positive_int, "MIB", "MiB of uploaded pixels decoded at once; past it uploads get a 503"),
    ("decode_workers", positive_int, "N", "threads decoding uploaded pictures"),
)


def run(args) -> int:
    """Serve until stopped (Ctrl-C).

    Args: args, the parsed `serve` arguments. Returns: 0 once the server has stopped.

    Raises:
        SenInferError: the serve extra is not installed, or a path that is not UTF-8 (or what the service
            refuses at start: a bad engine or gallery, a non-loopback host without --keys).
    """
    try:
        from sen_infer.serve.config import ServeConfig
        from sen_infer.serve.run import serve
    except ImportError as e:
        raise SenInferError(f"the search service needs the serve extra: pip install 'sen-person-search[serve]' "
                            f"({e})") from None
    for name in ("engine", "gallery", "keys", "audit"):
        if getattr(args, name) is not None:
            require_utf8(getattr(args, name), f"--{name} path", EngineDirError if name == "engine" else GalleryError)
    chosen = {name: getattr(args, name) for name, *_ in LIMIT_FLAGS if getattr(args, name) is not None}
    serve(ServeConfig(engine=Path(args.engine), gallery=Path(args.gallery) if args.gallery else None, host=args.host,
                      port=args.port, keys=Path(args.keys) if args.keys else None,
                      audit=Path(args.audit) if args.audit else None, backend=args.backend,
                      verify=not args.skip_verify, limits=replace(DEFAULT_LIMITS, **chosen),
                      audit_max_mb=args.audit_max_mb, audit_keep=args.audit_keep,
                      trusted_proxies=tuple(args.trusted_proxy)), log_level="warning" if args.quiet else "info")
    return 0
