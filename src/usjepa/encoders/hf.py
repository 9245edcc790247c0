"""hf:DIR, a transformers ViT saved locally with save_pretrained (DINOv2, DINOv3, ...)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from usjepa.encoders.frozen import FrozenEncoder, HFViT
from usjepa.encoders.registry import register
from usjepa.errors import CheckpointError, ConfigError
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD
from usjepa.weights import file_sha256

MEAN_POOLED = ("beit", "data2vec-vision")  # transformers families whose pooler is the layernorm of the patch mean


@register("hf", "hf:DIR", "a transformers ViT folder from save_pretrained (needs `transformers`)")
def build(spec: str, path: str) -> FrozenEncoder:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise CheckpointError(
            f"{spec}: {p / 'config.json'} not found; expected a folder written by "
            "transformers' save_pretrained (config.json, model.safetensors, preprocessor_config.json)"
        )
    try:
        from transformers import AutoModel
    except ImportError:
        raise ConfigError(
            f"{spec}: hf: encoders need the `transformers` package, which is not installed (pip install transformers)"
        ) from None
    model = AutoModel.from_pretrained(p, local_files_only=True, use_safetensors=True)
    pre = json.loads((p / "preprocessor_config.json").read_text()) if (p / "preprocessor_config.json").is_file() else {}
    native = getattr(model.config, "image_size", 224)  # without a preprocessor config: the model's own size
    native = native if isinstance(native, int) else native[0]
    size = pre.get("crop_size", pre.get("size", {})) or {}
    img_size = size.get("height", size.get("shortest_edge", native)) if isinstance(size, dict) else int(size)
    weights = sorted(p.glob("*.safetensors"))
    sha = hashlib.sha256("".join(file_sha256(w) for w in weights).encode()).hexdigest() if weights else None
    pooling = default_pooling(model.config)
    poolings = ("cls", "mean", "cls+mean", "last4", "cls+mean-last4") + (("head",) if pooling == "head" else ())
    return HFViT(
        spec,
        model,
        int(img_size),
        3,
        tuple(pre.get("image_mean", IMAGENET_MEAN)),
        tuple(pre.get("image_std", IMAGENET_STD)),
        pooling,
        poolings,
        sha,
    )


def default_pooling(config) -> str:
    """The family's own feature: the pooler of mean-pooled BEiT-style models (layernorm of the patch mean, as
    BEiT / data2vec-vision / USFM ports evaluate), else the CLS token after the final norm (DINOv2, DINOv3, ViT)."""
    if config.model_type in MEAN_POOLED and getattr(config, "use_mean_pooling", False):
        return "head"
    return "cls"
