"""The two exported graphs, as thin torch modules over a SEN model.

Image: float32 [B, 3, H, W] (already normalised) -> L2-normalised [B, D].
Text: int32 [B, L], L <= 77 -> L2-normalised [B, D]; the end-of-text position is found with an
argmax over the ids cast to float (exact: ids < 2^24), so the graph needs no int64 input.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ImageTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image)


class TextTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        feats = self.model.text_tokens(tokens.long())
        eot = tokens.float().argmax(dim=-1)
        pooled = feats.gather(1, eot[:, None, None].expand(-1, 1, feats.shape[-1])).squeeze(1)
        proj = self.model.clip.text_projection
        out = proj(pooled) if isinstance(proj, nn.Module) else pooled @ proj
        return F.normalize(out, dim=-1)
