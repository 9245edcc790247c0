"""Segmentation probes on frozen patch maps (DINOv2's linear segmentation).

``linear``: a 1x1 linear head on the encoder's last patch map; ``multiscale``: the same on the last 4 blocks'
maps concatenated (channels). Logits are bilinearly upsampled to the mask size (the encoder's input size; masks
are resized there with nearest neighbours). CNNs use the deepest stage at stride <= ``CNN_STRIDE`` (multiscale:
it and the 3 stages before it, resampled to its grid). Maps are cached per encoder x task x split x variant as
float16 grids. Training: AdamW, cross-entropy inside the scan region plus an optional soft Dice loss; the epoch
with the best validation mean Dice is kept, with patience. Test images only meet the kept weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from usjepa.bench.cache import Cache
from usjepa.bench.features import FEATURES_VERSION, loader
from usjepa.bench.segmetrics import image_scores, summarise
from usjepa.bench.segtasks import SegTask, read_class_mask
from usjepa.data.ultrabench import read_record
from usjepa.encoders import FrozenEncoder
from usjepa.encoders.frozen import TimmCNN
from usjepa.errors import ConfigError

VARIANTS = {"seg": "linear", "seg-multiscale": "multiscale"}  # protocol -> probe variant
CNN_STRIDE = 16
IGNORE = 255  # target value of pixels outside the scan region


@dataclass(frozen=True)
class SegConfig:
    # chosen per head on validation mean Dice. 1e-3 was still improving at epoch 97 of 100 (val Dice 0.51,
    # effnet-lite0:64, synthus_segment); on linearly separable grids 1e-2 / 1e-1 reach val Dice 0.92 / 0.99 in 40
    lrs: tuple[float, ...] = (1e-2, 1e-1)
    weight_decay: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 100
    patience: int = 10
    dice_weight: float = 0.0  # weight of the soft Dice loss added to cross-entropy (0: cross-entropy only)


def layers(enc: FrozenEncoder, variant: str) -> list[int]:
    """The map layers a variant reads, the first one setting the grid."""
    if variant not in ("linear", "multiscale"):
        raise ConfigError(f"segmentation probe variant {variant!r}: expected linear or multiscale")
    last = -1
    if isinstance(enc, TimmCNN) and getattr(enc.model, "feature_info", None):
        strides = [s["reduction"] for s in enc.model.feature_info]
        last = max(i for i, s in enumerate(strides) if s <= CNN_STRIDE or i == 0) - len(strides)
    return [last] if variant == "linear" else [last - i for i in range(4)]


def patch_grid(enc: FrozenEncoder, x: torch.Tensor, variant: str) -> torch.Tensor:
    """[B, D, h, w] map(s) of a normalised batch, concatenated over the variant's layers on the first one's grid."""
    maps = [enc.patch_map(x, layer) for layer in layers(enc, variant)]
    size = maps[0].shape[-2:]
    return torch.cat(
        [
            m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps
        ],
        1,
    )


def grid_key(enc: FrozenEncoder, task: SegTask, split: str, variant: str) -> dict:
    return {
        "v": FEATURES_VERSION,
        "kind": "seg-grid",
        "encoder": enc.fingerprint,
        "split_hash": task.split_hash,
        "split": split,
        "size": enc.img_size,
        "chans": enc.in_chans,
        "mean": enc.mean,
        "std": enc.std,
        "layers": layers(enc, variant),
    }


def seg_features(
    cache: Cache, enc: FrozenEncoder, task: SegTask, split: str, variant: str, batch_size: int = 32
) -> torch.Tensor:
    """Cached float16 grids [N, D, h, w] of one split."""

    def compute() -> dict[str, torch.Tensor]:
        out = []
        with torch.inference_mode():
            for x, _ in loader(task.splits[split], enc.img_size, batch_size):
                out.append(patch_grid(enc, enc.normalise(x.to(enc.device)), variant).half().cpu())
        return {"x": torch.cat(out)}

    return cache.tensors(grid_key(enc, task, split, variant), compute)["x"]


def targets(task: SegTask, split: str, size: int) -> torch.Tensor:
    """Class-index targets [N, size, size] (uint8), IGNORE outside the scan region, nearest-resized."""
    out = []
    for r in task.splits[split]:
        m = torch.from_numpy(read_class_mask(r.meta["mask"], task.n_classes).copy())
        m[~torch.from_numpy(read_record(r).scan_mask)] = IGNORE
        out.append(F.interpolate(m[None, None].float(), size=(size, size), mode="nearest")[0, 0].to(torch.uint8))
    return torch.stack(out)


@dataclass
class SegProbe:
    weight: torch.Tensor  # [C, D]
    bias: torch.Tensor  # [C]
    mean: torch.Tensor  # [D] train standardisation
    std: torch.Tensor
    best_epoch: int
    val_mean_dice: float
    lr: float = 0.0

    def logits(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """[B, C, size, size] from grids [B, D, h, w]."""
        return _logits(x, self.weight, self.bias, self.mean, self.std, size)

    def predict(self, x: torch.Tensor, size: int, batch_size: int = 64) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [
                    self.logits(x[i : i + batch_size], size).argmax(1).to(torch.uint8)
                    for i in range(0, len(x), batch_size)
                ]
            )


def _logits(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int
) -> torch.Tensor:
    xs = (x.float() - mean[:, None, None]) / std[:, None, None]
    z = torch.einsum("bdhw,cd->bchw", xs, weight) + bias[:, None, None]
    return F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)


def mean_dice(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Mean over images of each image's mean foreground Dice inside the scan region (as segmetrics.summarise)."""
    region = y != IGNORE
    scores = []
    for c in range(1, n_classes):
        a, b = (pred == c) & region, (y == c) & region
        inter, total = (a & b).sum((1, 2)).double(), (a.sum((1, 2)) + b.sum((1, 2))).double()
        scores.append(torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.nan))
    s = torch.stack(scores, 1)
    scored = ~s.isnan()
    per_image = torch.where(scored.any(1), s.nan_to_num(0).sum(1) / scored.sum(1).clamp_min(1), 1.0)
    return float(per_image.mean())


