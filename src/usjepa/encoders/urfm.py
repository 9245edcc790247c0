"""urfm:PATH, URFM's ViT-B/16 (mean pooling)."""
from __future__ import annotations

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.registry import register
from usjepa.encoders.vit_file import vit_from_file

PUBLISHED = "the URFM authors' release of their ViT-B/16 weights (convert to .safetensors)"


@register("urfm", "urfm:PATH", "URFM ViT-B/16 weights file")
def build(spec: str, path: str) -> FrozenEncoder:
    return vit_from_file(spec, path, "vit_base_patch16_224", "mean", PUBLISHED)
