"""Pictures of what a checkpoint does.

    python -m sen_train.visualize retrieval --ckpt RUN/best --data DIR (--caption-index I | --query TEXT [--pid P])
        [--split test] [--k 10] [--out retrieval.png]
    python -m sen_train.visualize tir --ckpt RUN/best --data DIR [--split test] [--n 4] [--out tir.png]

retrieval: the top-k gallery images of a text query, framed green when the identity is right and
red when not (grey when the query has no identity), with scores. tir: for n images, the original,
the masked grayscale input the TIR head sees, and its colour reconstruction.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np
import torch

from sen_train.data.readers import unique_images
from sen_train.transforms import eval_batch, read_rgb, resize

BORDER, LABEL = 4, 22
GREEN, RED, GREY = (40, 170, 40), (40, 40, 220), (150, 150, 150)  # BGR


def _to_bgr(x: np.ndarray, mean, std) -> np.ndarray:
    """Normalised CHW float -> BGR uint8."""
    img = x.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return cv2.cvtColor(np.clip(img * 255, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def retrieval_grid(model, samples, text: str, pid: int | None, k: int = 10) -> np.ndarray:
    """One row of the k best gallery images for `text`: [LABEL + H + 2*BORDER, k * (W + 2*BORDER)]."""
    from sen_train.loader import tokenize

    paths, pids = unique_images(samples)
    h, w = model.image_size
    with torch.no_grad():
        imgs = torch.from_numpy(eval_batch(paths, model))
        img_feats = torch.cat([model.encode_image(imgs[i : i + 64]) for i in range(0, len(imgs), 64)])
        q = model.encode_text(tokenize([text]))[0]
    scores = (img_feats @ q).numpy()
    order = np.argsort(-scores, kind="stable")[:k]
    cell_w, cell_h = w + 2 * BORDER, h + 2 * BORDER + LABEL
    grid = np.full((cell_h, k * cell_w, 3), 255, np.uint8)
    for col, i in enumerate(order):
        colour = GREY if pid is None else (GREEN if pids[i] == pid else RED)
        x0 = col * cell_w
        grid[LABEL:, x0 : x0 + cell_w] = colour
        tile = cv2.cvtColor(resize(read_rgb(paths[i]), (h, w)), cv2.COLOR_RGB2BGR)
        grid[LABEL + BORDER : LABEL + BORDER + h, x0 + BORDER : x0 + BORDER + w] = tile
        cv2.putText(grid, f"{scores[i]:.3f}", (x0 + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def tir_sheet(model, samples, n: int = 4, seed: int = 0) -> np.ndarray:
    """n rows of (original | masked grayscale input | reconstruction): [n * H, 3 * W]."""
    from sen_train.loader import tokenize

    if model.tir is None:
        raise ValueError("this checkpoint has no TIR head (trained with loss.tir=0)")
    chosen = samples[:: max(1, len(samples) // n)][:n]
    h, w = model.image_size
    x = torch.from_numpy(eval_batch([s.image for s in chosen], model))
    tokens = tokenize([s.caption for s in chosen])
    torch.manual_seed(seed)
    with torch.no_grad():
        keep, mask = model.random_keep(len(chosen), "cpu")
        gray = model.grayscale(x)
        vis = model.image_tokens(gray, keep)
        pred = model.tir(vis, keep, model.text_tokens(tokens), tokens == 0, model.num_patches)
    p, (gh, gw) = model.patch, model.grid
    def unpatchify(t):  # [B, N, p*p*3] -> [B, 3, H, W]
        return t.reshape(len(chosen), gh, gw, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(len(chosen), 3, h, w)
    m = mask.reshape(len(chosen), gh, gw).repeat_interleave(p, 1).repeat_interleave(p, 2)[:, None].bool()
    masked_input = torch.where(m, torch.zeros_like(gray), gray)
    recon = torch.where(m, unpatchify(pred), gray)
    rows = []
    for i in range(len(chosen)):
        rows.append(np.hstack([_to_bgr(a[i].numpy(), model.mean, model.std) for a in (x, masked_input, recon)]))
    return np.vstack(rows)


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m sen_train.visualize", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("retrieval", "tir"):
        p = sub.add_parser(name)
        p.add_argument("--ckpt", required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--split", default="test", choices=("train", "val", "test"))
        p.add_argument("--out", default=f"{name}.png")
    r = sub.choices["retrieval"]
    r.add_argument("--caption-index", type=int, help="query with caption I of the split (its identity is known)")
    r.add_argument("--query", help="free text query")
    r.add_argument("--pid", type=int, help="the identity a free text query describes (for the frames)")
    r.add_argument("--k", type=int, default=10)
    sub.choices["tir"].add_argument("--n", type=int, default=4)
    args = ap.parse_args(argv)
    from sen_train.checkpoint import CheckpointError, load_model
    from sen_train.data import DatasetError, read_dataset

    try:
        model = load_model(args.ckpt)
        samples = read_dataset(args.data)[args.split]
        if not samples:
            raise ValueError(f"the {args.split} split is empty")
        if args.what == "retrieval":
            if args.caption_index is not None:
                s = samples[args.caption_index]
                text, pid = s.caption, s.pid
            elif args.query:
                text, pid = args.query, args.pid
            else:
                raise ValueError("give --caption-index or --query")
            img = retrieval_grid(model, samples, text, pid, args.k)
        else:
            img = tir_sheet(model, samples, args.n)
    except (CheckpointError, DatasetError, ValueError, IndexError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cv2.imwrite(args.out, img):
        print(f"error: cannot write {args.out}", file=sys.stderr)
        return 2
    print(f"{args.what} -> {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
