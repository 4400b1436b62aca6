"""Train SEN.

    python -m sen_train.train --config tiny|small|sen-vit-b-16|cfg.yaml --data DIR --out RUN_DIR \
        [--set key=value ...] [--resume]

Writes RUN_DIR/last/ (every epoch, resumable), RUN_DIR/best/ (best val R1; never chosen on test),
RUN_DIR/metrics.jsonl (losses and evaluations) and RUN_DIR/results.json (final test metrics).

`train` orchestrates the steps: `setup_run` builds the run, then each epoch is `train_one_epoch`,
`evaluate_epoch` (val, model selection) and `save_last`; `finish_run` evaluates best/ on test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from sen_train.checkpoint import CheckpointError, load_model, load_training, save_model, save_training
from sen_train.config import REQUIRED, ConfigError, TrainConfig, apply_overrides, load_config
from sen_train.data import DatasetError, read_dataset
from sen_train.distributed import barrier, init_from_env
from sen_train.evaluate import evaluate
from sen_train.loader import PairDataset, collate
from sen_train.metrics import format_table
from sen_train.sampler import IdentityBatchSampler, ReferenceIdentitySampler


PAPERS_PROTOCOL = "the papers' protocol (optimistic): the best epoch picked on the test split itself"


class TrainingError(RuntimeError):
    """A run that cannot start or continue (e.g. an existing run dir without --resume)."""


class WarmupCosine:
    """LR multiplier: linear warm-up from 0.1 to 1, then cosine to 0 (per optimiser step)."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, max(1, total)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return 0.1 + 0.9 * step / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class EpochWarmupCosine:
    """The reference's schedule (IRRA's LRSchedulerWithWarmup), stepped per epoch: epoch e (0-based)
    runs at 0.1 + 0.9 e / warmup during warm-up, then 0.5 (1 + cos(pi (e - warmup) / (epochs - warmup)))."""

    def __init__(self, warmup: int, epochs: int):
        self.warmup, self.epochs, self.epoch = warmup, max(1, epochs), 0

    def __call__(self, step: int) -> float:
        e = self.epoch
        if e < self.warmup:
            return 0.1 + 0.9 * e / self.warmup
        return 0.5 * (1 + math.cos(math.pi * (e - self.warmup) / max(1, self.epochs - self.warmup)))


