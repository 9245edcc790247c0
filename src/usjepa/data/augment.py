"""The paper's augmentations, applied to an image and its scan mask together.

Geometry (RandomResizedCrop, flips) uses torchvision's functional kernels with parameters drawn from
the item's own generator, so image and mask move together; the photometric ones (blur, correlated
speckle, contrast) are the corruption primitives of :mod:`usjepa.data.corruptions`. Every random draw
comes from the item's seed, so an item augments identically whatever worker runs it.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

from usjepa.config import AugmentConfig
from usjepa.data import corruptions

CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _chance(g: torch.Generator, p: float) -> bool:
    return p > 0 and torch.rand((), generator=g).item() < p


def crop_box(g: torch.Generator, h: int, w: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) as RandomResizedCrop draws them: area fraction in ``scale``, log-uniform
    aspect in CROP_RATIO, 10 tries, then the whole image."""
    log_r = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        area = h * w * _uniform(g, *scale)
        ratio = math.exp(_uniform(g, *log_r))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            return top, left, ch, cw
    return 0, 0, h, w


def augment(
    img: torch.Tensor, mask: torch.Tensor, cfg: AugmentConfig, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """img [C,H,W] float in [0,1], mask [H,W] bool -> both at size x size, augmented from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    box = crop_box(g, img.shape[-2], img.shape[-1], cfg.crop_scale)
    img = TF.resized_crop(img, *box, [size, size], antialias=True)
    mask = TF.resized_crop(mask[None], *box, [size, size], interpolation=TF.InterpolationMode.NEAREST)[0]
    if _chance(g, cfg.hflip):
        img, mask = img.flip(-1), mask.flip(-1)
    if _chance(g, cfg.vflip):
        img, mask = img.flip(-2), mask.flip(-2)
    if _chance(g, cfg.blur_p):
        img = corruptions.blur(img, _uniform(g, *cfg.blur_sigma))
    if _chance(g, cfg.speckle_p):
        img = corruptions.speckle(img, mask, _uniform(g, *cfg.speckle_sigma), generator=g)
    if _chance(g, cfg.contrast_p):
        img = corruptions.contrast(img, mask, _uniform(g, *cfg.contrast_range))
    return img.clamp(0, 1), mask
