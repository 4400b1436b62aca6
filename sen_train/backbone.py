"""CLIP backbone factory: any open_clip config (or a project config) at any image size, and
pretrained weights from an open_clip tag or a local file, with the position embedding resized.

Local files: OpenAI's TorchScript `.pt`, an open_clip state dict (`.pt/.pth/.bin`, read with
`torch.load(weights_only=True)`), or `.safetensors`.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_registered = False


class WeightsError(ValueError):
    """Pretrained weights that are missing, unreadable or do not fit the architecture."""


def _open_clip():
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return open_clip


def model_config(name: str) -> dict:
    cfg = _open_clip().get_model_config(name)
    if cfg is None:
        raise WeightsError(f"unknown model config '{name}' (open_clip configs or: tiny, small)")
    return cfg


def round_image_size(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """(H, W) rounded to the nearest multiple of the patch size (at least one patch)."""
    return tuple(max(patch, int(round(s / patch)) * patch) for s in size)


def create_clip(name: str, image_size: tuple[int, int]):
    """An untrained open_clip CLIP of config `name` for images of `image_size` (rounded to patches)."""
    oc = _open_clip()
    patch = model_config(name)["vision_cfg"]["patch_size"]
    size = round_image_size(tuple(image_size), patch)
    import logging

    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: we load our own
    try:
        model = oc.create_model(name, pretrained=None, force_image_size=size, load_weights=False)
    finally:
        log.setLevel(level)
    model._sen_config_name = name
    return model, size


def resize_pos_embed(pos: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int] | None = None,
                     extra_tokens: int = 1) -> torch.Tensor:
    """Bilinear resize of a ViT position embedding [extra + gh*gw, C] to `new_grid`.

    `old_grid` may be omitted when the stored grid is square, or inferred as the factorisation of
    the token count whose aspect ratio is closest to the new grid's.
    """
    extra, grid = pos[:extra_tokens], pos[extra_tokens:]
    n = grid.shape[0]
    if old_grid is None:
        old_grid = infer_grid(n, new_grid)
    if old_grid[0] * old_grid[1] != n:
        raise WeightsError(f"position embedding has {n} patch tokens, not a {old_grid[0]}x{old_grid[1]} grid")
    if tuple(old_grid) == tuple(new_grid):
        return pos
    img = grid.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2).float()
    img = F.interpolate(img, size=tuple(new_grid), mode="bilinear", align_corners=False)
    grid = img.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(pos.dtype)
    return torch.cat([extra, grid], dim=0)


def infer_grid(n: int, like: tuple[int, int]) -> tuple[int, int]:
    side = math.isqrt(n)
    if side * side == n:
        return side, side
    target = like[0] / like[1]
    pairs = [(h, n // h) for h in range(1, n + 1) if n % h == 0]
    return min(pairs, key=lambda p: abs(math.log(p[0] / p[1]) - math.log(target)))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file; TorchScript archives (OpenAI) are detected and unpacked."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        elif zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") or "/code/" in n
                                              for n in zipfile.ZipFile(path).namelist()):
            sd = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as e:  # every reader has its own error types; report them in one line
        raise WeightsError(f"cannot read weights file {path}: {type(e).__name__}: {e}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(sd).__name__}")
    out = {}
    for k, v in sd.items():
        if not torch.is_tensor(v):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        out[k] = v
    for k in ("input_resolution", "context_length", "vocab_size"):  # OpenAI's scalar buffers
        out.pop(k, None)
    return out


def load_pretrained(model, source: str, grid: tuple[int, int] | None = None) -> list[str]:
    """Load CLIP weights into `model` from a local file or an open_clip tag; returns notes.

    Raises WeightsError naming the mismatched keys when the weights do not fit.
    """
    path = Path(source)
    if not path.is_file():
        path = _download_tag(model, source)
    sd = read_state_dict(path)
    derived = {n for n, _ in model.named_buffers()} - set(model.state_dict())
    for k in derived & set(sd):  # e.g. a TorchScript archive's attn_mask, which the model builds itself
        del sd[k]
    notes = []
    key = "visual.positional_embedding"
    target = model.state_dict()
    if key in sd and key in target and sd[key].shape != target[key].shape:
        new_grid = tuple(model.visual.grid_size)
        sd[key] = resize_pos_embed(sd[key], new_grid, grid)
        notes.append(f"resized {key} to grid {new_grid[0]}x{new_grid[1]}")
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
                  for k, v in sd.items() if k in target and v.shape != target[k].shape]
    missing = sorted(set(target) - set(sd))
    unexpected = sorted(set(sd) - set(target))
    if mismatched or missing or unexpected:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: " + "; ".join(mismatched[:8]))
        if missing:
            parts.append(f"{len(missing)} missing keys: " + ", ".join(missing[:8]))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: " + ", ".join(unexpected[:8]))
        raise WeightsError(f"weights {path} do not fit the model: " + " | ".join(parts))
    model.load_state_dict(sd)
    return notes


def _download_tag(model, tag: str) -> Path:
    oc = _open_clip()
    name = getattr(model, "_sen_config_name", None)
    cfg = oc.get_pretrained_cfg(name, tag) if name else {}
    if not cfg:
        raise WeightsError(f"'{tag}' is neither a weights file nor a pretrained tag of {name} "
                           f"(tags: {', '.join(oc.list_pretrained_tags_by_model(name)) or 'none'})")
    try:
        return Path(oc.download_pretrained(cfg))
    except Exception as e:
        raise WeightsError(f"cannot fetch pretrained '{name}/{tag}' (offline? pass a local file instead): "
                           f"{type(e).__name__}: {e}") from None