def reference_param_groups(model, cfg: TrainConfig) -> list[dict]:
    """The reference's rules (SEN solver/build.py), by parameter name, later rules winning: lr, weight
    decay; x new_module_lr_mult for the cross-modal parts (TIR cross-attention and transformer, MLM
    head); any bias at 2x lr without weight decay; the ID classifier at x new_module_lr_mult (its bias
    without weight decay). Everything else, TIR projections and norms included, at 1x with decay."""
    cross = {id(p) for m in (getattr(model, "tir", None), getattr(model, "mlm", None)) if m is not None
             for name, p in m.named_parameters() if name.startswith(("cross.", "blocks."))}
    mlm = {id(p) for p in (model.mlm.parameters() if getattr(model, "mlm", None) is not None else [])}
    out = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr, wd = cfg.lr, cfg.weight_decay
        if id(p) in cross or id(p) in mlm:
            lr = cfg.lr * cfg.new_module_lr_mult
        if "bias" in name:
            lr, wd = cfg.lr * 2, 0.0
        if name.startswith("classifier."):
            lr = cfg.lr * cfg.new_module_lr_mult
        out.append({"params": [p], "lr": lr, "weight_decay": wd, "name": name})
    return out


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Backbone at lr, new modules (ID, TIR, MLM heads) at lr x new_module_lr_mult; no weight decay
    on biases, norms, embeddings and other 1-D parameters. `param_groups: reference` gives the
    reference's rules instead (`reference_param_groups`)."""
    if cfg.param_groups == "reference":
        return reference_param_groups(model, cfg)
    new_ids = {id(p) for m in model.new_modules() for p in m.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "embedding" in name or name.endswith("class_embedding")
        groups.setdefault((id(p) in new_ids, no_decay), []).append(p)
    out = []
    for (new, no_decay), params in sorted(groups.items()):
        lr = cfg.lr * (cfg.new_module_lr_mult if new else 1.0)
        out.append({"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else cfg.weight_decay})
    return out


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(cfg: TrainConfig, device: torch.device):
    """fp32 master weights always; autocast only changes the compute dtype of the forward pass."""
    mode = cfg.amp if cfg.amp != "auto" else ("fp16" if device.type == "cuda" else "off")
    if mode == "off":
        return contextlib.nullcontext, None
    dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _better(metrics: dict, best: dict | None) -> bool:
    return best is None or (metrics["R1"], metrics["mAP"]) > (best["R1"], best["mAP"])


@dataclass
class TrainRun:
    """Everything one training process works with, built once by `setup_run` and shared by the steps
    that `train` orchestrates (epoch loop, evaluation, checkpoints, final results)."""

    cfg: TrainConfig
    out: Path
    log_path: Path
    rank: int
    world_size: int
    is_main: bool  # rank 0: the one process that logs, evaluates and writes files
    progress: bool
    device: torch.device
    data: dict
    model: torch.nn.Module
    net: torch.nn.Module  # the model as trained: DistributedDataParallel-wrapped with several ranks
    dataset: PairDataset
    sampler: IdentityBatchSampler | ReferenceIdentitySampler
    loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine | EpochWarmupCosine
    scheduler: torch.optim.lr_scheduler.LambdaLR
    autocast: Callable
    scaler: torch.amp.GradScaler | None
    state: dict = field(default_factory=lambda: {"epoch": 0, "step": 0, "best": None})


def _check_start(cfg: TrainConfig, out: Path, resume: bool) -> None:
    """Refuse, before anything is created, a run that cannot start: missing pretrained weights, an
    existing run without --resume, or --resume with nothing to resume."""
    if cfg.model.pretrained == REQUIRED and not resume:
        raise TrainingError(
            f"this preset fine-tunes pretrained CLIP weights ({cfg.model.name}): pass them with --set "
            f"model.pretrained=PATH (OpenAI's ViT-B-16.pt, e.g. ~/.cache/clip/ViT-B-16.pt, or a .safetensors "
            f"file), or --set model.pretrained=none to train from random weights")
    if (out / "last").exists() and not resume:
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not (out / "last").exists():
        raise TrainingError(f"nothing to resume: {out / 'last'} does not exist")


def _load_train_data(cfg: TrainConfig, data_root: str, out: Path, main: bool, progress: bool):
    """Read the dataset and, with caption pruning on, the pruned captions (rank 0 tags the corpus,
    the other ranks read its cache). Returns (splits, pruned captions or None)."""
    data = read_dataset(data_root)
    train_samples = data["train"]
    if not train_samples:
        raise TrainingError(f"{data_root}: the train split is empty")
    pruned = None
    if cfg.loss.prune_p > 0:
        from sen_train.pruning import default_cache_path, pruned_captions

        tagger = cfg.loss.pos_tagger
        captions, cache = [s.caption for s in train_samples], default_cache_path(data_root, out, tagger)
        if main:  # rank 0 tags the corpus once; the others read its cache
            pruned = pruned_captions(captions, cache, progress, tagger)
        barrier()
        if not main:
            pruned = pruned_captions(captions, cache, progress=False, tagger=tagger)
    return data, pruned


def _build_model(cfg: TrainConfig, num_classes: int, resume: bool, device: torch.device):
    """The SEN model on `device`, with the pretrained CLIP weights loaded unless resuming (the
    checkpoint brings its own)."""
    from sen_train.model import SEN

    model = SEN(cfg, num_classes=num_classes)
    if cfg.model.pretrained and not resume:
        from sen_train.backbone import load_pretrained

        for note in load_pretrained(model.clip, cfg.model.pretrained, cfg.model.pretrained_grid):
            print(note)
    model.to(device)
    return model


def _build_loader(cfg: TrainConfig, train_samples: list, model, pruned, rank: int, world_size: int):
    """The training dataset, its identity batch sampler (this rank's share of each global batch) and
    the DataLoader over them. Returns (dataset, sampler, loader)."""
    dataset = PairDataset(train_samples, model.image_size, model.mean, model.std, train=True, flip_p=cfg.flip_p,
                          prune_p=cfg.loss.prune_p, pruned=pruned, seed=cfg.seed, augment=cfg.augment)
    # batch_size is the global batch: each rank trains on its whole identity groups of it
    sampler_class = ReferenceIdentitySampler if cfg.sampler == "reference" else IdentityBatchSampler
    try:
        sampler = sampler_class([s.pid for s in train_samples], cfg.batch_size, cfg.k_per_id, cfg.seed,
                                rank=rank, world_size=world_size)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    # A private generator: creating a loader iterator must not consume the global RNG (resume equivalence).
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                         num_workers=cfg.workers, generator=torch.Generator())
    return dataset, sampler, loader


def _build_optimizer(cfg: TrainConfig, model, steps_per_epoch: int):
    """Adam over `param_groups` and its LR schedule (per epoch or per step, `cfg.lr_schedule`).
    Returns (optimizer, schedule, scheduler)."""
    optimizer = torch.optim.Adam(param_groups(model, cfg), eps=cfg.adam_eps)
    schedule = EpochWarmupCosine(cfg.warmup_epochs, cfg.epochs) if cfg.lr_schedule == "epoch" else \
        WarmupCosine(cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)
    return optimizer, schedule, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _wrap_distributed(model, device: torch.device, world_size: int):
    """The module to train: the model itself, or with several ranks the model in DistributedDataParallel."""
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # some parameters are idle by configuration (e.g. CLIP's logit scale without ITC)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)
    return model


def setup_run(cfg: TrainConfig, data_root: str, out: Path, resume: bool, progress: bool) -> TrainRun:
    """Join the process group and build everything a run needs, in a fixed order (the global RNG is
    seeded first, so the order of what consumes it is part of the run's reproducibility).

    Args:
        cfg: the run's configuration.
        data_root: the dataset root.
        out: the run dir (created; rank 0 writes config.json into it).
        resume: continue from out/last/ (model, optimizer, scheduler, sampler and progress).
        progress: show progress bars and tables (rank 0 only).

    Returns:
        The TrainRun, its state at the start of the first epoch to train.
    """
    rank, world_size = init_from_env()  # torchrun: one process per GPU (or CPU worker with gloo)
    main = rank == 0
    progress = progress and main
    out.mkdir(parents=True, exist_ok=True)
    if main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    seed_everything(cfg.seed + rank)
    device = pick_device(cfg.device)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())

    data, pruned = _load_train_data(cfg, data_root, out, main, progress)
    train_samples = data["train"]
    model = _build_model(cfg, len({s.pid for s in train_samples}), resume, device)
    dataset, sampler, loader = _build_loader(cfg, train_samples, model, pruned, rank, world_size)
    optimizer, schedule, scheduler = _build_optimizer(cfg, model, len(sampler))
    autocast, scaler = autocast_for(cfg, device)
    net = _wrap_distributed(model, device, world_size)
    run = TrainRun(cfg, out, out / "metrics.jsonl", rank, world_size, main, progress, device, data, model, net,
                   dataset, sampler, loader, optimizer, schedule, scheduler, autocast, scaler)
    if resume:
        run.state = load_training(out / "last", model, optimizer, scheduler, sampler)
        sampler.rank, sampler.world_size = rank, world_size
        if main:
            print(f"resumed from {out / 'last'} at epoch {run.state['epoch'] + 1}, step {run.state['step']}")
    return run


def _start_epoch(run: TrainRun, epoch: int) -> None:
    """Point the state, sampler and augmentation at `epoch`; with the per-epoch schedule, set this
    epoch's rate for all of its steps."""
    run.state["epoch"] = epoch
    run.sampler.set_epoch(epoch)
    run.dataset.set_epoch(epoch)
    if isinstance(run.schedule, EpochWarmupCosine):
        run.schedule.epoch = epoch
        for group, base in zip(run.optimizer.param_groups, run.scheduler.base_lrs):
            group["lr"] = base * run.schedule(0)


def _optimizer_step(run: TrainRun, loss: torch.Tensor) -> None:
    """Backward pass, optional gradient clipping and one optimizer and scheduler step (through the
    fp16 grad scaler when there is one)."""
    optimizer, scaler = run.optimizer, run.scaler
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if run.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    run.scheduler.step()


def train_one_epoch(run: TrainRun, epoch: int) -> bool:
    """Train epoch `epoch` (0-based) from the sampler's position in it, logging losses to metrics.jsonl
    every `log_every` steps and at the epoch's end.

    Args:
        run: the run, its state and sampler advanced step by step.
        epoch: the epoch to train.

    Returns:
        True when `max_steps` was reached (training stops mid-epoch), False when the epoch finished.
    """
    cfg, sampler, state = run.cfg, run.sampler, run.state
    _start_epoch(run, epoch)
    steps_per_epoch = len(sampler)  # the reference sampler's epochs differ in length
    run.net.train()
    bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch - sampler.skip,
               disable=not run.progress, unit="step")
    t0, seen = time.perf_counter(), 0
    for images, tokens, pids in bar:
        images, tokens, pids = images.to(run.device), tokens.to(run.device), pids.to(run.device)
        with run.autocast():
            losses = run.net(images, tokens, pids)
        _optimizer_step(run, losses["loss"])
        sampler.skip += 1
        state["step"] += 1
        seen += images.shape[0] * run.world_size
        values = {k: round(float(v.detach()), 5) for k, v in losses.items()}
        bar.set_postfix(loss=f"{values['loss']:.3f}")
        if run.is_main and (state["step"] % cfg.log_every == 0 or sampler.skip == steps_per_epoch):
            _log(run.log_path, {"epoch": epoch + 1, "step": state["step"], "lr": run.scheduler.get_last_lr()[0],
                                "samples_per_s": round(seen / (time.perf_counter() - t0), 2), **values})
        if cfg.max_steps and state["step"] >= cfg.max_steps:
            return True
    return False


