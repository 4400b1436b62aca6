"""The ablation study of issue 7: the `small` preset on SynthPEDES, same seed and budget for all.

    python scripts/ablation.py [--data demo_out/synthpedes] [--out runs/ablation] [--epochs 10] [--seed 0]

Writes RUN/<variant>/ for each variant and RUN/ablation.json + RUN/ablation.md (test metrics of
the best-on-val checkpoint, and the wall time of each run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sen_train.metrics import METRIC_NAMES as METRICS  # noqa: E402  (numpy only; torch loads lazily)

VARIANTS = {
    "a. ITC only (plain fine-tune)": ["loss.sdm=0", "loss.id=0", "loss.triplet=0", "loss.tir=0", "loss.itc=1",
                                     "loss.prune_p=0"],
    "b. SDM + ID": ["loss.triplet=0", "loss.tir=0", "loss.prune_p=0"],
    "c. SDM + ID + MLM (IRRA)": ["loss.triplet=0", "loss.tir=0", "loss.prune_p=0", "loss.mlm=1"],
    "d. SEN (full)": [],
    "e1. SEN without triplet": ["loss.triplet=0"],
    "e2. SEN without TIR": ["loss.tir=0"],
    "e3. SEN without pruning": ["loss.prune_p=0"],
    # issue 13: the authors' choices where ours differ (pos_tagger stays spaCy: NLTK's data is not installable here)
    "r1. SEN, reference options": ["sampler=reference", "augment=reference", "param_groups=reference",
                                   "adam_eps=1e-3", "lr_schedule=epoch", "model.tir_decoder=reference"],
    "r2. SEN, reference TIR decoder": ["model.tir_decoder=reference"],
    "r3. SEN, Adam eps 1e-3 only": ["adam_eps=1e-3"],
    "r4. SEN, reference options but eps 1e-8": ["sampler=reference", "augment=reference", "param_groups=reference",
                                                "lr_schedule=epoch", "model.tir_decoder=reference"],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo_out/synthpedes")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="training seed (data order, init, masks)")
    ap.add_argument("--only", nargs="*", help="variant prefixes to run (e.g. a d e2)")
    ap.add_argument("--combine", nargs="+", metavar="RUN_DIR",
                    help="no training: print the mean over finished seed runs (their ablation.json) as one table")
    ap.add_argument("--significance", nargs="+", metavar="RUN_DIR",
                    help="no training: paired identity-bootstrap of each variant against (d) on the test split, "
                         "per-query metrics averaged over the given seed runs")
    ap.add_argument("--tir-probe", metavar="CKPT",
                    help="no training: TIR loss of a checkpoint on --data's test split with each image's own caption "
                         "and with a caption of another identity (does the decoder use the text?)")
    args = ap.parse_args()
    if args.tir_probe:
        print(tir_probe(args.tir_probe, args.data))
        return 0
    if args.combine:
        print(combine([Path(d) for d in args.combine]))
        return 0
    if args.significance:
        print(significance([Path(d) for d in args.significance], args.data))
        return 0
    from sen_train.config import load_config
    from sen_train.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table_path = out / "ablation.json"
    table = json.loads(table_path.read_text()) if table_path.is_file() else {}
    for name, overrides in VARIANTS.items():
        if args.only and not any(name.startswith(p + ".") for p in args.only):
            continue
        if name in table:
            continue
        run = out / name.split(".")[0]
        t0 = time.perf_counter()
        result = train(load_config("small", [f"epochs={args.epochs}", f"seed={args.seed}", *overrides]), args.data, str(run),
                       resume=(run / "last").is_dir(), progress=False)
        table[name] = {**result["test"], "val_R1": result["best_val"]["R1"], "minutes": (time.perf_counter() - t0) / 60,
                       "seed": args.seed, "overrides": overrides}
        table_path.write_text(json.dumps(table, indent=1))
        print(name, {k: round(v, 2) for k, v in result["test"].items()}, flush=True)
    lines = ["| variant | R1 | R5 | R10 | mAP | mINP | val R1 | minutes |", "|---|---|---|---|---|---|---|---|"]
    for name, r in table.items():
        lines.append(f"| {name} | {r['R1']:.2f} | {r['R5']:.2f} | {r['R10']:.2f} | {r['mAP']:.2f} | {r['mINP']:.2f} "
                     f"| {r['val_R1']:.2f} | {r['minutes']:.1f} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def combine(run_dirs: list[Path]) -> str:
    """Mean of each metric over seeds, plus R1 per seed: one seed of 30 test identities moves R1 by points."""
    tables = []
    for d in run_dirs:
        path = d / "ablation.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist (run scripts/ablation.py --out {d} first)")
        tables.append(json.loads(path.read_text()))
    names = [n for n in VARIANTS if all(n in t for t in tables)]
    seeds = [next(iter(t.values())).get("seed", "?") for t in tables]
    head = "| variant | " + " | ".join(METRICS) + " | R1 per seed (" + ", ".join(map(str, seeds)) + ") |"
    lines = [head, "|---" * (len(METRICS) + 2) + "|"]
    for n in names:
        means = [sum(t[n][m] for t in tables) / len(tables) for m in METRICS]
        per_seed = " / ".join(f"{t[n]['R1']:.1f}" for t in tables)
        lines.append(f"| {n} | " + " | ".join(f"{v:.2f}" for v in means) + f" | {per_seed} |")
    return "\n".join(lines)


def significance(run_dirs: list[Path], data: str, reference: str = "d") -> str:
    """Each variant minus the reference, with 95% intervals from resampling test identities.

    Test R1 on 30 identities moves by several points between equally good models; this says which
    differences the test split can actually resolve."""
    import numpy as np

    from sen_train.checkpoint import load_model
    from sen_train.data import read_dataset
    from sen_train.evaluate import encode_split
    from sen_train.metrics import paired_bootstrap, per_query_metrics

    test = read_dataset(data)["test"]
    pids = np.array([s.pid for s in test])  # encode_split keeps the split's caption order
    per_variant = {}
    for name in VARIANTS:
        key = name.split(".")[0]
        ckpts = [d / key / "best" for d in run_dirs]
        if not all(c.is_dir() for c in ckpts):
            continue
        runs = []
        for c in ckpts:
            txt, _, img, img_pids = encode_split(load_model(str(c)), test)
            runs.append(per_query_metrics(txt @ img.T, pids, img_pids))
        per_variant[name] = {m: sum(r[m] for r in runs) / len(runs) for m in METRICS}
    ref = next((n for n in per_variant if n.startswith(reference + ".")), None)
    if ref is None:
        raise SystemExit(f"error: no finished '{reference}' variant in {', '.join(map(str, run_dirs))}")
    lines = [f"| variant | R1 | Δ R1 vs {ref.split('.')[0]} [95% CI] | mAP | Δ mAP [95% CI] |", "|---|---|---|---|---|"]
    for name, m in per_variant.items():
        cells = []
        for metric in ("R1", "mAP"):
            if name == ref:
                cells += [f"{m[metric].mean():.2f}", "(reference)"]
                continue
            d, lo, hi = paired_bootstrap(m[metric], per_variant[ref][metric], pids)
            cells += [f"{m[metric].mean():.2f}", f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tir_probe(ckpt: str, data: str, seed: int = 0) -> str:
    """TIR's masked-patch MSE with matched vs. mismatched captions, same images and masks.

    If the two are equal, the decoder restores colour without reading the text, so TIR cannot be
    teaching the encoders which words go with which colours."""
    import numpy as np
    import torch

    from sen_train.checkpoint import load_model
    from sen_train.data import read_dataset
    from sen_train.loader import tokenize
    from sen_train.transforms import eval_batch

    model = load_model(ckpt)
    if model.tir is None:
        raise SystemExit(f"error: {ckpt} was trained without TIR (loss.tir=0)")
    test = read_dataset(data)["test"]
    rng = np.random.default_rng(seed)
    pids = np.array([s.pid for s in test])
    other = np.array([rng.choice(np.flatnonzero(pids != p)) for p in pids])  # a caption of someone else
    torch.manual_seed(seed)
    sums = {"matched": 0.0, "other identity": 0.0, "empty caption": 0.0}
    with torch.no_grad():
        for i in range(0, len(test), 64):
            batch = test[i : i + 64]
            x = torch.from_numpy(eval_batch([s.image for s in batch], model))
            keep, mask = model.random_keep(len(batch), x.device)
            captions = {"matched": [s.caption for s in batch],
                        "other identity": [test[j].caption for j in other[i : i + 64]],
                        "empty caption": ["a person"] * len(batch)}
            for name, caps in captions.items():
                tokens = tokenize(caps).long()
                loss = model.tir_loss(x, model.text_tokens(tokens), tokens, keep, mask)
                sums[name] += float(loss) * len(batch)
    lines = ["| caption given to TIR | masked-patch MSE |", "|---|---|"]
    lines += [f"| {k} | {v / len(test):.4f} |" for k, v in sums.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
