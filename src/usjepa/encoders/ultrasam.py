"""ultrasam:PATH, UltraSam (Meyer et al. 2025; github.com/CAMMA-public/UltraSam), SAM ViT-B trained on US-43d.

- Layout: mmengine ``{'state_dict', 'meta'}``; the image encoder is mmpretrain's ViTSAM under ``backbone.``:
  patch_embed.projection, pos_embed [1, 64, 64, 768], layers.N.{ln1, attn.qkv, attn.proj, attn.rel_pos_h/w, ln2,
  ffn.layers.0.0, ffn.layers.1}, channel_reduction (the neck) (weights/convert_sam_bb_to_mmdet.py gives the
  SAM -> mmpretrain renames; here they are undone into timm's samvit names). Prompt encoder, mask decoder
  and the neck are dropped: its classifier builds the backbone with ``out_channels=0`` (no neck).
- Architecture: ViT-B, 12 heads, window 14, global attention where rel_pos spans the whole grid (blocks 2, 5, 8,
  11), LayerNorm eps 1e-6 (mmpretrain vit_sam.py ``arch_zoo['base']``, ``norm_cfg``; timm's samvit default
  eps is 1e-5, so it is set here).
- Input: 1024 px, RGB, mean [123.675, 116.28, 103.53] / std [58.395, 57.12, 57.375] on the 0-255 scale, i.e.
  ImageNet's (configs/_base_/models/sam_classification.py, ``data_preprocessor``; images resized with kept
  aspect and padded to 1024, configs/_base_/datasets/sam_dataset_classification.py).
- Pooling: the average of the last block's feature map, with no neck and no final norm
  (sam_classification.py ``out_type="avg_featmap"``, mmpretrain vit_sam.py ``_format_output``).
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from torch import nn

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.published import (
    grid_of,
    load_strict,
    read_checkpoint,
    rename,
    split_off,
    vit_dims,
)
from usjepa.encoders.registry import register
from usjepa.errors import CheckpointError
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD
from usjepa.weights import file_sha256

PUBLISHED = "https://s3.unistra.fr/camma_public/github/ultrasam/UltraSam.pth (github.com/CAMMA-public/UltraSam)"
HEADS = 12
RENAMES = [
    (r"^backbone\.", ""),
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.", "blocks."),
    (r"\.ln1\.", ".norm1."),
    (r"\.ln2\.", ".norm2."),
    (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
]
TO_FILE = [
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"^blocks\.", "layers."),
    (r"\.norm1\.", ".ln1."),
    (r"\.norm2\.", ".ln2."),
    (r"\.mlp\.fc1\.", ".ffn.layers.0.0."),
    (r"\.mlp\.fc2\.", ".ffn.layers.1."),
    (r"^", "backbone."),
]


class TimmSAM(FrozenEncoder):
    """timm's samvit with the neck removed: a [B, D, h, w] map of the last block; pooled by its average."""

    def _pooled(self, x: torch.Tensor, pooling: str) -> torch.Tensor:
        return self.model.forward_features(x).mean((2, 3))

    def patch_map(self, x: torch.Tensor, layer: int = -1, last_k: int = 1) -> torch.Tensor:
        if layer == -1 and last_k == 1:
            return self.model.forward_features(x)
        n = len(self.model.blocks)
        if not -n <= layer < n or not 1 <= last_k <= layer % n + 1:
            raise CheckpointError(f"{self.spec}: layer {layer} with last_k {last_k} does not fit its {n} blocks")
        end = layer % n
        maps = self.model.forward_intermediates(
            x, indices=list(range(end - last_k + 1, end + 1)), norm=False, intermediates_only=True
        )
        return torch.stack(maps).mean(0)

    def stride(self, layer: int = -1) -> int:
        return self.model.patch_embed.patch_size[0]


@register("ultrasam", "ultrasam:PATH", "UltraSam's SAM ViT-B image encoder (1024 px; average-pooled map)")
def build(spec: str, path: str) -> FrozenEncoder:
    ckpt = read_checkpoint(spec, path, "the UltraSam checkpoint (mmengine {'state_dict', 'meta'})", PUBLISHED)
    ckpt.file_name = lambda k: next(iter(rename({k: None}, TO_FILE)))
    sd, others = split_off(ckpt.tensors, r"(?!backbone\.)")
    sd, neck = split_off(sd, r"backbone\.channel_reduction\.")
    sd = rename(sd, RENAMES)
    if "pos_embed" not in sd:
        raise CheckpointError(
            f"{ckpt.path}: missing: backbone.pos_embed; not an UltraSam (mmpretrain ViTSAM) checkpoint"
        )
    dims = vit_dims(sd, ckpt)
    grid = grid_of(sd["pos_embed"].shape[1] * sd["pos_embed"].shape[2], ckpt, "backbone.pos_embed")
    spans = [sd.get(f"blocks.{i}.attn.rel_pos_h", torch.empty(0)).shape[0] for i in range(dims["depth"])]
    window = (min(spans) + 1) // 2
    model = timm.create_model(
        "samvit_base_patch16",
        pretrained=False,
        num_classes=0,
        img_size=grid * dims["patch_size"],
        num_heads=HEADS,
        window_size=window,
        neck_chans=0,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        global_attn_indexes=[i for i, s in enumerate(spans) if s == 2 * grid - 1],
        **dims,
    )
    model.neck = nn.Identity()  # no neck, no final norm (out_channels=0)
    arch = (
        f"SAM ViT {dims['embed_dim']}x{dims['depth']}, {HEADS} heads, window {window}, {grid * dims['patch_size']} px"
    )
    report = load_strict(model, sd, ckpt, arch, others + neck, "mmpretrain ViTSAM layout under backbone.")
    return TimmSAM(
        spec,
        model,
        grid * dims["patch_size"],
        dims["in_chans"],
        IMAGENET_MEAN,
        IMAGENET_STD,
        "mean",
        ("mean",),
        file_sha256(ckpt.path),
        load_report=report,
    )
