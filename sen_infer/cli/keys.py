"""`python -m sen_infer keys add|list|remove`: the search service's API keys, stored hashed in a key file.

A new key's secret goes to stdout (shown only once, so it can be piped); everything else to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

from sen_infer.errors import SenInferError


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `keys` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("keys", help="API keys of the search service: add, list, remove (stored hashed)")
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("name", nargs="?", help="who the key is for (add, remove)")
    p.add_argument("--role", default="viewer", choices=("viewer", "admin"),
                   help="viewer: search and see evidence; admin: also read the audit log")
    p.add_argument("--file", required=True, help="the key file (created by the first add)")
    return p


def run(args) -> int:
    """Add a key (printing its secret), remove one, or list them.

    Args: args, the parsed `keys` arguments. Returns: 0.

    Raises:
        SenInferError: add or remove without a name, or what the key file refuses (an unreadable or
            malformed file, a bad name, a name already there or not there).
    """
    from sen_infer.serve.auth import KeyFile  # the serve package, imported only by the commands that use it

    keys = KeyFile(args.file)
    if args.action in ("add", "remove") and not args.name:
        raise SenInferError(f"keys {args.action}: name whose key it is (python -m sen_infer keys {args.action} NAME "
                            f"--file {args.file})")
    if args.action == "add":
        secret = keys.add(args.name, args.role)
        print(f"added {args.role} key {args.name!r} to {args.file}; it is shown only now:", file=sys.stderr)
        print(secret)
    elif args.action == "remove":
        keys.remove(args.name)
        print(f"removed key {args.name!r} from {args.file}", file=sys.stderr)
    else:
        for k in keys.load().values():
            print(f"{k.name}\t{k.role}\tcreated {time.strftime('%Y-%m-%d %H:%M', time.gmtime(k.created))} UTC")
    return 0
