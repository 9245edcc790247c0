"""V-Pixel (SALT stage 1): reconstruct normalised pixels of the multi-block targets from the context."""

from __future__ import annotations

import torch

from usjepa.config import Config
from usjepa.methods import register
from usjepa.methods.base import Method, masked_mean
from usjepa.models.encoder import gather
from usjepa.models.predictor import Predictor


def patchify(img: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, p*p*C] in row-major patch order (timm's)."""
    b, c, h, w = img.shape
    x = img.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


@register("vpixel")
class VPixel(Method):
    export_role = "teacher"  # SALT's stage 1

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m, p = cfg.model, self.encoder.patch_size
        self.decoder = Predictor(
            self.encoder.grid,
            self.encoder.embed_dim,
            m.dec_dim,
            m.dec_depth,
            m.dec_heads,
            out_dim=p * p * cfg.data.in_chans,
            independent_blocks=False,
        )

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        img, tgt_idx = batch["image"], batch["tgt_idx"]
        target = gather(patchify(img, self.encoder.patch_size), tgt_idx).float()
        if self.cfg.optim.norm_pix_loss:
            mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mu) / (var + 1e-6).sqrt()
        keep = self.context_keep(batch)
        z = self.encoder(self.normalize(img), batch["ctx_idx"], keep)
        pred = self.decoder(z, batch["ctx_idx"], batch["ctx_keep"], tgt_idx, batch["tgt_block"])
        loss = masked_mean(((pred.float() - target) ** 2).mean(-1), batch["tgt_keep"])
        return loss, {"loss": loss.detach()}
