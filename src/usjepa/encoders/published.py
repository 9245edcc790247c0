"""Shared by the published ultrasound families: read a released checkpoint safely, map its keys explicitly, load
strictly, and say what was dropped.

Architecture sizes (width, depth, patch, grid, MLP ratio) are read off the tensors' shapes; what shapes cannot
tell (the number of heads) each family declares from its model's code. The load is strict: a tensor the model
needs and the file lacks fails naming it, and every tensor a family drops is listed in ``load_report``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models.beit import Beit
from torch import nn

from usjepa.encoders.frozen import TimmViT, token_poolings
from usjepa.errors import CheckpointError
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD
from usjepa.weights import file_sha256, load_weights, state_dict_from

log = logging.getLogger("usjepa.encoders")


@dataclass
class Checkpoint:
    """A released file's tensors, with where it came from (for error messages)."""

    spec: str
    path: Path
    tensors: dict[str, torch.Tensor]
    file_name: Callable[[str], str] = str  # a model key as the file names it (for error messages)

    @property
    def family(self) -> str:
        return self.spec.partition(":")[0]


def read_checkpoint(spec: str, path: str, what: str, published: str, convert: str | None = None) -> Checkpoint:
    """The tensors of ``path`` (plain, or under 'state_dict' / 'model'); a missing file names where it is published."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{spec}: weights file {p} not found; expected {what} (published at {published})")
    return Checkpoint(spec, p, state_dict_from(load_weights(p, what, convert), p))


def strip_prefix(ckpt: Checkpoint, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Keys without the first of ``prefixes`` that every key starts with (DDP's 'module.', ...); errors name the
    file's keys with it."""
    sd = ckpt.tensors
    for prefix in prefixes:
        if sd and all(k.startswith(prefix) for k in sd):
            ckpt.file_name = prefix.__add__
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def strip_wrapper(ckpt: Checkpoint, anchor: str = "cls_token") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keys relative to the backbone, whose wrapper prefix (module., net.backbone., student., ...) is read off the
    ``anchor`` key; returns them and the keys outside that prefix (to be reported as dropped)."""
    prefix = next((k[: -len(anchor)] for k in ckpt.tensors if k.endswith(anchor)), "")
    if prefix:
        ckpt.file_name = prefix.__add__
    inside = {k[len(prefix) :]: v for k, v in ckpt.tensors.items() if k.startswith(prefix)}
    return inside, [k for k in ckpt.tensors if not k.startswith(prefix)]


def rename(sd: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Each key through the regex rules (pattern, replacement), all applied in order."""
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def split_off(sd: dict[str, torch.Tensor], pattern: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the keys not matching ``pattern``, the matching ones): what a family declares it does not use."""
    dropped = [k for k in sd if re.match(pattern, k)]
    return {k: v for k, v in sd.items() if k not in dropped}, dropped


def summarise(keys: list[str]) -> str:
    """Key names, those differing only in a block index folded: 'decoder_blocks.*.norm1.weight (x8), mask_token'."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(re.sub(r"\.\d+\.", ".*.", k), []).append(k)
    return ", ".join(f"{g} (x{len(ks)})" if len(ks) > 1 else ks[0] for g, ks in groups.items())


def load_strict(
    model: nn.Module, sd: dict[str, torch.Tensor], ckpt: Checkpoint, arch: str, dropped: list[str], found: str
) -> str:
    """Load ``sd`` into ``model`` exactly; returns the load report (layout found, tensors dropped by name)."""
    ours = model.state_dict()
    missing = [ckpt.file_name(k) for k in ours if k not in sd]
    unexpected = [k for k in sd if k not in ours]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(ours[k].shape)}" for k in sd if k in ours and sd[k].shape != ours[k].shape
    ]
    faults = [
        f"{what}: {', '.join(keys[:8])}{f' (+{len(keys) - 8} more)' if len(keys) > 8 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape file vs model", shapes))
        if keys
    ]
    if faults:
        raise CheckpointError(f"{ckpt.path}: does not fit {ckpt.family} ({arch}, {found}); " + "; ".join(faults))
    model.load_state_dict(sd, strict=True)
    report = f"{ckpt.family}: {found}; loaded {len(sd)} tensors into {arch}"
    report += f"; dropped {len(dropped)}: {summarise(dropped)}" if dropped else "; dropped none"
    log.info(report)
    return report


def fresh_fc_norm(sd: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A file's final norm dropped and the model's fresh fc_norm in its place (a head over the patch mean)."""
    sd, norm = split_off(sd, r"norm\.")
    return sd | {k: v for k, v in model.state_dict().items() if k.startswith("fc_norm.")}, norm


def published_vit(
    ckpt: Checkpoint,
    model: nn.Module,
    sd: dict[str, torch.Tensor],
    dims: dict,
    img_size: int,
    dropped: list[str],
    found: str,
    pooling: str,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> TimmViT:
    """``sd`` loaded strictly into a timm ViT or BEiT ``model``, as a frozen encoder carrying its load report."""
    kind = "BEiT" if isinstance(model, Beit) else "ViT"
    heads = model.blocks[0].attn.num_heads
    arch = f"{kind} {dims['embed_dim']}x{dims['depth']}, {heads} heads, patch {dims['patch_size']}, {img_size} px"
    report = load_strict(model, sd, ckpt, arch, dropped, found)
    return TimmViT(
        ckpt.spec,
        model,
        img_size,
        dims["in_chans"],
        mean,
        std,
        pooling,
        token_poolings(model),
        file_sha256(ckpt.path),
        load_report=report,
    )


def vit_dims(sd: dict[str, torch.Tensor], ckpt: Checkpoint, prefix: str = "blocks.") -> dict:
    """Width, depth, patch size, input channels and MLP ratio of a ViT from its tensors' shapes."""
    if "patch_embed.proj.weight" not in sd:
        raise CheckpointError(
            f"{ckpt.path}: no patch_embed.proj.weight; not a {ckpt.family} checkpoint "
            f"(its first keys: {', '.join(list(ckpt.tensors)[:5])})"
        )
    w = sd["patch_embed.proj.weight"]
    depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))), default=-1)
    fc1 = sd.get(f"{prefix}0.mlp.fc1.weight")
    if depth == 0 or fc1 is None:
        raise CheckpointError(f"{ckpt.path}: no {prefix}0.mlp.fc1.weight; not a {ckpt.family} checkpoint")
    return {
        "embed_dim": w.shape[0],
        "in_chans": w.shape[1],
        "patch_size": w.shape[-1],
        "depth": depth,
        "mlp_ratio": fc1.shape[0] / w.shape[0],
    }


def grid_of(n_tokens: int, ckpt: Checkpoint, what: str) -> int:
    """The side of a square patch grid of ``n_tokens`` tokens."""
    g = round(n_tokens**0.5)
    if g * g != n_tokens:
        raise CheckpointError(f"{ckpt.path}: {what} holds {n_tokens} positions, not a square grid")
    return g
