"""The frozen-encoder adapter: one interface over timm ViTs, timm CNNs and transformers ViTs.

It gives pooled features (the benchmark's) and a patch-token map [B, D, h, w] at a declared stride (a teacher's).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from usjepa.errors import CheckpointError, ConfigError

TOKEN_POOLINGS = ("cls", "mean", "cls+mean", "last4", "cls+mean-last4", "head")
# lastN: DINOv2's linear-eval input (dinov2/eval/linear.py create_linear_input, use_avgpool): the CLS tokens of the
# last N blocks and the patch mean of the last block only, every block through the final norm. cls+mean-lastN
# (mean-lastN without a CLS token): the CLS token and patch mean of each of the last N blocks, concatenated.
MULTI_BLOCK = re.compile(r"(last|cls\+mean-last|mean-last)(\d+)")


@dataclass
class FrozenEncoder:
    """A frozen backbone plus what it expects: input size, channels, normalisation and pooling options."""

    spec: str
    model: nn.Module
    img_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooling: str  # the default
    poolings: tuple[str, ...]
    weights_sha256: str | None = None  # of the weights file, when there is one
    load_report: str = ""  # a published file's loader: the layout it found and every tensor it dropped, by name
    fingerprint: str = field(init=False)  # of the weight tensors: keys the feature cache, checked by --verify
    device: torch.device = field(init=False, default=torch.device("cpu"))

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)
        self.fingerprint = tensors_sha256(self.model.state_dict())
        self._check_input()

    def to(self, device: torch.device) -> FrozenEncoder:
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

        ``poolings`` lists the N = 4 forms of lastN / cls+mean-lastN; any other N up to the depth works too.
        """
        pooling = pooling or self.pooling
        m = MULTI_BLOCK.fullmatch(pooling)
        offered = m and f"{m.group(1)}4" in self.poolings and 1 <= int(m.group(2)) <= self._depth()
        if pooling not in self.poolings and not offered:
            raise ConfigError(f"{self.spec}: pooling '{pooling}' not offered (choose from {', '.join(self.poolings)})")
        return self._pooled(x, pooling)

    def _pooled(self, x: torch.Tensor, pooling: str) -> torch.Tensor:
        raise NotImplementedError

    def _depth(self) -> int:
        return len(getattr(self.model, "blocks", ()))

    def patch_map(self, x: torch.Tensor, layer: int = -1, last_k: int = 1) -> torch.Tensor:
        """The feature map [B, D, h, w] of a normalised batch at ``layer`` (a block or stage; -1: the last).

        Token models average the blocks ``layer - last_k + 1 .. layer``; CNNs take one stage (``last_k`` 1).
        """
        raise ConfigError(f"{self.spec}: this encoder gives no patch-token map (only pooled features)")

    def stride(self, layer: int = -1) -> int:
        """Input pixels per map cell at ``layer``."""
        raise ConfigError(f"{self.spec}: this encoder gives no patch-token map (only pooled features)")

    def set_input_size(self, size: int) -> None:
        """Run at ``size`` px from now on (ViTs resample their position embeddings; CNNs take any size)."""
        self.img_size = size

    def _check_input(self) -> None:
        x = torch.zeros(1, self.in_chans, self.img_size, self.img_size)
        try:
            with torch.inference_mode():
                self.features(x)
        except (RuntimeError, AssertionError, ValueError) as e:
            raise CheckpointError(
                f"{self.spec}: encoder rejects its declared input {self.in_chans}x{self.img_size}x"
                f"{self.img_size} (input-size mismatch: {str(e).splitlines()[0]})"
            ) from None


def _multi_block(normed: list[torch.Tensor], pooling: str, n_prefix: int) -> torch.Tensor:
    """lastN / cls+mean-lastN / mean-lastN of the last N blocks' normed tokens [B, prefix + patches, D]."""
    kind, n = MULTI_BLOCK.fullmatch(pooling).groups()
    blocks = normed[-int(n) :]
    if kind == "last":
        return torch.cat([h[:, 0] for h in blocks] + [blocks[-1][:, n_prefix:].mean(1)], dim=1)
    return torch.cat([_pool(h, kind.removesuffix("-last"), n_prefix) for h in blocks], dim=1)


