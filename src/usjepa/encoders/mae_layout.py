"""The facebookresearch/mae pretraining layout (models_mae.py), shared by USF-MAE and UltraFedFM.

A ``MaskedAutoencoderViT`` state dict holds the encoder under timm's own ViT names (cls_token, pos_embed,
patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm) next to the decoder
(mask_token, decoder_embed, decoder_pos_embed, decoder_blocks.N, decoder_norm, decoder_pred), which only
reconstruction uses: https://github.com/facebookresearch/mae/blob/efb2a80/models_mae.py#L33-L58
"""

from __future__ import annotations

import timm

from usjepa.encoders.frozen import TimmViT
from usjepa.encoders.published import (
    Checkpoint,
    fresh_fc_norm,
    grid_of,
    published_vit,
    split_off,
    vit_dims,
)
from usjepa.errors import CheckpointError

DECODER = r"(mask_token$|decoder_)"


def mae_encoder(
    ckpt: Checkpoint, heads: int, global_pool: str, mean: tuple, std: tuple, pooling: str, found: str
) -> TimmViT:
    """The MAE encoder as a timm ViT; ``global_pool`` 'token' keeps the final norm (MAE's linear probe, CLS),
    'avg' replaces it by a fresh fc_norm over the patch mean (models_vit.py with global_pool=True, whose
    fine-tuning loads the file with fc_norm missing: main_finetune.py asserts exactly that)."""
    sd, dropped = split_off(ckpt.tensors, DECODER)
    sd, head = split_off(sd, r"head\.")  # a fine-tuned file's classifier
    if "pos_embed" not in sd:
        raise CheckpointError(f"{ckpt.path}: missing: pos_embed; not a {ckpt.family} (MAE ViT) checkpoint")
    dims = vit_dims(sd, ckpt)
    img_size = grid_of(sd["pos_embed"].shape[1] - 1, ckpt, "pos_embed") * dims["patch_size"]
    model = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        num_heads=heads,
        global_pool=global_pool,
        **dims,
    )
    norm = []
    if global_pool == "avg":
        sd, norm = fresh_fc_norm(sd, model)
    return published_vit(ckpt, model, sd, dims, img_size, dropped + head + norm, found, pooling, mean, std)
