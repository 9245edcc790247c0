"""A narrow ViT that predicts at masked positions: the JEPA predictor and the pixel decoder."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block

from usjepa.masking import predictor_attn_mask
from usjepa.models.encoder import gather


class Predictor(nn.Module):
    """Embeds context tokens to ``dim``, appends a learnable mask token at every target position,
    adds fixed 2-D sin-cos position embeddings, runs ``depth`` blocks in one pass and projects the
    target tokens to ``out_dim`` (the teacher's width, or patch pixels for a decoder)."""

    def __init__(
        self,
        grid: tuple[int, int],
        in_dim: int,
        dim: int,
        depth: int,
        heads: int,
        out_dim: int,
        independent_blocks: bool = True,
    ):
        super().__init__()
        self.independent_blocks = independent_blocks
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = build_sincos2d_pos_embed(list(grid), dim)
        self.register_buffer("pos_embed", pos.reshape(1, -1, dim), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(
        self,
        ctx: torch.Tensor,
        ctx_idx: torch.Tensor,
        ctx_keep: torch.Tensor,
        tgt_idx: torch.Tensor,
        tgt_block: torch.Tensor,
    ) -> torch.Tensor:
        """ctx [B, Nc, in_dim] -> predictions [B, Nt, out_dim] at ``tgt_idx``."""
        pos = self.pos_embed.expand(ctx.shape[0], -1, -1).to(ctx.dtype)
        x = self.embed(ctx) + gather(pos, ctx_idx)
        t = self.mask_token.to(ctx.dtype) + gather(pos, tgt_idx)
        nc = x.shape[1]
        x = torch.cat([x, t], dim=1)
        attn_mask = predictor_attn_mask(ctx_keep, tgt_block, self.independent_blocks)
        for blk in self.blocks:
            x = blk(x, attn_mask=attn_mask)
        return self.proj(self.norm(x[:, nc:]))
