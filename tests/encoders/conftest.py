"""Checkpoints fabricated in each published model's own layout (key names and shapes from its code, random values,
tiny sizes), and reference forwards written from each model's own architecture in plain torch operations.

Tiny sizes: width 48 so that the published 12 heads divide it (head dim 4), patch 8, 32 px (a 4 x 4 grid);
UltraSam at 64 px (8 x 8 grid) with window 3, so its window attention pads as SAM's does at 1024 px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

D, P, IMG, HEADS, MLP = 48, 8, 32, 12, 192
GRID = IMG // P


def _rand(gen: torch.Generator, *shape: int, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _norm(gen: torch.Generator, sd: dict, key: str, dim: int) -> None:
    sd[f"{key}.weight"] = 1 + _rand(gen, dim, scale=0.1)
    sd[f"{key}.bias"] = _rand(gen, dim, scale=0.1)


def _linear(gen: torch.Generator, sd: dict, key: str, out: int, inp: int, bias: bool = True) -> None:
    sd[f"{key}.weight"] = _rand(gen, out, inp, scale=inp**-0.5)
    if bias:
        sd[f"{key}.bias"] = _rand(gen, out, scale=0.05)


def _timm_block(gen: torch.Generator, sd: dict, b: str, dim: int, mlp: int) -> None:
    """timm's Block names, as models_mae.py and TinyUSFM's model/tinyusfm.py build them."""
    _norm(gen, sd, b + "norm1", dim)
    _linear(gen, sd, b + "attn.qkv", 3 * dim, dim)
    _linear(gen, sd, b + "attn.proj", dim, dim)
    _norm(gen, sd, b + "norm2", dim)
    _linear(gen, sd, b + "mlp.fc1", mlp, dim)
    _linear(gen, sd, b + "mlp.fc2", dim, mlp)


def mae_state_dict(depth: int = 2, seed: int = 0) -> dict:
    """facebookresearch/mae models_mae.py ``MaskedAutoencoderViT``: encoder, then the decoder (512 wide there)."""
    gen, sd, dd = torch.Generator().manual_seed(seed), {}, 16
    sd["cls_token"] = _rand(gen, 1, 1, D)
    sd["pos_embed"] = _rand(gen, 1, GRID * GRID + 1, D)
    _linear(gen, sd, "patch_embed.proj", D, 3)
    sd["patch_embed.proj.weight"] = _rand(gen, D, 3, P, P, scale=0.05)
    for i in range(depth):
        _timm_block(gen, sd, f"blocks.{i}.", D, MLP)
    _norm(gen, sd, "norm", D)
    _linear(gen, sd, "decoder_embed", dd, D)
    sd["mask_token"] = _rand(gen, 1, 1, dd)
    sd["decoder_pos_embed"] = _rand(gen, 1, GRID * GRID + 1, dd)
    _timm_block(gen, sd, "decoder_blocks.0.", dd, 4 * dd)
    _norm(gen, sd, "decoder_norm", dd)
    _linear(gen, sd, "decoder_pred", P * P * 3, dd)
    return sd


def ultrafedfm_checkpoint(seed: int = 0) -> dict:
    """UltraFedFM util/misc.py ``save_model``: the MAE under 'model', next to optimizer, scaler and argparse args."""
    args = argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True, output_dir="out")
    return {
        "model": mae_state_dict(seed=seed),
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 299,
        "scaler": {"scale": 65536.0},
        "args": args,
    }


def tinyusfm_state_dict(prefix: str = "module.model.", seed: int = 0) -> dict:
    """TinyUSFM model/tinyusfm.py with global_pool=True: no norm, an fc_norm, a head; saved from DDP."""
    gen, sd = torch.Generator().manual_seed(seed), {}
    sd["cls_token"] = _rand(gen, 1, 1, D)
    sd["pos_embed"] = _rand(gen, 1, GRID * GRID + 1, D)
    sd["patch_embed.proj.weight"] = _rand(gen, D, 3, P, P, scale=0.05)
    sd["patch_embed.proj.bias"] = _rand(gen, D, scale=0.05)
    for i in range(2):
        _timm_block(gen, sd, f"blocks.{i}.", D, MLP)
    _norm(gen, sd, "fc_norm", D)
    _linear(gen, sd, "head", 2, D)
    return {prefix + k: v for k, v in sd.items()}


def beit_index(g: int) -> torch.Tensor:
    """USFM's relative_position_index (usdsgen/modules/backbone/vision_transformer.py, Attention.__init__)."""
    coords = torch.stack(torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += g - 1
    rel[:, :, 1] += g - 1
    rel[:, :, 0] *= 2 * g - 1
    n = (2 * g - 1) ** 2 + 3
    index = torch.zeros((g * g + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = n - 3
    index[0:, 0] = n - 2
    index[0, 0] = n - 1
    return index


def usfm_state_dict(layout: str = "release", seed: int = 0) -> dict:
    """USFM's VisionTransformer (configs/model/Cls/vit.yaml: qkv_bias, init_values, rel pos bias, no abs pos).

    "release": pretraining as USFM_latest.pth holds it: one shared rel_pos_bias table (its loader requires it),
    the final norm, a mask token. "finetuned": per-block tables and index buffers, fc_norm and a head.
    """
    gen, sd = torch.Generator().manual_seed(seed), {}
    n_rel = (2 * GRID - 1) ** 2 + 3
    sd["cls_token"] = _rand(gen, 1, 1, D)
    sd["patch_embed.proj.weight"] = _rand(gen, D, 3, P, P, scale=0.05)
    sd["patch_embed.proj.bias"] = _rand(gen, D, scale=0.05)
    if layout == "release":
        sd["mask_token"] = _rand(gen, 1, 1, D)
        sd["rel_pos_bias.relative_position_bias_table"] = _rand(gen, n_rel, HEADS, scale=0.5)
        sd["rel_pos_bias.relative_position_index"] = beit_index(GRID)
    for i in range(2):
        b = f"blocks.{i}."
        sd[b + "gamma_1"] = 0.1 + _rand(gen, D, scale=0.05)
        sd[b + "gamma_2"] = 0.1 + _rand(gen, D, scale=0.05)
        _norm(gen, sd, b + "norm1", D)
        sd[b + "attn.q_bias"] = _rand(gen, D, scale=0.05)
        sd[b + "attn.v_bias"] = _rand(gen, D, scale=0.05)
        if layout == "finetuned":
            sd[b + "attn.relative_position_bias_table"] = _rand(gen, n_rel, HEADS, scale=0.5)
            sd[b + "attn.relative_position_index"] = beit_index(GRID)
        _linear(gen, sd, b + "attn.qkv", 3 * D, D, bias=False)
        _linear(gen, sd, b + "attn.proj", D, D)
        _norm(gen, sd, b + "norm2", D)
        _linear(gen, sd, b + "mlp.fc1", MLP, D)
        _linear(gen, sd, b + "mlp.fc2", D, MLP)
    if layout == "release":
        _norm(gen, sd, "norm", D)
    else:
        _norm(gen, sd, "fc_norm", D)
        _linear(gen, sd, "head", 3, D)
    return sd


SAM_GRID, SAM_WINDOW, SAM_GLOBAL, SAM_DEPTH = 8, 3, (1, 3), 4


def ultrasam_checkpoint(seed: int = 0) -> dict:
    """UltraSam.pth: mmengine {'state_dict', 'meta'}; mmpretrain ViTSAM under backbone., the SAM heads elsewhere."""
    gen, sd, hd = torch.Generator().manual_seed(seed), {}, D // HEADS
    b = "backbone."
    sd[b + "patch_embed.projection.weight"] = _rand(gen, D, 3, P, P, scale=0.05)
    sd[b + "patch_embed.projection.bias"] = _rand(gen, D, scale=0.05)
    sd[b + "pos_embed"] = _rand(gen, 1, SAM_GRID, SAM_GRID, D)
    for i in range(SAM_DEPTH):
        layer = f"{b}layers.{i}."
        span = 2 * (SAM_GRID if i in SAM_GLOBAL else SAM_WINDOW) - 1
        _norm(gen, sd, layer + "ln1", D)
        _linear(gen, sd, layer + "attn.qkv", 3 * D, D)
        _linear(gen, sd, layer + "attn.proj", D, D)
        sd[layer + "attn.rel_pos_h"] = _rand(gen, span, hd, scale=0.5)
        sd[layer + "attn.rel_pos_w"] = _rand(gen, span, hd, scale=0.5)
        _norm(gen, sd, layer + "ln2", D)
        _linear(gen, sd, layer + "ffn.layers.0.0", MLP, D)
        _linear(gen, sd, layer + "ffn.layers.1", D, MLP)
    sd[b + "channel_reduction.0.weight"] = _rand(gen, 16, D, 1, 1)
    _norm(gen, sd, b + "channel_reduction.1", 16)
    sd[b + "channel_reduction.2.weight"] = _rand(gen, 16, 16, 3, 3)
    _norm(gen, sd, b + "channel_reduction.3", 16)
    sd["prompt_encoder.label_encoder.label_embedding.weight"] = _rand(gen, 11, 16)
    sd["decoder.layers.0.self_attn.attn.in_proj_bias"] = _rand(gen, 48)
    sd["bbox_head.output_upscaling.0.weight"] = _rand(gen, 16, 4, 2, 2)
    return {"state_dict": sd, "meta": {"mmpretrain_version": "1.0.0rc7", "dataset_meta": {}}}


# ---- reference forwards ----------------------------------------------------------------------------------------


def _ln(x: torch.Tensor, sd: dict, key: str, eps: float = 1e-6) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"], eps)


def _mha(qkv: torch.Tensor, heads: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N, 3D] -> [B, N, D] as TinyUSFM's Attention.forward (model/tinyusfm.py#L15-L31) and timm 0.5's do."""
    b, n, three_d = qkv.shape
    hd = three_d // 3 // heads
    q, k, v = qkv.reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    attn = (q * hd**-0.5) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    return (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, three_d // 3)


def _patches(x: torch.Tensor, sd: dict, key: str) -> torch.Tensor:
    w = sd[f"{key}.weight"]
    return F.conv2d(x, w, sd[f"{key}.bias"], stride=w.shape[-1])


def vit_tokens(sd: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """models_mae.py forward_encoder without masking (timm Blocks): the tokens after the last block, before any norm."""
    t = _patches(x, sd, "patch_embed.proj").flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], 1) + sd["pos_embed"]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}."
        qkv = F.linear(_ln(t, sd, b + "norm1"), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        t = t + F.linear(_mha(qkv, heads), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.gelu(F.linear(_ln(t, sd, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        t = t + F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    return t


def mae_linprobe_reference(sd: dict, x: torch.Tensor, heads: int = HEADS) -> torch.Tensor:
    """MAE's linear-probe feature: the CLS token after the final norm (models_vit.py#L49-L51)."""
    return _ln(vit_tokens(sd, x, heads), sd, "norm")[:, 0]


def global_pool_reference(sd: dict, x: torch.Tensor, heads: int = HEADS, fc_norm: dict | None = None) -> torch.Tensor:
    """models_vit.py / TinyUSFM global_pool=True: fc_norm(mean of the patch tokens); a fresh fc_norm when absent."""
    pooled = vit_tokens(sd, x, heads)[:, 1:].mean(1)
    if fc_norm is None:
        return F.layer_norm(pooled, pooled.shape[-1:], eps=1e-6)
    return _ln(pooled, fc_norm, "fc_norm")


def usfm_reference(sd: dict, x: torch.Tensor, heads: int = HEADS) -> torch.Tensor:
    """USFM's VisionTransformer.forward_features (vision_transformer.py): BEiT blocks with q/v bias, relative position
    bias (the shared table when per-block ones are absent), layer scale; fc_norm over the patch mean."""
    t = _patches(x, sd, "patch_embed.proj").flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], 1)
    n = t.shape[1]
    index = beit_index(round((n - 1) ** 0.5)).view(-1)
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}."
        table = sd.get(b + "attn.relative_position_bias_table", sd.get("rel_pos_bias.relative_position_bias_table"))
        bias = table[index].view(n, n, -1).permute(2, 0, 1)
        qkv_bias = torch.cat([sd[b + "attn.q_bias"], torch.zeros_like(sd[b + "attn.v_bias"]), sd[b + "attn.v_bias"]])
        qkv = F.linear(_ln(t, sd, b + "norm1"), sd[b + "attn.qkv.weight"], qkv_bias)
        attn = F.linear(_mha(qkv, heads, bias), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        t = t + sd[b + "gamma_1"] * attn
        h = F.gelu(F.linear(_ln(t, sd, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        t = t + sd[b + "gamma_2"] * F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    pooled = t[:, 1:].mean(1)
    if "fc_norm.weight" in sd:
        return _ln(pooled, sd, "fc_norm")
    return F.layer_norm(pooled, pooled.shape[-1:], eps=1e-6)  # a fresh fc_norm (ones, zeros)


def _rel_pos(size: int, table: torch.Tensor) -> torch.Tensor:
    """mmpretrain vit_sam.py get_rel_pos for equal query and key sizes."""
    coords = torch.arange(size)[:, None] - torch.arange(size)[None, :] + (size - 1)
    return table[coords]


def _sam_attention(x: torch.Tensor, sd: dict, a: str, heads: int) -> torch.Tensor:
    """mmpretrain vit_sam.py Attention.forward with add_decomposed_rel_pos."""
    b, h, w, d = x.shape
    qkv = F.linear(x, sd[a + "qkv.weight"], sd[a + "qkv.bias"]).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, h * w, -1).unbind(0)
    attn = (q * (d // heads) ** -0.5) @ k.transpose(-2, -1)
    r_q = q.reshape(b * heads, h, w, -1)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, _rel_pos(h, sd[a + "rel_pos_h"]))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, _rel_pos(w, sd[a + "rel_pos_w"]))
    attn = (attn.view(b * heads, h, w, h, w) + rel_h[..., None] + rel_w[:, :, :, None, :]).view(b * heads, h * w, h * w)
    out = (attn.softmax(-1) @ v).view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return F.linear(out, sd[a + "proj.weight"], sd[a + "proj.bias"])


def ultrasam_reference(ckpt: dict, x: torch.Tensor, heads: int = HEADS) -> torch.Tensor:
    """mmpretrain ViTSAM.forward, out_channels=0, out_type='avg_featmap' (UltraSam's classifier backbone)."""
    sd, bb = ckpt["state_dict"], "backbone."
    t = _patches(x, sd, bb + "patch_embed.projection").permute(0, 2, 3, 1) + sd[bb + "pos_embed"]
    for i in range(SAM_DEPTH):
        layer = f"{bb}layers.{i}."
        shortcut, h = t, _ln(t, sd, layer + "ln1")
        if i not in SAM_GLOBAL:  # window_partition with padding, attention per window, window_unpartition
            n, gh, gw, d = h.shape
            ws, pad = SAM_WINDOW, (-gh) % SAM_WINDOW
            h = F.pad(h, (0, 0, 0, pad, 0, pad))
            hp = gh + pad
            h = h.view(n, hp // ws, ws, hp // ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, d)
            h = _sam_attention(h, sd, layer + "attn.", heads)
            h = h.view(n, hp // ws, hp // ws, ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(n, hp, hp, d)[:, :gh, :gw]
        else:
            h = _sam_attention(h, sd, layer + "attn.", heads)
        t = shortcut + h
        ffn = F.gelu(
            F.linear(_ln(t, sd, layer + "ln2"), sd[layer + "ffn.layers.0.0.weight"], sd[layer + "ffn.layers.0.0.bias"])
        )
        t = t + F.linear(ffn, sd[layer + "ffn.layers.1.weight"], sd[layer + "ffn.layers.1.bias"])
    return t.permute(0, 3, 1, 2).flatten(2).mean(-1)


def images(n: int = 2, size: int = IMG, seed: int = 5) -> torch.Tensor:
    """A normalised batch [n, 3, size, size]."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def save(obj: dict, path: Path) -> Path:
    torch.save(obj, path)
    return path
