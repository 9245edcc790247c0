"""The paper's augmentations, applied to an image and its scan mask together.

Geometry (RandomResizedCrop, flips) comes from ``torchvision.transforms.v2``, which moves an ``Image``
and its ``Mask`` with the same parameters; the photometric ones (blur, correlated speckle, contrast)
are the corruption primitives of :mod:`usjepa.data.corruptions`. Every random draw comes from the
item's own seed, so an item augments identically whatever worker runs it.
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from usjepa.config import AugmentConfig
from usjepa.data import corruptions


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _chance(g: torch.Generator, p: float) -> bool:
    return p > 0 and torch.rand((), generator=g).item() < p


def geometry(cfg: AugmentConfig, size: int) -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(size, scale=cfg.crop_scale, antialias=True),
                       v2.RandomHorizontalFlip(cfg.hflip), v2.RandomVerticalFlip(cfg.vflip)])


def augment(img: torch.Tensor, mask: torch.Tensor, cfg: AugmentConfig, size: int, seed: int,
            geom: v2.Compose | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """img [C,H,W] float in [0,1], mask [H,W] bool -> both at size x size, augmented from ``seed``.

    ``geom`` is :func:`geometry` (pass it in to build it once per worker).
    """
    geom = geom or geometry(cfg, size)
    with torch.random.fork_rng(devices=[]):  # v2 draws from the global generator: seed it locally
        torch.manual_seed(seed)
        img, m = geom(tv_tensors.Image(img), tv_tensors.Mask(mask[None]))
    img, mask = img.as_subclass(torch.Tensor), m.as_subclass(torch.Tensor)[0].bool()
    g = torch.Generator().manual_seed(seed + 1)
    if _chance(g, cfg.blur_p):
        img = corruptions.blur(img, _uniform(g, *cfg.blur_sigma))
    if _chance(g, cfg.speckle_p):
        img = corruptions.speckle(img, mask, _uniform(g, *cfg.speckle_sigma), generator=g)
    if _chance(g, cfg.contrast_p):
        img = corruptions.contrast(img, mask, _uniform(g, *cfg.contrast_range))
    return img.clamp(0, 1), mask
