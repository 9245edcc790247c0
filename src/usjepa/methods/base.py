"""What every method shares: the backbone it trains and exports, input normalisation, masked losses."""

from __future__ import annotations

import torch
import torch.nn as nn

from usjepa.config import Config
from usjepa.modelio import STUDENT_MEAN, STUDENT_STD
from usjepa.models.encoder import Encoder, create_vit, vit_kwargs


def masked_mean(per_token: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_token`` [B, T] over entries where ``keep`` is True."""
    keep = keep.to(per_token.dtype)
    return (per_token * keep).sum() / keep.sum().clamp_min(1.0)


class Method(nn.Module):
    """A pretraining objective on the shared loop. ``encoder`` is the backbone that gets exported.

    Class-level hooks: ``mask_kind`` (the collator's masks), ``export_role`` (written to the export card:
    "teacher" for a stage-1 backbone meant to teach, "student" otherwise) and ``check_config`` (faults of a
    config for this method, raised as ConfigError before any work).
    """

    mask_kind = "multiblock"
    export_role = "student"

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise ConfigError, naming the key, for a config this method cannot train."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(create_vit(cfg.model.arch, cfg.model.drop_path, **vit_kwargs(cfg)))
        if cfg.model.grad_checkpointing:
            self.encoder.vit.set_grad_checkpointing(True)
        c = cfg.data.in_chans
        self.register_buffer("mean", torch.tensor(STUDENT_MEAN * c).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STUDENT_STD * c).view(1, c, 1, 1), persistent=False)

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std

    def context_keep(self, batch: dict) -> torch.Tensor | None:
        """The context padding mask, or None when masks were truncated to a common length."""
        return None if self.cfg.mask.pad_mode == "truncate" else batch["ctx_keep"]

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Returns the loss (a mean over the batch's loss tokens) and a dict of detached scalars to log."""
        raise NotImplementedError

    @staticmethod
    def loss_tokens(batch: dict) -> torch.Tensor:
        """How many tokens the batch's loss is a mean over: its weight in a mean over several batches."""
        return batch["tgt_keep"].sum()

    def on_step_end(self, progress: float) -> None:
        """Called after each optimizer step with the fraction of training done."""
