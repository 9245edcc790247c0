"""EMA I-JEPA: the same student and predictor, regressing an EMA copy of the student (momentum 0.996 -> 1)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from usjepa.config import Config
from usjepa.methods import register
from usjepa.methods.salt import SALT


@register("ijepa")
class IJEPA(SALT):
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """No teacher to check: the targets come from an EMA copy of the student."""

    def build_targets(self, cfg: Config) -> int:
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        return self.encoder.embed_dim

    def targets(self, img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.target_encoder(self.normalize(img))
            return F.layer_norm(h, h.shape[-1:])

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        m0, m1 = self.cfg.optim.ema
        m = m0 + (m1 - m0) * min(1.0, progress)
        torch._foreach_lerp_(list(self.target_encoder.parameters()), list(self.encoder.parameters()), 1.0 - m)
