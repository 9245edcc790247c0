"""The paper's test-time corruptions (and the primitives the augmentations reuse).

All take float images in [0, 1] shaped [..., H, W] and a bool scan mask broadcastable to them.
Severity eps = 0 is the identity.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

from usjepa.errors import ConfigError

CONTRAST_ALPHA = {0: 1.0, 1: 0.7, 2: 0.5, 3: 0.3}


def blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with kernel 2*floor(2*sigma)+1 (the paper's rule)."""
    if sigma <= 0:
        return img
    k = 2 * math.floor(2 * sigma) + 1
    return TF.gaussian_blur(img, [k, k], [sigma, sigma])


def contrast(img: torch.Tensor, scan_mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """Shrink intensities toward the scan-region median: m + alpha * (x - m), outside the scan untouched."""
    if alpha == 1.0:
        return img
    m = scan_mask.expand_as(img)
    inside = img[m]
    med = inside.median() if inside.numel() else img.new_tensor(0.0)
    return torch.where(m, med + alpha * (img - med), img).clamp(0, 1)


def speckle(
    img: torch.Tensor,
    scan_mask: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
    corr_sigma: float = 1.0,
) -> torch.Tensor:
    """Multiplicative correlated speckle: x * (1 + sigma * n), n smoothed Gaussian noise with unit std."""
    if sigma <= 0:
        return img
    noise = torch.randn(img.shape, generator=generator, dtype=img.dtype, device=img.device)
    noise = blur(noise, corr_sigma)
    noise = noise / noise.std().clamp_min(1e-6)
    out = (img * (1 + sigma * noise)).clamp(0, 1)
    return torch.where(scan_mask.expand_as(img), out, img)


def corrupt(img: torch.Tensor, scan_mask: torch.Tensor, kind: str, eps: int, generator: torch.Generator | None = None):
    """Apply corruption ``kind`` ("blur", "contrast", "speckle") at severity ``eps`` in {0, 1, 2, 3}."""
    if kind not in ("blur", "contrast", "speckle"):
        raise ConfigError(f"corruptions: unknown corruption '{kind}' (expected blur, contrast or speckle)")
    if eps not in CONTRAST_ALPHA:
        raise ConfigError(f"severities: {eps!r} is not a severity (expected one of {sorted(CONTRAST_ALPHA)})")
    if eps == 0:
        return img
    if kind == "blur":
        return blur(img, float(eps))
    if kind == "contrast":
        return contrast(img, scan_mask, CONTRAST_ALPHA[eps])
    return speckle(img, scan_mask, 0.35 * eps, generator)
