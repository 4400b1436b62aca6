"""SEN objectives as plain functions of features and identities (easy to check by hand).

All take L2-normalised image features `img` [B, D] and text features `txt` [B, D] of paired
samples (row i of each is one (image, caption) pair) and identities `pids` [B].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchError(ValueError):
    """A batch the objectives are undefined on (e.g. a single identity)."""


def check_identities(pids: torch.Tensor) -> None:
    if torch.unique(pids).numel() < 2:
        raise BatchError(f"batch of {pids.numel()} samples holds only one identity; SDM, ID and triplet "
                         "need at least two (use the identity sampler: batch_size >= 2 * k_per_id)")


def same_identity(pids: torch.Tensor) -> torch.Tensor:
    return (pids[:, None] == pids[None, :]).float()


def sdm_loss(img: torch.Tensor, txt: torch.Tensor, pids: torch.Tensor, tau: float = 0.02,
             eps: float = 1e-8) -> torch.Tensor:
    """Similarity distribution matching: KL(softmax(cos/tau) || row-normalised same-identity), both ways."""
    labels = same_identity(pids)
    target = labels / labels.sum(dim=1, keepdim=True)
    sim = txt @ img.t() / tau  # [texts, images]
    loss = 0.0
    for logits in (sim, sim.t()):
        pred = F.softmax(logits, dim=1)
        loss = loss + (pred * (F.log_softmax(logits, dim=1) - torch.log(target + eps))).sum(dim=1).mean()
    return loss


def id_loss(img_logits: torch.Tensor, txt_logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """Identity classification of both modalities by one shared classifier (mean of the two CEs)."""
    return (F.cross_entropy(img_logits, pids) + F.cross_entropy(txt_logits, pids)) / 2


def triplet_loss(img: torch.Tensor, txt: torch.Tensor, pids: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Cross-modal triplet on distance 1 - cos: positive = the paired sample, negative = the hardest
    (closest) sample of another identity in the other modality; image and text anchors, summed."""
    dist = 1 - img @ txt.t()  # [images, texts]
    other = same_identity(pids) == 0
    pos = dist.diagonal()
    big = torch.finfo(dist.dtype).max
    hardest_txt = dist.masked_fill(~other, big).min(dim=1).values  # per image anchor
    hardest_img = dist.t().masked_fill(~other, big).min(dim=1).values  # per text anchor
    return F.relu(margin + pos - hardest_txt).mean() + F.relu(margin + pos - hardest_img).mean()


def itc_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over the paired samples (the plain baseline)."""
    logits = logit_scale * img @ txt.t()
    target = torch.arange(img.shape[0], device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def masked_patch_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over masked patches only. pred/target [B, N, P], mask [B, N] (1 = masked)."""
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)
