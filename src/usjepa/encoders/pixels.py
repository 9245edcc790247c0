"""pixels:K, a featureless baseline: a linear probe on K x K pooled grey levels (of 224 px images)."""

from __future__ import annotations

import torch
from torch import nn

from usjepa.encoders.frozen import FrozenEncoder, TimmCNN
from usjepa.encoders.registry import register
from usjepa.errors import ConfigError


class PooledPixels(nn.Module):
    """Image intensity average-pooled to a k x k grid: what a task needs no learned features for."""

    def __init__(self, k: int):
        super().__init__()
        self.register_buffer("grid", torch.tensor(k))  # part of the fingerprint, so each k has its own cache

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, int(self.grid))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.flatten(1)


class Pixels(TimmCNN):
    """Its map is the K x K grid itself, whatever the input size."""

    def patch_map(self, x: torch.Tensor, layer: int = -1, last_k: int = 1) -> torch.Tensor:
        return self.model.forward_features(x)

    def stride(self, layer: int = -1) -> int:
        return max(1, self.img_size // int(self.model.grid))


@register("pixels", "pixels:K", "K x K mean grey levels, no learned features (K from 1 to 64)")
def build(spec: str, arg: str) -> FrozenEncoder:
    if not arg.isdigit() or not 1 <= int(arg) <= 64:
        raise ConfigError(f"encoder '{spec}': pixels:K takes a grid size K from 1 to 64, e.g. pixels:8")
    return Pixels(spec, PooledPixels(int(arg)), 224, 1, (0.5,), (0.25,), "head", ("head",))
