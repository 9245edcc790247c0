"""urfm:PATH, URFM (Kang et al., iScience 2025), a ViT-B/16 pretrained by masked modelling toward BiomedCLIP features.

Its code (github.com/sonovision-ai/URFM) could not be read here and its weights (huggingface.co/QingboKang/URFM)
not checked, so the file's own tensors decide the layout, and ``load_report`` says which was found:
- a plain ViT (blocks.N.attn.qkv.bias, pos_embed): timm's vit_base_patch16_224;
- a BEiT layout (attn.q_bias / v_bias, relative position tables, gamma_1/2): timm's Beit, read as usfm: reads it.
Architecture: ViT-B/16 as the paper states, 12 heads; width, depth and grid are read off the tensors.
Input: 224 px RGB, ImageNet mean / std (unverified: the paper's teacher setting). Pooling: the patch mean, after the
final norm (plain ViT) or through fc_norm (BEiT layout, as USFM).
"""

from __future__ import annotations

import timm

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.published import (
    grid_of,
    published_vit,
    read_checkpoint,
    split_off,
    strip_wrapper,
    vit_dims,
)
from usjepa.encoders.registry import register
from usjepa.encoders.usfm import PRETRAINING_ONLY, beit_encoder
from usjepa.errors import CheckpointError

PUBLISHED = "https://huggingface.co/QingboKang/URFM (code: github.com/sonovision-ai/URFM; convert to .safetensors)"
HEADS = 12
BEIT_KEYS = ("attn.q_bias", "relative_position_bias_table", "gamma_1")


@register("urfm", "urfm:PATH", "URFM's ViT-B/16 (plain ViT or BEiT layout, detected; mean pooling)")
def build(spec: str, path: str) -> FrozenEncoder:
    ckpt = read_checkpoint(spec, path, "the URFM ViT-B/16 weights (.safetensors or a weights-only .pth)", PUBLISHED)
    sd, outside = strip_wrapper(ckpt)
    sd, dropped = split_off(sd, PRETRAINING_ONLY)
    dropped = outside + [ckpt.file_name(k) for k in dropped]  # as the file names them
    if any(marker in k for k in sd for marker in BEIT_KEYS):
        return beit_encoder(ckpt, sd, HEADS, 1e-6, "BEiT layout (relative position bias, layer scale)", dropped)
    if "pos_embed" not in sd:
        raise CheckpointError(f"{ckpt.path}: missing: pos_embed; neither a plain ViT nor a BEiT layout")
    dims = vit_dims(sd, ckpt)
    img_size = grid_of(sd["pos_embed"].shape[1] - 1, ckpt, "pos_embed") * dims["patch_size"]
    model = timm.create_model(
        "vit_base_patch16_224", pretrained=False, num_classes=0, img_size=img_size, num_heads=HEADS, **dims
    )
    return published_vit(ckpt, model, sd, dims, img_size, dropped, "plain ViT layout", "mean")
