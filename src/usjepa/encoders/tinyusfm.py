"""tinyusfm:PATH, TinyUSFM (Ma et al. 2026; github.com/MacDunno/TinyUSFM), a ViT-Tiny distilled from USFM.

- Layout: timm ViT names under ``module.model.`` or ``module.`` (utils/load_model.py#L28-L38 strips both),
  ``fc_norm`` and no ``norm`` (model/tinyusfm.py#L120-L122: global pooling deletes the final norm); ``head``
  (classifier) is dropped as its loader does, and so are the distillation-only ``head_dist`` / ``dist_norm``.
- Architecture: width 192, depth 12, **12 heads** (model/tinyusfm.py#L159-L169), not timm vit_tiny's 3: the same
  tensors run with 3 heads give other features and no error, so the head count is fixed here.
- Input: 224 px RGB, ImageNet mean / std (utils/data_processing.py#L87-L95).
- Pooling: fc_norm over the patch-token mean (model/tinyusfm.py#L144-L150, ``global_pool=True`` in load_model.py).
"""

from __future__ import annotations

import timm

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.published import (
    grid_of,
    published_vit,
    read_checkpoint,
    split_off,
    strip_prefix,
    vit_dims,
)
from usjepa.encoders.registry import register
from usjepa.errors import CheckpointError

PUBLISHED = (
    "https://github.com/MacDunno/TinyUSFM#-installing-model-weight (Google Drive: "
    "drive.google.com/file/d/1P_wDuU-StALLJEBaymioaYu52CScW-l-)"
)
HEADS = 12
PREFIXES = ("module.model.", "module.", "model.")


@register("tinyusfm", "tinyusfm:PATH", "TinyUSFM's ViT-Tiny (12 heads; fc_norm over the patch mean)")
def build(spec: str, path: str) -> FrozenEncoder:
    ckpt = read_checkpoint(spec, path, "the TinyUSFM checkpoint (a ViT-Tiny state dict)", PUBLISHED)
    sd, head = split_off(strip_prefix(ckpt, PREFIXES), r"(head|head_dist|dist_norm)\.")
    head = [ckpt.file_name(k) for k in head]  # as the file names them
    if "pos_embed" not in sd:
        raise CheckpointError(f"{ckpt.path}: missing: pos_embed; not a TinyUSFM checkpoint")
    dims = vit_dims(sd, ckpt)
    img_size = grid_of(sd["pos_embed"].shape[1] - 1, ckpt, "pos_embed") * dims["patch_size"]
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        num_heads=HEADS,
        global_pool="avg",
        **dims,
    )
    return published_vit(ckpt, model, sd, dims, img_size, head, "TinyUSFM layout (fc_norm, no norm)", "head")
