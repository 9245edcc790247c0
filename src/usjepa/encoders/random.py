"""random:ARCH_OR_EXPORT_DIR, a randomly initialised (seed 0) lower bound."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from usjepa.encoders.frozen import FrozenEncoder, from_card, timm_adapter
from usjepa.encoders.registry import register
from usjepa.errors import ConfigError
from usjepa.modelio import load_encoder


@register(
    "random",
    "random:ARCH_OR_EXPORT_DIR",
    "random init of a timm arch, or of an export's (its size and normalisation too)",
)
def build(spec: str, arg: str) -> FrozenEncoder:
    card = load_encoder(arg)[1] if Path(arg).exists() else None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            model = timm.create_model(
                card["arch"] if card else arg, pretrained=False, **(card["timm_kwargs"] if card else {"num_classes": 0})
            )
        except RuntimeError as e:
            raise ConfigError(f"{spec}: unknown timm architecture ({e})") from None
    if card:
        return from_card(spec, model, card, None)
    cfg = model.pretrained_cfg
    return timm_adapter(spec, model, cfg["input_size"][-1], cfg["input_size"][0], cfg["mean"], cfg["std"])
