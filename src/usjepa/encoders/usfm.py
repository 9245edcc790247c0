"""usfm:PATH, USFM (Jiao et al. 2024; github.com/openmedlab/USFM), a BEiT-style ViT-B on 2M ultrasound images.

PATH is the released weights file, or the folder of a transformers port (``BeitModel.save_pretrained``).
- Layout of the release (USFM_latest.pth): a plain state dict (usdsgen/utils/modelutils.py ``load_pretrained``):
  cls_token, patch_embed.proj, blocks.N.{norm1, attn.qkv (no bias), attn.q_bias, attn.v_bias, attn.proj, norm2,
  mlp.fc1, mlp.fc2, gamma_1, gamma_2} and one shared ``rel_pos_bias.relative_position_bias_table``, which its
  loader copies into every block (``remap_pretrained_keys_vit``, modelutils.py#L199-L214, reads that key
  unconditionally). Its own load is ``strict=False``; here every tensor is placed or dropped by name:
  relative_position_index buffers (rebuilt), the pretraining ``norm`` when the file has no ``fc_norm`` (mean
  pooling builds a fresh fc_norm, vision_transformer.py#L371-L372), mask_token / lm_head / decoder (MIM only), head.
- Layout of the port: transformers' Beit names, renamed onto timm's Beit (q/k/v_proj -> qkv + q_bias / v_bias,
  lambda_1/2 -> gamma_1/2, pooler.layernorm -> fc_norm, ...); its sizes come from its config.json.
- Architecture: configs/model/Cls/vit.yaml: 768 x 12, 12 heads, qkv_bias, init_values 0.1, use_abs_pos_emb false,
  use_rel_pos_bias true, use_mean_pooling true; LayerNorm eps 1e-6 (vision_transformer.py ``build_vit``).
- Input: 224 px (configs/experiment/baseconfig.yaml), RGB, ImageNet mean / std (usdsgen/data/datasets.py#L28-L31),
  for the port too (a port's preprocessor_config.json may carry another library's defaults).
- Pooling: fc_norm over the patch-token mean (vision_transformer.py#L445-L448).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import timm
import torch
from torch import nn

from usjepa.encoders.frozen import FrozenEncoder, TimmViT
from usjepa.encoders.published import (
    Checkpoint,
    fresh_fc_norm,
    grid_of,
    published_vit,
    read_checkpoint,
    rename,
    split_off,
    strip_wrapper,
    vit_dims,
)
from usjepa.encoders.registry import register
from usjepa.errors import CheckpointError, ConfigError

PUBLISHED = (
    "https://github.com/openmedlab/USFM#-latest-usfm-weight (USFM_latest.pth, Google Drive: "
    "drive.google.com/file/d/1KRwXZgYterH895Z8EpXpR1L1eSMMJo4q)"
)
HEADS = 12
PRETRAINING_ONLY = r"(mask_token$|lm_head\.|decoder|head\.|.*relative_position_index$)"
PORT_RENAMES = [
    (r"^(beit\.)?embeddings\.cls_token", "cls_token"),
    (r"^(beit\.)?embeddings\.position_embeddings", "pos_embed"),
    (r"^(beit\.)?embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^(beit\.)?layers\.", "blocks."),
    (r"\.lambda_(\d)$", r".gamma_\1"),
    (r"\.attention\.q_proj\.bias$", ".attn.q_bias"),
    (r"\.attention\.v_proj\.bias$", ".attn.v_bias"),
    (r"\.attention\.o_proj\.", ".attn.proj."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.relative_position_bias\.relative_position_bias_table$", ".attn.relative_position_bias_table"),
    (r"^(beit\.)?shared_position_bias\.", "rel_pos_bias."),
    (r"^(beit\.)?pooler\.layernorm\.", "fc_norm."),
    (r"^(beit\.)?layernorm\.", "norm."),
]


def beit_encoder(ckpt: Checkpoint, sd: dict, heads: int, eps: float, found: str, dropped: list[str]) -> TimmViT:
    """timm's Beit from USFM-layout tensors: the shared table into every block, a fresh fc_norm without one."""
    dims = vit_dims(sd, ckpt)
    shared = sd.pop("rel_pos_bias.relative_position_bias_table", None)
    if shared is not None:
        for i in range(dims["depth"]):
            sd.setdefault(f"blocks.{i}.attn.relative_position_bias_table", shared.clone())
    table = sd.get("blocks.0.attn.relative_position_bias_table")
    if table is None:
        raise CheckpointError(
            f"{ckpt.path}: missing: rel_pos_bias.relative_position_bias_table (or per-block "
            "blocks.N.attn.relative_position_bias_table); not a USFM (BEiT) checkpoint"
        )
    img_size = (grid_of(table.shape[0] - 3, ckpt, "the relative position table") + 1) // 2 * dims["patch_size"]
    model = timm.create_model(
        "beit_base_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        num_heads=heads,
        use_abs_pos_emb="pos_embed" in sd,
        use_rel_pos_bias=True,
        init_values=0.1,
        norm_layer=partial(nn.LayerNorm, eps=eps),
        **dims,
    )
    if "fc_norm.weight" not in sd:
        sd, norm = fresh_fc_norm(sd, model)
        dropped = dropped + norm
    return published_vit(ckpt, model, sd, dims, img_size, dropped, found, "head")


def usfm_file(ckpt: Checkpoint, found: str = "USFM release layout") -> TimmViT:
    """The released layout (or a fine-tuned one: per-block tables, fc_norm)."""
    sd, outside = strip_wrapper(ckpt)
    sd, dropped = split_off(sd, PRETRAINING_ONLY)
    dropped = outside + [ckpt.file_name(k) for k in dropped]  # as the file names them
    return beit_encoder(ckpt, sd, HEADS, 1e-6, found, dropped)


def usfm_port(spec: str, folder: Path) -> TimmViT:
    """A transformers BeitModel folder, read through transformers (which renames older checkpoints) and renamed."""
    try:
        from transformers import BeitModel
    except ImportError:
        raise ConfigError(
            f"{spec}: reading a transformers port needs the `transformers` package (pip install transformers)"
        ) from None
    config = json.loads((folder / "config.json").read_text())
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(
            f"{spec}: {folder} holds no *.safetensors weights (save_pretrained writes model.safetensors)"
        )
    port = BeitModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    sd = port.state_dict()
    sd, dropped = split_off(sd, r"(beit\.)?embeddings\.mask_token$")
    sd = rename(sd, PORT_RENAMES)
    for i in range(port.config.num_hidden_layers):
        q, k, v = (sd.pop(f"blocks.{i}.attention.{n}_proj.weight", None) for n in "qkv")
        if q is not None and k is not None and v is not None:
            sd[f"blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])
    ckpt = Checkpoint(spec, weights[0], sd)
    found = f"transformers port ({config.get('model_type', 'beit')}, {config.get('architectures', ['BeitModel'])[0]})"
    return beit_encoder(ckpt, sd, port.config.num_attention_heads, port.config.layer_norm_eps, found, dropped)


@register("usfm", "usfm:PATH", "USFM's BEiT ViT-B: the released file or a transformers port's folder")
def build(spec: str, path: str) -> FrozenEncoder:
    if (Path(path) / "config.json").is_file():
        return usfm_port(spec, Path(path))
    return usfm_file(
        read_checkpoint(
            spec, path, "the USFM ViT-B/16 weights (USFM_latest.pth, or converted to .safetensors)", PUBLISHED
        )
    )
