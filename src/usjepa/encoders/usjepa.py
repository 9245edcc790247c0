"""usjepa:PATH, a usjepa backbone from an export dir, a run dir or a checkpoint file."""

from __future__ import annotations

from usjepa.encoders.frozen import FrozenEncoder, from_card
from usjepa.encoders.registry import register
from usjepa.modelio import load_encoder


@register("usjepa", "usjepa:PATH", "a usjepa export dir, run dir or checkpoint")
def build(spec: str, path: str) -> FrozenEncoder:
    model, card = load_encoder(path)
    return from_card(spec, model, card, card.get("weights_sha256"))