def evaluate_epoch(run: TrainRun, epoch: int) -> None:
    """After epoch `epoch` (0-based; every `eval_every` epochs and after the last), on rank 0: evaluate
    val, keeping the best R1 (then mAP) model in best/; with `select: test-every-epoch`, also evaluate
    test and track its best epoch apart, labelled as the papers' protocol (never used to pick best/).

    Args:
        run: the run; its state's "best" and "best_test" are updated.
        epoch: the epoch just trained.
    """
    cfg, data, state = run.cfg, run.data, run.state
    if not run.is_main or not ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
        return
    if data["val"]:
        metrics = evaluate(run.model, data["val"], cfg.eval_batch_size, run.device)
        _log(run.log_path, {"epoch": epoch + 1, "step": state["step"], "split": "val", **metrics})
        if run.progress:
            print(f"val after epoch {epoch + 1}:\n{format_table(metrics)}", flush=True)
        if _better(metrics, state["best"]):
            state["best"] = {**metrics, "epoch": epoch + 1}
            save_model(run.out / "best", run.model, epoch=epoch + 1, step=state["step"], val=metrics)
    if cfg.select == "test-every-epoch" and data["test"]:
        # what the papers report (the reference selects its best epoch on test): kept apart, labelled
        metrics = evaluate(run.model, data["test"], cfg.eval_batch_size, run.device)
        _log(run.log_path, {"epoch": epoch + 1, "step": state["step"], "split": "test",
                            "protocol": PAPERS_PROTOCOL, **metrics})
        if run.progress:
            print(f"test after epoch {epoch + 1} [{PAPERS_PROTOCOL}]:\n{format_table(metrics)}", flush=True)
        if _better(metrics, state.get("best_test")):
            state["best_test"] = {**metrics, "epoch": epoch + 1}


