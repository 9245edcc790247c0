"""The frozen teacher: loaded once, never trained, never in the optimizer."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from usjepa.errors import CheckpointError
from usjepa.export import load_encoder
from usjepa.models.encoder import Encoder


class Teacher(nn.Module):
    """Patch latents of a frozen ViT over the whole image, with optional layer-norm targets."""

    def __init__(self, vit: nn.Module, card: dict, target_norm: str = "layernorm"):
        super().__init__()
        self.encoder = Encoder(vit)
        self.card = card
        self.target_norm = target_norm
        self.in_chans = card["in_chans"]
        self.register_buffer("mean", torch.tensor(card["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(card["std"]).view(1, -1, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # always in eval mode

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @torch.compiler.disable  # inference tensors cannot be traced; the rest of the step still compiles
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img [B, C, H, W] in [0, 1] -> targets [B, N, D] (ordinary tensors, safe to use in a loss)."""
        with torch.inference_mode():
            if img.shape[1] != self.in_chans:
                img = img.expand(-1, self.in_chans, -1, -1)
            h = self.encoder((img - self.mean) / self.std)
            if self.target_norm == "layernorm":
                h = F.layer_norm(h, h.shape[-1:])
        return h.clone()


def load_teacher(source: str, target_norm: str, grid: tuple[int, int]) -> Teacher:
    """A teacher from a stage-1 run/checkpoint, an export dir, or timm:NAME@FILE, checked against ``grid``."""
    try:
        vit, card = load_encoder(source)
    except CheckpointError as e:
        raise CheckpointError(f"teacher.source: {e}") from None
    teacher = Teacher(vit, card, target_norm)
    if teacher.encoder.grid != tuple(grid):
        raise CheckpointError(
            f"teacher '{source}': patch grid {teacher.encoder.grid} (img {card['img_size']}, patch {card['patch_size']}) "
            f"does not match the student's {tuple(grid)}; use the same image size / patch size ratio")
    return teacher
