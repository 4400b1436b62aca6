"""Evaluation with the field's protocol: all captions of a split query all its images.

    python -m sen_train.evaluate --ckpt RUN/best --data DIR [--split test] [--json]

On CUHK-PEDES, ICFG-PEDES and RSTPReid the test figures are printed beside the published ones
(`sen_train.anchors`), which were all selected on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from sen_train.data.readers import Sample, unique_images
from sen_train.metrics import format_table, retrieval_metrics
from sen_train.transforms import eval_batch


@torch.no_grad()
def encode_split(model, samples: list[Sample], batch_size: int = 128, device="cpu", progress: bool = False):
    """(text features, text pids, image features, image pids) as NumPy arrays."""
    from sen_train.loader import tokenize

    model.eval()
    paths, img_pids = unique_images(samples)
    img_feats, txt_feats = [], []
    for i in tqdm(range(0, len(paths), batch_size), desc="encode images", disable=not progress):
        x = eval_batch(paths[i : i + batch_size], model)
        img_feats.append(model.encode_image(torch.from_numpy(x).to(device)).float().cpu())
    captions = [s.caption for s in samples]
    for i in tqdm(range(0, len(captions), batch_size), desc="encode texts", disable=not progress):
        txt_feats.append(model.encode_text(tokenize(captions[i : i + batch_size]).to(device)).float().cpu())
    return (torch.cat(txt_feats).numpy(), np.array([s.pid for s in samples]),
            torch.cat(img_feats).numpy(), np.array(img_pids))


def evaluate(model, samples: list[Sample], batch_size: int = 128, device="cpu", progress: bool = False) -> dict:
    """Text-to-image R1/R5/R10/mAP/mINP (percent) on `samples`."""
    if not samples:
        raise ValueError("cannot evaluate on an empty split")
    txt, txt_pids, img, img_pids = encode_split(model, samples, batch_size, device, progress)
    return retrieval_metrics(txt @ img.T, txt_pids, img_pids)


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m sen_train.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True, help="checkpoint dir (model.safetensors + config.json)")
    ap.add_argument("--data", required=True, help="dataset root")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--batch-size", type=int, default=None,
                    help="default: the checkpoint's eval_batch_size, so the figures equal training's to the bit")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print one JSON object with R1, R5, R10, mAP, mINP")
    args = ap.parse_args(argv)
    from sen_train.checkpoint import CheckpointError, load_model
    from sen_train.anchors import anchors_for, benchmark_of, format_anchors
    from sen_train.data import DatasetError, read_dataset
    from sen_train.data.readers import detect_format

    try:
        model = load_model(args.ckpt, args.device)
        dataset = detect_format(args.data)[0]
        splits = read_dataset(args.data)
        samples = splits[args.split]
        benchmark = benchmark_of(dataset, splits["test"]) if args.split == "test" else None
        batch_size = args.batch_size or model.cfg.eval_batch_size  # another batch shape rounds differently
        metrics = evaluate(model, samples, batch_size, args.device, progress=not args.json)
    except (CheckpointError, DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    anchors = anchors_for(benchmark) if benchmark else ()
    if args.json:
        if anchors:
            metrics = {**metrics, "dataset": benchmark,
                       "published": [{"method": a.method, "backbone": a.backbone, "R1": a.R1, "mAP": a.mAP}
                                     for a in anchors]}
        print(json.dumps(metrics))
    else:
        print(f"{dataset} {args.split}: {len(samples)} captions")
        print(format_table(metrics))
        if anchors:
            print(format_anchors(metrics, benchmark))
    return 0


if __name__ == "__main__":
    sys.exit(main())