def save_last(run: TrainRun) -> None:
    """Write the resumable last/ checkpoint (rank 0 writes; every rank waits, so that a resume never
    sees a half-written dir)."""
    if run.is_main:
        save_training(run.out / "last", run.model, run.optimizer, run.scheduler, run.sampler, run.state)
    barrier()


def finish_run(run: TrainRun, stopped: bool) -> dict:
    """Summarise the run. On rank 0 of a run that was not stopped by `max_steps`, also make sure best/
    exists (the last epoch when there is no val split) and evaluate it on test; rank 0 then writes
    results.json.

    Args:
        run: the trained run.
        stopped: whether training stopped early at `max_steps`.

    Returns:
        {"best_val", "steps"}, plus "papers_protocol" with `select: test-every-epoch` and "test" (the
        val-selected best/ on test) where it was evaluated.
    """
    state, out = run.state, run.out
    result = {"best_val": state["best"], "steps": state["step"]}
    if state.get("best_test"):
        result["papers_protocol"] = {"protocol": PAPERS_PROTOCOL, **state["best_test"]}
        if run.progress:
            best = state["best_test"]
            print(f"[{PAPERS_PROTOCOL}] epoch {best['epoch']}: R1 {best['R1']:.2f} mAP {best['mAP']:.2f} "
                  f"(not comparable with the val-selected test figures)")
    if not run.is_main:  # evaluation and the final files are rank 0's
        return result
    if not stopped:
        if not (out / "best").exists():  # no val split (ICFG-PEDES): the last epoch is the model
            save_model(out / "best", run.model, epoch=state["epoch"], step=state["step"])
        if run.data["test"]:
            best = load_model(out / "best", run.device)
            result["test"] = evaluate(best, run.data["test"], run.cfg.eval_batch_size, run.device)
            _log(run.log_path, {"split": "test", "checkpoint": "best", **result["test"]})
            if run.progress:
                print(f"test (best on val):\n{format_table(result['test'])}")
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


