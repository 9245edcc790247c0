"""SALT stage 2: a student sees the context; a predictor regresses the frozen teacher's latents at the targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from usjepa.config import Config
from usjepa.errors import ConfigError
from usjepa.methods import register
from usjepa.methods.base import Method, masked_mean
from usjepa.models.encoder import gather
from usjepa.models.predictor import Predictor
from usjepa.models.teacher import load_teacher


@register("salt")
class SALT(Method):
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        if not cfg.teacher.source:
            raise ConfigError(
                f"teacher.source: method '{cfg.method}' needs a frozen teacher "
                "(an encoder spec such as effnet-lite0 or timm:NAME@FILE, "
                "or a stage-1 run, checkpoint or export)"
            )

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m = cfg.model
        self.predictor = Predictor(
            self.encoder.grid,
            self.encoder.embed_dim,
            m.pred_dim,
            m.pred_depth,
            m.pred_heads,
            out_dim=self.build_targets(cfg),
        )

    def build_targets(self, cfg: Config) -> int:
        """Set up the target encoder; return its width."""
        t = cfg.teacher
        self.teacher = load_teacher(t.source, t.target_norm, self.encoder.grid, t.layer, t.last_k)
        return self.teacher.embed_dim

    def targets(self, img: torch.Tensor) -> torch.Tensor:
        return self.teacher(img)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        img, tgt_idx = batch["image"], batch["tgt_idx"]
        target = gather(self.targets(img), tgt_idx)
        keep = self.context_keep(batch)
        z = self.encoder(self.normalize(img), batch["ctx_idx"], keep)
        pred = self.predictor(z, batch["ctx_idx"], batch["ctx_keep"], tgt_idx, batch["tgt_block"])
        per_token = F.smooth_l1_loss(pred.float(), target.float(), reduction="none").mean(-1)
        loss = masked_mean(per_token, batch["tgt_keep"])
        return loss, {"loss": loss.detach()}
