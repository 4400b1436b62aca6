"""SEN: a CLIP dual encoder plus the training-only heads (ID classifier, TIR decoder, MLM head).

Retrieval features: image = projected CLS token, text = projected end-of-text token, both
L2-normalised. The heads add no inference cost: `encode_image`/`encode_text` never touch them.
Text may be any length L <= context length (the position embedding and causal mask are sliced),
which is what lets the exported text tower run short queries cheaply.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sen_train import losses as L
from sen_train.backbone import create_clip
from sen_train.config import LossConfig, TrainConfig
from sen_train.distributed import gather, gather_with_grad

GRAY = (0.299, 0.587, 0.114)
GRAY_REFERENCE = (0.2989, 0.5870, 0.1140)  # the reference's weights, applied to normalised channels


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Losses run in at least float32: fp16/bf16 autocast outputs are widened, float64 stays float64
    (the DDP equivalence test runs in float64 so its comparison does not hinge on rounding order)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's GELU approximation, which its transformers (and the reference's decoder) use."""
    return x * torch.sigmoid(1.702 * x)


def _block_stack(width: int, heads: int, layers: int, activation="gelu") -> nn.TransformerEncoder:
    """Pre-norm transformer blocks (the layout of CLIP's residual attention blocks)."""
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation=activation,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def sincos_2d(width: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions [1 + gh*gw, width] as MAE defines them, row 0 (CLS) zero.

    The first half of the channels encodes the column, the second half the row (MAE builds its
    meshgrid with the width axis first); each half is [sin(pos * w_i), cos(pos * w_i)] with
    w_i = 10000^(-i / (width / 4))."""
    if width % 4:
        raise ValueError(f"sin-cos positions need a width divisible by 4, got {width}")
    gh, gw = grid
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                                indexing="ij")
    freq = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width / 4))

    def encode(pos):
        angles = pos.reshape(-1, 1) * freq
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(cols), encode(rows)], dim=1)
    return torch.cat([torch.zeros(1, width, dtype=torch.float64), table]).float()


class TIRDecoder(nn.Module):
    """Text-guided image restoration: visible grayscale patch tokens attend to the caption's tokens
    (padding masked out), then a small transformer predicts the colour pixels of every patch."""

    def __init__(self, vis_width: int, txt_width: int, width: int, layers: int, heads: int,
                 num_patches: int, patch_pixels: int):
        super().__init__()
        self.vis_in = nn.Linear(vis_width, width)
        self.txt_in = nn.Linear(txt_width, width)
        self.ln_q, self.ln_kv = nn.LayerNorm(width), nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.pos = nn.Parameter(torch.randn(num_patches + 1, width) * 0.02)
        self.blocks = _block_stack(width, heads, layers)
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_pixels)

    def forward(self, vis: torch.Tensor, keep: torch.Tensor, txt: torch.Tensor, txt_pad: torch.Tensor,
                num_patches: int) -> torch.Tensor:
        """vis [B, 1+Nv, Wv] (CLS + visible), keep [B, Nv] patch indices, txt [B, L, Wt],
        txt_pad [B, L] True at padding. Returns predicted pixels [B, N, P] for all patches."""
        q = self.vis_in(vis)
        kv = self.ln_kv(self.txt_in(txt))
        q = q + self.cross(self.ln_q(q), kv, kv, key_padding_mask=txt_pad, need_weights=False)[0]
        B, _, W = q.shape
        full = self.mask_token.to(q.dtype).expand(B, num_patches + 1, W).clone()
        full[:, 0] = q[:, 0]
        full = full.scatter(1, (keep + 1).unsqueeze(-1).expand(-1, -1, W), q[:, 1:])
        x = self.blocks(full + self.pos.to(q.dtype))
        return self.head(self.ln(x[:, 1:]))


class ReferenceTIRDecoder(nn.Module):
    """The TIR decoder of the authors' code (`model.tir_decoder: reference`), for reproducing the paper.

    Works on the *projected* tokens of both towers (embedding width). Image tokens (CLS + visible) and
    all text tokens are layer-normed; image tokens are embedded, mask tokens fill the masked patches,
    fixed 2-D sin-cos positions are added; then every token (CLS, visible, masked) cross-attends to all
    text tokens, padding included, and the attention output *replaces* the tokens (no residual); a
    CLIP transformer (QuickGELU) and a linear head predict the colour pixels of every patch."""

    def __init__(self, embed_dim: int, width: int, layers: int, heads: int, grid: tuple[int, int],
                 patch_pixels: int):
        super().__init__()
        self.norm_image, self.norm_text = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.embed = nn.Linear(embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.register_buffer("pos", sincos_2d(width, grid), persistent=False)
        self.norm_query = nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, kdim=embed_dim, vdim=embed_dim, batch_first=True)
        self.norm_attended = nn.LayerNorm(width)
        self.blocks = _block_stack(width, heads, layers, activation=quick_gelu)
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_pixels)
        self._init_like_clip(width, layers)

    def _init_like_clip(self, width: int, layers: int) -> None:
        """CLIP's initialisation, which the reference applies to its decoder: attention in-projections
        N(0, width^-1/2), output projections N(0, width^-1/2 (2 layers)^-1/2), MLP in N(0, (2 width)^-1/2)."""
        attn_std, proj_std, fc_std = width ** -0.5, width ** -0.5 * (2 * layers) ** -0.5, (2 * width) ** -0.5
        attentions = [self.cross] + [b.self_attn for b in self.blocks.layers]
        for a in attentions:
            for w in (a.in_proj_weight, a.q_proj_weight, a.k_proj_weight, a.v_proj_weight):
                if w is not None:
                    nn.init.normal_(w, std=attn_std)
            nn.init.normal_(a.out_proj.weight, std=proj_std)
        for b in self.blocks.layers:
            nn.init.normal_(b.linear1.weight, std=fc_std)
            nn.init.normal_(b.linear2.weight, std=proj_std)

    def forward(self, vis: torch.Tensor, keep: torch.Tensor, txt: torch.Tensor, num_patches: int) -> torch.Tensor:
        """vis [B, 1+Nv, D] projected CLS + visible tokens, keep [B, Nv] their patch indices,
        txt [B, L, D] projected text tokens (all L, padding too). Returns pixels [B, N, P]."""
        x = self.embed(self.norm_image(vis))
        B, _, W = x.shape
        full = self.mask_token.to(x.dtype).expand(B, num_patches + 1, W).clone()
        full[:, 0] = x[:, 0]
        full = full.scatter(1, (keep + 1).unsqueeze(-1).expand(-1, -1, W), x[:, 1:])
        full = full + self.pos.to(full.dtype)
        kv = self.norm_text(txt)
        x = self.norm_attended(self.cross(self.norm_query(full), kv, kv, need_weights=False)[0])
        return self.head(self.ln(self.blocks(x))[:, 1:])


class MLMHead(nn.Module):
    """IRRA's implicit relation reasoning, lightly: masked caption tokens attend to image tokens
    and predict the original token ids."""

    def __init__(self, txt_width: int, vis_width: int, layers: int, heads: int, vocab: int):
        super().__init__()
        self.mask_embedding = nn.Parameter(torch.randn(txt_width) * 0.02)
        self.img_in = nn.Linear(vis_width, txt_width)
        self.ln_q, self.ln_kv = nn.LayerNorm(txt_width), nn.LayerNorm(txt_width)
        self.cross = nn.MultiheadAttention(txt_width, heads, batch_first=True)
        self.blocks = _block_stack(txt_width, heads, layers)
        self.head = nn.Sequential(nn.Linear(txt_width, txt_width), nn.GELU(), nn.LayerNorm(txt_width),
                                  nn.Linear(txt_width, vocab))

    def forward(self, txt: torch.Tensor, img: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """Token logits [B, L, vocab], or [n, vocab] for the positions where the bool mask `at` is set.

        Projecting only the masked positions onto the 49k-word vocabulary is what keeps MLM cheap:
        the full [B, 77, vocab] logits cost more than the rest of a `small` training step."""
        kv = self.ln_kv(self.img_in(img))
        x = self.blocks(txt + self.cross(self.ln_q(txt), kv, kv, need_weights=False)[0])
        return self.head(x if at is None else x[at])


class SEN(nn.Module):
    def __init__(self, cfg: TrainConfig, num_classes: int = 0):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.clip, self.image_size = create_clip(cfg.model.name, cfg.model.image_size)
        self.mean, self.std = tuple(cfg.model.mean), tuple(cfg.model.std)
        v = self.clip.visual
        self.patch = v.conv1.kernel_size[0]
        self.grid = tuple(v.grid_size)
        self.num_patches = self.grid[0] * self.grid[1]
        vis_width, txt_width = v.conv1.out_channels, self.clip.transformer.width
        self.embed_dim = v.output_dim
        lc = cfg.loss
        self.classifier = None
        if lc.id > 0 and num_classes > 0:
            self.classifier = nn.Linear(self.embed_dim, num_classes)
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)
        self.tir = None
        if lc.tir > 0:
            m = cfg.model
            pixels = self.patch * self.patch * 3
            if m.tir_decoder == "reference":
                self.tir = ReferenceTIRDecoder(self.embed_dim, m.tir_width, m.tir_layers, m.tir_heads,
                                               self.grid, pixels)
            else:
                self.tir = TIRDecoder(vis_width, txt_width, m.tir_width, m.tir_layers, m.tir_heads,
                                      self.num_patches, pixels)
        self.mlm = None
        if lc.mlm > 0:
            self.mlm = MLMHead(txt_width, vis_width, cfg.model.mlm_layers, max(1, txt_width // 64),
                               self.clip.vocab_size)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    # ---- towers -------------------------------------------------------------------------------
    def new_modules(self) -> list[nn.Module]:
        """Modules trained from scratch (the published recipe gives them a higher learning rate)."""
        return [m for m in (self.classifier, self.tir, self.mlm) if m is not None]

    def image_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Final image tokens [B, 1+N, W] (CLS first); `keep` [B, Nv] encodes only those patches."""
        v = self.clip.visual
        t = v.conv1(x).flatten(2).transpose(1, 2) + v.positional_embedding[1:].to(x.dtype)
        if keep is not None:
            t = t.gather(1, keep.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
        cls = (v.class_embedding + v.positional_embedding[0]).to(t.dtype).expand(t.shape[0], 1, -1)
        t = v.ln_pre(torch.cat([cls, t], dim=1))
        return v.ln_post(v.transformer(t))

    def text_tokens(self, tokens: torch.Tensor, replace: torch.Tensor | None = None) -> torch.Tensor:
        """Final text tokens [B, L, W] for tokens [B, L], L <= context length (causal attention)."""
        c = self.clip
        n = tokens.shape[1]
        if n > c.positional_embedding.shape[0]:
            raise ValueError(f"text of {n} tokens exceeds the context length {c.positional_embedding.shape[0]}")
        x = c.token_embedding(tokens)
        if replace is not None:
            x = torch.where(replace.unsqueeze(-1), self.mlm.mask_embedding.to(x.dtype), x)
        x = x + c.positional_embedding[:n].to(x.dtype)
        x = c.transformer(x, attn_mask=c.attn_mask[:n, :n])
        return c.ln_final(x)

    def project_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0] @ self.clip.visual.proj

    def project_text(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        eot = feats[torch.arange(feats.shape[0], device=feats.device), tokens.argmax(dim=-1)]
        proj = self.clip.text_projection
        return proj(eot) if isinstance(proj, nn.Module) else eot @ proj

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] -> L2-normalised embeddings [B, D]."""
        return F.normalize(self.project_image(self.image_tokens(x)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip token ids [B, L] -> L2-normalised embeddings [B, D]."""
        tokens = tokens.long()
        return F.normalize(self.project_text(self.text_tokens(tokens), tokens), dim=-1)

    # ---- training -----------------------------------------------------------------------------
    def grayscale(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * self._std + self._mean
        g = sum(w * raw[:, i : i + 1] for i, w in enumerate(GRAY))
        return (g.expand(-1, 3, -1, -1) - self._mean) / self._std

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, N, p*p*3], patches in the order of the ViT's tokens."""
        B, p, (gh, gw) = x.shape[0], self.patch, self.grid
        return x.reshape(B, 3, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(B, gh * gw, p * p * 3)

    def grayscale_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's grayscale: luma weights applied to the *normalised* channels."""
        g = sum(w * x[:, i : i + 1] for i, w in enumerate(GRAY_REFERENCE))
        return g.expand(-1, 3, -1, -1)

    def visible_count(self) -> int:
        """Patches left visible: the reference truncates (int(N (1 - r)), 57 of 192 at r = 0.7),
        the project rounds (58)."""
        share = self.num_patches * (1 - self.cfg.model.tir_mask_ratio)
        return max(1, int(share) if self.cfg.model.tir_decoder == "reference" else int(round(share)))

    def random_keep(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of visible patches [B, Nv] and the mask [B, N] (1 = masked), per sample."""
        n_keep = self.visible_count()
        order = torch.rand(batch, self.num_patches, device=device).argsort(dim=1)
        keep = order[:, :n_keep].sort(dim=1).values
        mask = torch.ones(batch, self.num_patches, device=device)
        mask.scatter_(1, keep, 0.0)
        return keep, mask

    def tir_loss(self, images: torch.Tensor, txt_feats: torch.Tensor, tokens: torch.Tensor,
                 keep: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        if keep is None:
            keep, mask = self.random_keep(images.shape[0], images.device)
        if isinstance(self.tir, ReferenceTIRDecoder):
            vis = self.image_tokens(self.grayscale_reference(images), keep) @ self.clip.visual.proj
            proj = self.clip.text_projection
            txt = proj(txt_feats) if isinstance(proj, nn.Module) else txt_feats @ proj
            pred = self.tir(vis, keep, txt, self.num_patches)
        else:
            vis = self.image_tokens(self.grayscale(images), keep)
            pred = self.tir(vis, keep, txt_feats, tokens == 0, self.num_patches)
        return L.masked_patch_mse(pred.float(), self.patchify(images).float(), mask)

    def mlm_loss(self, tokens: torch.Tensor, img_tokens: torch.Tensor) -> torch.Tensor:
        eot = tokens.argmax(dim=-1, keepdim=True)
        pos = torch.arange(tokens.shape[1], device=tokens.device)[None]
        words = (tokens != 0) & (pos > 0) & (pos < eot)
        chosen = words & (torch.rand(tokens.shape, device=tokens.device) < self.cfg.model.mlm_mask_ratio)
        if not chosen.any():
            return tokens.new_zeros((), dtype=torch.float32)
        feats = self.text_tokens(tokens, replace=chosen)
        logits = self.mlm(feats, img_tokens, at=chosen)
        return F.cross_entropy(logits.float(), tokens[chosen])

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        """All enabled objectives for one batch; 'loss' is their weighted sum."""
        lc: LossConfig = self.cfg.loss
        tokens = tokens.long()
        img_tokens = self.image_tokens(images)
        txt_feats = self.text_tokens(tokens)
        img_raw, txt_raw = self.project_image(img_tokens), self.project_text(txt_feats, tokens)
        # batch-level objectives see the global batch under torchrun (a no-op in one process)
        g_img_raw, g_txt_raw, g_pids = gather_with_grad(img_raw), gather_with_grad(txt_raw), gather(pids)
        if lc.sdm > 0 or lc.id > 0 or lc.triplet > 0:
            L.check_identities(g_pids)
        img, txt = F.normalize(_wide(g_img_raw), dim=-1), F.normalize(_wide(g_txt_raw), dim=-1)
        out: dict[str, torch.Tensor] = {}
        if lc.sdm > 0:
            out["sdm"] = L.sdm_loss(img, txt, g_pids, lc.tau)
        if lc.id > 0 and self.classifier is not None:
            out["id"] = L.id_loss(_wide(self.classifier(g_img_raw)), _wide(self.classifier(g_txt_raw)), g_pids)
        if lc.triplet > 0:
            out["triplet"] = L.triplet_loss(img, txt, g_pids, lc.margin)
        if lc.itc > 0:
            out["itc"] = L.itc_loss(img, txt, self.clip.logit_scale.exp().clamp(max=100))
        if lc.tir > 0:
            out["tir"] = self.tir_loss(images, txt_feats, tokens)
        if lc.mlm > 0:
            out["mlm"] = self.mlm_loss(tokens, img_tokens)
        out["loss"] = sum(getattr(lc, k) * v for k, v in out.items())
        return out