def train(cfg: TrainConfig, data_root: str, out_dir: str, resume: bool = False, progress: bool = True) -> dict:
    """Run training; returns {"best_val": ..., "test": ...}."""
    out = Path(out_dir)
    _check_start(cfg, out, resume)
    run = setup_run(cfg, data_root, out, resume, progress)
    stopped = False
    for epoch in range(run.state["epoch"], cfg.epochs):
        stopped = train_one_epoch(run, epoch)
        if stopped:
            save_last(run)
            break
        evaluate_epoch(run, epoch)
        run.state["epoch"] = epoch + 1
        run.sampler.set_epoch(epoch + 1)  # the next epoch starts from its first batch
        save_last(run)
    return finish_run(run, stopped)


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m sen_train.train", description="Train SEN.")
    ap.add_argument("--config", help="preset (tiny, small, sen-vit-b-16) or a YAML file (not needed with --resume)")
    ap.add_argument("--data", required=True, help="dataset root (CUHK-PEDES, ICFG-PEDES, RSTPReid or JSONL)")
    ap.add_argument("--out", required=True, help="run dir")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field, e.g. --set epochs=1 --set loss.tir=0")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint")
    ap.add_argument("--select", choices=["val", "test-every-epoch"],
                    help="val (default): best/ is picked on val; test-every-epoch: also evaluate test every epoch and "
                         "report its best epoch, labelled as the papers' protocol (optimistic)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.select:
        args.overrides.append(f"select={args.select}")
    from sen_train.backbone import WeightsError
    from sen_train.losses import BatchError
    from sen_train.pruning import TaggerUnavailable

    try:
        if args.resume:  # the run's own config, plus any overrides (e.g. --set max_steps=...)
            saved = Path(args.out) / "config.json"
            if not saved.is_file():
                raise TrainingError(f"nothing to resume: {saved} does not exist")
            cfg = apply_overrides(TrainConfig.from_dict(json.loads(saved.read_text())), args.overrides)
        elif args.config is None:
            raise ConfigError("--config is required (a preset: tiny, small, sen-vit-b-16; or a YAML file)")
        else:
            cfg = load_config(args.config, args.overrides)
        train(cfg, args.data, args.out, resume=args.resume, progress=not args.quiet)
    except (ConfigError, DatasetError, TrainingError, CheckpointError, WeightsError, TaggerUnavailable,
            BatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
