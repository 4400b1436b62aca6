"""Checkpoints as safetensors + JSON (no pickles): a model dir that rebuilds the model on its own,
plus, for `last/`, the full training state needed to resume bit-for-bit on CPU."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sen_train.config import TrainConfig

FORMAT = "sen-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint dir that is missing, incomplete or of an unknown format."""


def _write_dir(path: Path, write) -> None:
    """Write into path.tmp, then swap it in, so a crash never leaves a half-written checkpoint."""
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _model_files(dirpath: Path, model, extra: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(dirpath / "model.safetensors"), metadata={"format": FORMAT})
    meta = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "num_classes": model.num_classes,
            "image_size": list(model.image_size), "embed_dim": model.embed_dim, "mean": list(model.mean),
            "std": list(model.std), **extra}
    (dirpath / "config.json").write_text(json.dumps(meta, indent=1))


def save_model(path: str | Path, model, **extra) -> None:
    _write_dir(Path(path), lambda d: _model_files(d, model, extra))


def save_training(path: str | Path, model, optimizer, scheduler, sampler, progress: dict) -> None:
    """Model + optimizer + scheduler + sampler + RNG state."""
    def write(d: Path):
        _model_files(d, model, {k: progress[k] for k in ("epoch", "step") if k in progress})
        opt = optimizer.state_dict()
        tensors, plain = {}, {}
        for idx, st in opt["state"].items():
            for name, value in st.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
                else:
                    plain[f"{idx}.{name}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        save_file(tensors, str(d / "train_state.safetensors"))
        state = {"optimizer_groups": opt["param_groups"], "optimizer_plain": plain,
                 "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(),
                 "python_rng": random.getstate()[1], "progress": progress}
        (d / "train_state.json").write_text(json.dumps(state))
    _write_dir(Path(path), write)


def load_training(path: str | Path, model, optimizer, scheduler, sampler) -> dict:
    path = Path(path)
    for name in ("model.safetensors", "train_state.safetensors", "train_state.json"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is not a resumable checkpoint: {name} is missing")
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    tensors = load_file(str(path / "train_state.safetensors"))
    state = json.loads((path / "train_state.json").read_text())
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    for key, value in state["optimizer_plain"].items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["optimizer_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))
    random.setstate((3, tuple(state["python_rng"]), None))
    return state["progress"]


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file() or not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{path} is not a checkpoint dir (needs model.safetensors and config.json)")
    try:
        meta = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: invalid JSON: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a {FORMAT} file")
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(f"{cfg_path}: checkpoint version {meta['version']} is newer than this code ({VERSION})")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the SEN model of a checkpoint dir, in eval mode."""
    from sen_train.model import SEN

    meta = read_meta(path)
    model = SEN(TrainConfig.from_dict(meta["config"]), num_classes=int(meta["num_classes"]))
    model.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
    return model.to(device).eval()
