"""`python -m sen_infer info`: engine and gallery at a glance; `--check` also verifies the gallery.

Exit 1 when `--check` finds problems.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sen_infer.cli.args import add_engine_args, open_retriever, print_json, warnings_to_stderr


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `info` and its options on the top-level subparsers `sub`; returns its parser."""
    p = sub.add_parser("info", help="engine and gallery: model, backend, counts, cameras, time span")
    add_engine_args(p)
    p.add_argument("--check", action="store_true",
                   help="also run SQLite's integrity check and compare the index with the table (exit 1 on problems)")
    return p


def run(args) -> int:
    """Print the engine's model and backend and the gallery's stats (and its check with --check).

    Args: args, the parsed `info` arguments. Returns: 1 if --check found problems, else 0.

    Raises:
        SenInferError: a bad engine or gallery (a missing one is not made).
    """
    r = open_retriever(args)
    m = r.encoders.manifest
    with warnings_to_stderr():
        gallery = r.open_gallery(create=False)
        stats = gallery.stats()
        if args.check:
            stats["check"] = gallery.check()
    info = {"engine": str(Path(args.engine).resolve()), "model": m.model_name, "fingerprint": m.fingerprint,
            "embed_dim": m.embed_dim, "image_size": list(m.image_size), "precisions": m.precisions,
            "backend": r.backend, "gallery": str(r.gallery_path.resolve()), **stats}
    if args.json:
        print_json(info)
    else:
        for k, v in info.items():
            if k != "check":
                print(f"{k:>12}: {v}")
        if args.check:
            c = info["check"]
            print(f"{'check':>12}: {'ok' if c['ok'] else 'PROBLEMS'} ({c['rows']} rows, {c['index_size']} indexed)")
            for line in c["problems"]:
                print(f"{'':>12}  {line}")
    if args.check and not info["check"]["ok"]:
        return 1
    return 0
