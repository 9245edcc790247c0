"""Shared by the published ViT families: a timm ViT from a released weights file, wrapper prefixes and
pretraining-only tensors removed."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import timm
from torch import nn

from usjepa.encoders.frozen import FrozenEncoder, TimmViT, token_poolings
from usjepa.errors import CheckpointError
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD
from usjepa.weights import file_sha256, load_weights, state_dict_from

PRETRAINING_ONLY = ("head.", "fc.", "decoder", "mask_token", "lm_head")


def backbone_keys(sd: dict) -> dict:
    """Keys relative to the ViT: a wrapper's prefix (module., net.backbone., encoder., ...) is read off cls_token."""
    prefix = next((k[: -len("cls_token")] for k in sd if k.endswith("cls_token")), "")
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def vit_from_file(spec: str, path: str, arch: str, pooling: str, published: str,
                  remap: Callable[[dict, nn.Module], dict] = lambda sd, model: sd, **kwargs) -> FrozenEncoder:
    """A 224 px, ImageNet-normalised timm ViT ``arch`` from the weights file ``path`` (published at ``published``)."""
    family = spec.partition(":")[0].upper()
    if not Path(path).is_file():
        raise CheckpointError(f"{spec}: weights file {path} not found; expected the {family} ViT-B/16 weights "
                              f"as .safetensors or a weights-only .pth (published at {published})")
    sd = backbone_keys(state_dict_from(load_weights(path, f"{family} weights"), path))
    model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    sd = remap({k: v for k, v in sd.items() if not k.startswith(PRETRAINING_ONLY)}, model)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit {family} ({arch}): {str(e).splitlines()[1].strip()} ...") from None
    return TimmViT(spec, model, 224, 3, IMAGENET_MEAN, IMAGENET_STD, pooling, token_poolings(model), file_sha256(path))