def _pool(tokens: torch.Tensor, pooling: str, n_prefix: int) -> torch.Tensor:
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return tokens[:, n_prefix:].mean(1)
    return torch.cat([tokens[:, 0], tokens[:, n_prefix:].mean(1)], dim=1)  # cls+mean


def _block_indices(n_blocks: int, layer: int, last_k: int, spec: str) -> list[int]:
    end = layer % n_blocks if -n_blocks <= layer < n_blocks else None
    if end is None or not 1 <= last_k <= end + 1:
        raise ConfigError(f"{spec}: layer {layer} with last_k {last_k} does not fit its {n_blocks} blocks")
    return list(range(end - last_k + 1, end + 1))


def _tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """Patch tokens [B, N, D] of a square grid -> [B, D, h, w]."""
    b, n, d = tokens.shape
    h = round(n**0.5)
    return tokens.transpose(1, 2).reshape(b, d, h, n // h)


class TimmViT(FrozenEncoder):
    """A timm token model (ViT, DeiT, BEiT, ...): prefix (CLS, register) tokens are left out of maps and means."""

    def _pooled(self, x: torch.Tensor, pooling: str) -> torch.Tensor:
        if MULTI_BLOCK.fullmatch(pooling):
            n = int(MULTI_BLOCK.fullmatch(pooling).group(2))
            blocks = self.model.forward_intermediates(
                x, indices=n, return_prefix_tokens=True, norm=True, output_fmt="NLC", intermediates_only=True
            )
            return _multi_block(
                [torch.cat([prefix, patches], 1) for patches, prefix in blocks], pooling, self.model.num_prefix_tokens
            )
        tokens = self.model.forward_features(x)
        if pooling == "head":
            return self.model.forward_head(tokens, pre_logits=True)
        return _pool(tokens, pooling, self.model.num_prefix_tokens)

    def patch_map(self, x: torch.Tensor, layer: int = -1, last_k: int = 1) -> torch.Tensor:
        if layer == -1 and last_k == 1:  # the final norm's output, as forward_features computes it
            return _tokens_to_map(self.model.forward_features(x)[:, self.model.num_prefix_tokens :])
        idx = _block_indices(len(self.model.blocks), layer, last_k, self.spec)
        maps = self.model.forward_intermediates(x, indices=idx, norm=True, output_fmt="NCHW", intermediates_only=True)
        return torch.stack(maps).mean(0)

    def stride(self, layer: int = -1) -> int:
        return self.model.patch_embed.patch_size[0]

    def set_input_size(self, size: int) -> None:
        if size != self.img_size:
            self.model.set_input_size(img_size=(size, size))  # resamples the position embeddings
            self.model.requires_grad_(False)
            self.fingerprint = tensors_sha256(self.model.state_dict())
        self.img_size = size


class TimmCNN(FrozenEncoder):
    """A timm convolutional net: pooled head features; maps at the stages of its ``feature_info``."""

    def __post_init__(self) -> None:
        self.model.to(memory_format=torch.channels_last)  # about 20 % faster on CPU
        super().__post_init__()

    def _pooled(self, x: torch.Tensor, pooling: str) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def _stage(self, layer: int) -> int:
        stages = getattr(self.model, "feature_info", None)
        if not stages or not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(f"{self.spec}: this encoder declares no feature stages, so it gives no patch-token map")
        if not -len(stages) <= layer < len(stages):
            described = ", ".join(f"{i}: {s['num_chs']} ch at stride {s['reduction']}" for i, s in enumerate(stages))
            raise ConfigError(f"{self.spec}: no stage {layer}; its stages are {described}")
        return layer % len(stages)

    def patch_map(self, x: torch.Tensor, layer: int = -1, last_k: int = 1) -> torch.Tensor:
        stage = self._stage(layer)
        if last_k != 1:
            raise ConfigError(f"{self.spec}: last_k {last_k}: a CNN's stages differ in shape; use one stage (last_k 1)")
        x = x.contiguous(memory_format=torch.channels_last)
        return self.model.forward_intermediates(x, indices=[stage], stop_early=True, intermediates_only=True)[0]

    def stride(self, layer: int = -1) -> int:
        return self.model.feature_info[self._stage(layer)]["reduction"]


class HFViT(FrozenEncoder):
    """A transformers ViT (DINOv2, DINOv3, ...): CLS first, then register tokens, then the patches."""

    @functools.cached_property
    def _any_size(self) -> dict[str, bool]:
        """ViT, BEiT and data2vec interpolate their position embeddings only when asked (a no-op at their native
        size); DINOv2 and DINOv3 take no such argument and always do."""
        asks = "interpolate_pos_encoding" in inspect.signature(self.model.forward).parameters
        return {"interpolate_pos_encoding": True} if asks else {}

    def _run(self, x: torch.Tensor, **kw):
        """The model's forward at any input size."""
        return self.model(pixel_values=x, **self._any_size, **kw)

    def _n_prefix(self) -> int:
        return 1 + getattr(self.model.config, "num_register_tokens", 0)

    def _last_blocks(self, x: torch.Tensor, idx: list[int]) -> list[torch.Tensor]:
        """Tokens of the blocks ``idx``, through the final norm (as DINOv2's own linear evaluation takes them)."""
        hidden = self._run(x, output_hidden_states=True).hidden_states[1:]
        norm = getattr(self.model, "layernorm", None) or getattr(self.model, "norm", None) or nn.Identity()
        return [norm(hidden[i]) for i in idx]

    def _depth(self) -> int:
        return self.model.config.num_hidden_layers

    def _pooled(self, x: torch.Tensor, pooling: str) -> torch.Tensor:
        if MULTI_BLOCK.fullmatch(pooling):
            n = int(MULTI_BLOCK.fullmatch(pooling).group(2))
            return _multi_block(self._last_blocks(x, list(range(self._depth()))[-n:]), pooling, self._n_prefix())
        if pooling == "head":  # the model's own pooler (BEiT's: layernorm of the patch mean)
            return self._run(x).pooler_output
        return _pool(self._run(x).last_hidden_state, pooling, self._n_prefix())

    def patch_map(self, x: torch.Tensor, layer: int = -1, last_k: int = 1) -> torch.Tensor:
        if layer == -1 and last_k == 1:
            tokens = [self._run(x).last_hidden_state]
        else:
            tokens = self._last_blocks(x, _block_indices(self.model.config.num_hidden_layers, layer, last_k, self.spec))
        return _tokens_to_map(torch.stack(tokens).mean(0)[:, self._n_prefix() :])

    def stride(self, layer: int = -1) -> int:
        p = self.model.config.patch_size
        return p if isinstance(p, int) else p[0]


def tensors_sha256(sd: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names, dtypes, shapes and bytes (independent of the file format)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def token_poolings(model: nn.Module) -> tuple[str, ...]:
    """The poolings a timm token model offers: CLS ones (and DINOv2's last4) when it has a CLS token, the multi-block
    ones when it has 4 blocks (mean-last4 in place of cls+mean-last4 without a CLS token)."""
    has_cls = getattr(model, "cls_token", None) is not None
    deep = len(getattr(model, "blocks", ())) >= 4
    names = [p if has_cls or p != "cls+mean-last4" else "mean-last4" for p in TOKEN_POOLINGS]
    return tuple(p for p in names if (has_cls or ("cls" not in p and p != "last4")) and (deep or "last" not in p))


def is_token_model(model: nn.Module) -> bool:
    return hasattr(model, "forward_intermediates") and hasattr(model, "num_prefix_tokens")


def timm_adapter(
    spec: str,
    model: nn.Module,
    img_size: int,
    in_chans: int,
    mean,
    std,
    pooling: str = "head",
    weights_sha256: str | None = None,
) -> FrozenEncoder:
    """A timm model as a TimmViT or a TimmCNN, whichever it is."""
    if is_token_model(model):
        return TimmViT(
            spec, model, img_size, in_chans, tuple(mean), tuple(std), pooling, token_poolings(model), weights_sha256
        )
    return TimmCNN(spec, model, img_size, in_chans, tuple(mean), tuple(std), "head", ("head",), weights_sha256)


def from_card(spec: str, model: nn.Module, card: dict, weights_sha256: str | None) -> FrozenEncoder:
    """A usjepa export's backbone (mean pooling: the JEPA methods do not train a CLS token)."""
    return timm_adapter(
        spec, model, int(card["img_size"]), int(card["in_chans"]), card["mean"], card["std"], "mean", weights_sha256
    )