def fit(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    n_classes: int,
    seed: int,
    cfg: SegConfig,
    fraction: float = 1.0,
) -> SegProbe:
    """The head of the learning rate (of ``cfg.lrs``) with the best validation mean Dice (the first on ties)."""
    probes = [_fit_lr(x_train, y_train, x_val, y_val, n_classes, seed, cfg, fraction, lr) for lr in cfg.lrs]
    return max(probes, key=lambda p: p.val_mean_dice)


def _fit_lr(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    n_classes: int,
    seed: int,
    cfg: SegConfig,
    fraction: float,
    lr: float,
) -> SegProbe:
    """One head: seeded init, subset (a seeded fraction of the training images) and batch order."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(x_train), generator=g)[: max(1, round(fraction * len(x_train)))].sort().values
    xt, yt = x_train[keep], y_train[keep].long()
    flat = xt.float().transpose(0, 1).reshape(xt.shape[1], -1)
    mean, std = flat.mean(1), flat.std(1).clamp_min(1e-6)
    w = (torch.randn(n_classes, xt.shape[1], generator=g) * 0.01).requires_grad_()
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=cfg.weight_decay)
    size = y_train.shape[-1]
    best, since = None, 0
    for epoch in range(cfg.max_epochs):
        for idx in torch.randperm(len(xt), generator=g).split(cfg.batch_size):
            z = _logits(xt[idx], w, b, mean, std, size)
            loss = F.cross_entropy(z, yt[idx], ignore_index=IGNORE)
            if cfg.dice_weight:
                loss = loss + cfg.dice_weight * soft_dice_loss(z, yt[idx], n_classes)
            opt.zero_grad()
            loss.backward()
            opt.step()
        current = SegProbe(w.detach(), b.detach(), mean, std, epoch, -1.0)
        score = mean_dice(current.predict(x_val, size), y_val, n_classes)
        if best is None or score > best[0]:
            best, since = (score, epoch, w.detach().clone(), b.detach().clone()), 0
        else:
            since += 1
            if since >= cfg.patience:
                break
    score, epoch, w_best, b_best = best
    return SegProbe(w_best, b_best, mean, std, epoch, score, lr)


def soft_dice_loss(z: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes over the batch, inside the scan region."""
    region = (y != IGNORE).unsqueeze(1).float()
    p = z.softmax(1) * region
    t = F.one_hot(y.clamp_max(n_classes - 1), n_classes).permute(0, 3, 1, 2).float() * region
    inter, total = (p * t).sum((0, 2, 3)), (p + t).sum((0, 2, 3))
    return 1 - (2 * inter[1:] / total[1:].clamp_min(1e-6)).mean()


def score_test(pred: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> dict:
    """segmetrics.summarise of test predictions [N, S, S] against targets (IGNORE = outside the scan region)."""
    region = (y != IGNORE).numpy()
    yn, pn = y.numpy(), pred.numpy()
    per_image = [image_scores(p, np.where(r, t, 0), r, len(class_names)) for p, t, r in zip(pn, yn, region)]
    return summarise(per_image, class_names)
