"""The frozen teacher: any registry encoder, loaded once, never trained, never in the optimiser, never exported.

Its patch-token map is taken on the student's patch grid: the image is resized to grid x the teacher's stride
(a ViT's patch, a CNN stage's reduction), so ViTs of another patch size and CNNs can teach.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from usjepa.encoders import FrozenEncoder, is_spec, load
from usjepa.errors import ConfigError, UsjepaError


class Teacher(nn.Module):
    """Targets [B, N, D] from a frozen encoder's patch map at ``layer`` (mean of ``last_k`` blocks), optionally
    layer-normed."""

    def __init__(
        self,
        enc: FrozenEncoder,
        grid: tuple[int, int],
        layer: int = -1,
        last_k: int = 1,
        target_norm: str = "layernorm",
    ):
        super().__init__()
        if grid[0] != grid[1]:
            raise ConfigError(f"teacher: the student's patch grid {tuple(grid)} is not square")
        self.frozen, self.model = enc, enc.model  # the model is registered, so .to() moves it
        self.layer, self.last_k, self.target_norm = layer, last_k, target_norm
        stride = enc.stride(layer)
        self.size = grid[0] * stride
        try:
            enc.set_input_size(self.size)
            with torch.inference_mode():
                probe = enc.patch_map(enc.normalise(torch.zeros(1, 1, self.size, self.size)), layer, last_k)
        except UsjepaError:
            raise
        except (RuntimeError, ValueError, AssertionError, AttributeError) as e:
            raise ConfigError(
                f"teacher.source: {enc.spec} cannot run at {self.size} px, the size that gives the "
                f"student's {grid[0]}x{grid[1]} grid at its stride {stride} "
                f"({str(e).splitlines()[0]})"
            ) from None
        if tuple(probe.shape[-2:]) != tuple(grid):
            raise ConfigError(
                f"teacher.source: {enc.spec} gives a {probe.shape[-2]}x{probe.shape[-1]} map at "
                f"{self.size} px (stride {stride}), not the student's {grid[0]}x{grid[1]} grid; "
                "no input size gives that grid"
            )
        self.embed_dim = probe.shape[1]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # always in eval mode

    @torch.compiler.disable  # inference tensors cannot be traced; the rest of the step still compiles
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img [B, C, H, W] in [0, 1] -> targets [B, N, D] (ordinary tensors, safe to use in a loss)."""
        with torch.inference_mode():
            if img.shape[-1] != self.size:
                img = F.interpolate(img, size=(self.size, self.size), mode="bilinear", antialias=True)
            h = self.frozen.patch_map(self.frozen.normalise(img), self.layer, self.last_k).flatten(2).transpose(1, 2)
            if self.target_norm == "layernorm":
                h = F.layer_norm(h, h.shape[-1:])
        return h.clone()


def load_teacher(source: str, target_norm: str, grid: tuple[int, int], layer: int = -1, last_k: int = 1) -> Teacher:
    """A teacher from an encoder spec (effnet-lite0, timm:NAME@FILE, hf:DIR, ...) or, as a bare path, a stage-1
    run dir, checkpoint or export dir."""
    spec = source if is_spec(source) or (":" in source and not Path(source).exists()) else f"usjepa:{source}"
    try:
        return Teacher(load(spec), tuple(grid), layer, last_k, target_norm)
    except UsjepaError as e:
        raise type(e)(str(e) if str(e).startswith("teacher.source") else f"teacher.source: {e}") from None
