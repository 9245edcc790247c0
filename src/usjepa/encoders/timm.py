"""timm:NAME@FILE, any timm model (ViT or CNN) with a local weights file."""

from __future__ import annotations

from pathlib import Path

import timm

from usjepa.encoders.frozen import FrozenEncoder, timm_adapter
from usjepa.encoders.registry import register
from usjepa.errors import CheckpointError
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD
from usjepa.weights import file_sha256, load_weights, state_dict_from

HEADS = ("head.", "fc.", "classifier.")  # classifier weights, dropped: encoders are built with num_classes=0


@register("timm", "timm:NAME@FILE", "a timm model with its weights file (.safetensors or weights-only .pth)")
def build(spec: str, arg: str) -> FrozenEncoder:
    name, _, weights = arg.partition("@")
    if not weights:
        raise CheckpointError(f"'{spec}': give the local weights file as timm:NAME@FILE (no downloads at run time)")
    if not Path(weights).is_file():
        cfg = timm.models.get_pretrained_cfg(name)
        where = f"https://huggingface.co/{cfg.hf_hub_id}" if cfg and cfg.hf_hub_id else "the timm model hub"
        raise CheckpointError(
            f"{spec}: weights file {weights} not found; expected a .safetensors or .pth state dict "
            f"for timm model '{name}' (public weights: {where})"
        )
    sd = state_dict_from(load_weights(weights, f"weights for timm model '{name}'"), weights)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as e:
        raise CheckpointError(f"timm:{name}: unknown timm model ({e})") from None
    try:
        model.load_state_dict({k: v for k, v in sd.items() if not k.startswith(HEADS)}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: does not fit timm model '{name}': {str(e).splitlines()[0]} ...") from None
    cfg = model.pretrained_cfg
    size = cfg.get("input_size", (3, 224, 224))
    return timm_adapter(
        spec,
        model,
        size[-1],
        size[0],
        cfg.get("mean", IMAGENET_MEAN),
        cfg.get("std", IMAGENET_STD),
        weights_sha256=file_sha256(weights),
    )
