"""usfm:PATH, USFM's BEiT-style ViT-B (relative position bias, layer-scale, mean pooling)."""
from __future__ import annotations

from torch import nn

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.registry import register
from usjepa.encoders.vit_file import vit_from_file

PUBLISHED = "https://github.com/openmedlab/USFM (USFM ViT-B checkpoint; convert to .safetensors)"


def usfm_layout(sd: dict, model: nn.Module) -> dict:
    """USFM's BEiT pretraining layout -> timm's Beit with mean pooling, as USFM's own fine-tuning code loads it.

    The one shared relative-position table is copied into every block; position-index buffers are rebuilt;
    pretraining's final norm gives way to a fresh fc_norm under mean pooling (a probe standardises its affine away).
    """
    shared = sd.pop("rel_pos_bias.relative_position_bias_table", None)
    if shared is not None:
        for i in range(len(model.blocks)):
            sd.setdefault(f"blocks.{i}.attn.relative_position_bias_table", shared.clone())
    sd = {k: v for k, v in sd.items() if "relative_position_index" not in k}
    if "fc_norm.weight" not in sd:
        sd = {k: v for k, v in sd.items() if not k.startswith("norm.")}
        sd |= {k: v for k, v in model.state_dict().items() if k.startswith("fc_norm.")}
    return sd


@register("usfm", "usfm:PATH", "USFM ViT-B weights file (BEiT layout)")
def build(spec: str, path: str) -> FrozenEncoder:
    return vit_from_file(spec, path, "beit_base_patch16_224", "head", PUBLISHED, usfm_layout,
                         use_abs_pos_emb=False, use_rel_pos_bias=True)
