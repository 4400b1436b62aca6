"""`python -m sen_infer serve`: the search service (HTTP API and search page) over one engine and gallery.

The service is the optional `serve` extra: fastapi and uvicorn are imported only when this command runs,
so the rest of the CLI works without them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sen_infer.cli.args import add_engine_args, port
from sen_infer.errors import EngineDirError, GalleryError, SenInferError, require_utf8


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `serve` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("serve", help="the search service: HTTP API under /api/v1 and a search page at / (needs "
                                     "the serve extra)")
    add_engine_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --keys)")
    p.add_argument("--port", type=port, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--keys", help="API key file (python -m sen_infer keys add); required off loopback")
    p.add_argument("--audit", help="audit log, one JSON line per search (default: GALLERY/audit.jsonl)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p


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
    serve(ServeConfig(engine=Path(args.engine), gallery=Path(args.gallery) if args.gallery else None, host=args.host,
                      port=args.port, keys=Path(args.keys) if args.keys else None,
                      audit=Path(args.audit) if args.audit else None, backend=args.backend,
                      verify=not args.skip_verify), log_level="warning" if args.quiet else "info")
    return 0
