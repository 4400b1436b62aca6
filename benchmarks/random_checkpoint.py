"""A checkpoint of a preset's architecture with random weights, for speed benchmarks only.

    python -m benchmarks.random_checkpoint --preset sen-vit-b-16 --out DIR [--seed 0]

Latency and throughput depend on the architecture and input size, not on the weights, so the
deployment model (ViT-B/16 at 384x128) can be benchmarked where OpenAI's weights cannot be fetched.
Its retrieval quality is nil and int8 gates may refuse it: never serve it.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.random_checkpoint", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="sen-vit-b-16")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    from sen_train.checkpoint import save_model
    from sen_train.config import ConfigError, load_config
    from sen_train.model import SEN

    try:
        cfg = load_config(args.preset, ["model.pretrained=none", "loss.tir=0", "loss.id=0"])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    model = SEN(cfg, num_classes=0)
    save_model(args.out, model, random_weights=True)
    print(f"{args.preset} with random weights ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params) "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
