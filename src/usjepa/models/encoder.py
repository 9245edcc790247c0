"""A timm ViT that can run on a subset of its patch tokens (the student's context)."""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer
from torch.utils.checkpoint import checkpoint

from usjepa.config import Config
from usjepa.errors import ConfigError


def vit_kwargs(cfg: Config) -> dict:
    """The timm keyword arguments that rebuild the student backbone (also written to the export card)."""
    kw = {"img_size": cfg.data.img_size, "in_chans": cfg.data.in_chans, "num_classes": 0}
    if cfg.model.patch_size:
        kw["patch_size"] = cfg.model.patch_size
    if cfg.model.depth:
        kw["depth"] = cfg.model.depth
    return kw


def create_vit(arch: str, drop_path: float = 0.0, **kwargs) -> VisionTransformer:
    if not arch.startswith(("vit_", "deit_")):
        raise ConfigError(f"model.arch: expected a timm ViT name (vit_*), got '{arch}'")
    try:
        model = timm.create_model(arch, pretrained=False, drop_path_rate=drop_path, **kwargs)
    except RuntimeError as e:
        raise ConfigError(f"model.arch: timm cannot build '{arch}' ({e})") from None
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"model.arch: '{arch}' is not a timm VisionTransformer")
    return model


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], idx [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class Encoder(nn.Module):
    """Wraps a timm VisionTransformer; keys stay timm's under ``vit.``."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.vit = vit
        self.embed_dim = vit.embed_dim
        self.grid = tuple(vit.patch_embed.grid_size)
        self.patch_size = vit.patch_embed.patch_size[0]
        self.n_prefix = vit.num_prefix_tokens

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch tokens with position embeddings, and prefix tokens (CLS, registers) or None."""
        v = self.vit
        x = v.patch_embed(x)
        prefix = []
        if v.cls_token is not None:
            prefix.append(v.cls_token.expand(x.shape[0], -1, -1))
        if v.reg_token is not None:
            prefix.append(v.reg_token.expand(x.shape[0], -1, -1))
        prefix = torch.cat(prefix, dim=1) if prefix else None
        if v.pos_embed is not None:
            if v.no_embed_class or prefix is None:
                x = x + v.pos_embed
            else:
                x = x + v.pos_embed[:, self.n_prefix :]
                prefix = prefix + v.pos_embed[:, : self.n_prefix]
        return x, prefix

    def forward(
        self, img: torch.Tensor, keep_idx: torch.Tensor | None = None, keep_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised patch tokens [B, K, D] at ``keep_idx`` (all patches when None).

        ``keep_mask`` [B, K] marks padded entries of ``keep_idx`` as False: they are never attended to.
        """
        x, prefix = self._embed(img)
        if keep_idx is not None:
            x = gather(x, keep_idx)
        attn_mask = None
        if prefix is not None:
            x = torch.cat([prefix, x], dim=1)
            if keep_mask is not None:
                keep_mask = torch.cat([keep_mask.new_ones(x.shape[0], self.n_prefix), keep_mask], dim=1)
        if keep_mask is not None:
            attn_mask = keep_mask[:, None, None, :]
        x = self.vit.norm_pre(x)
        for blk in self.vit.blocks:
            if self.vit.grad_checkpointing and self.training:
                x = checkpoint(blk, x, attn_mask, use_reentrant=False)
            else:
                x = blk(x, attn_mask=attn_mask)
        return self.vit.norm(x)[:, self.n_prefix :]
