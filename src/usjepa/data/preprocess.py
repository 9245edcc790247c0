"""The ingest-time pipeline: scan mask, colour overlays, grayscale, crop, percentile rescale, resize-pad.

The scan mask comes from :mod:`usjepa.data.scanmask` (a given mask, DICOM regions, a fitted fan or the
texture hull, in that order of trust); its texture hull is re-exported here for older callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.fft import dctn

from usjepa.data.decode import to_gray
from usjepa.data.sample import Sample
from usjepa.data.scanmask import (
    MASK_WORK_SIDE,
    ScanMask,
    estimate_scan_mask,
    fill_hull,
    find_scan_mask,
    texture,
)
from usjepa.errors import DataError

__all__ = [
    "MASK_WORK_SIDE",
    "PreprocessConfig",
    "colour_pixels",
    "crop_box",
    "estimate_scan_mask",
    "fill_hull",
    "hamming",
    "inpaint",
    "phash",
    "preprocess",
    "rescale_percentiles",
    "resize_pad",
    "sample_scan_mask",
    "texture",
]

COLOUR_CHROMA = 40  # max - min over RGB above this: a coloured pixel (Doppler, markers)
INPAINT_MAX_FRAC = 0.05  # the paper's rule: in-paint coloured overlays under 5 % of the image, flag above


@dataclass
class PreprocessConfig:
    size: int | None = 256  # output side (aspect kept, zero padding); None keeps the cropped size
    percentiles: tuple[float, float] = (2.0, 98.0)
    inpaint_max_frac: float = INPAINT_MAX_FRAC
    crop: bool = True


# ---- scan region -----------------------------------------------------------------------------------


def sample_scan_mask(s: Sample, gray: np.ndarray | None = None) -> ScanMask:
    """The scan mask of a sample, or of a clip when ``gray`` holds its [T,H,W] frames: the sample's own when
    it came with the data (``meta["has_mask"]``), else estimated (DICOM regions from ``meta["us_regions"]``)."""
    if s.meta.get("has_mask", True) and not s.scan_mask.all():
        return ScanMask(s.scan_mask, "given")
    return find_scan_mask(to_gray(s.image) if gray is None else gray, s.meta.get("us_regions", ()))


def crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) bounding box of a non-empty mask; the full frame when empty."""
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(ys):
        return 0, mask.shape[0], 0, mask.shape[1]
    return ys[0], ys[-1] + 1, xs[0], xs[-1] + 1


# ---- colour overlays ---------------------------------------------------------------------------------


def colour_pixels(img: np.ndarray) -> np.ndarray:
    """HxW bool of coloured pixels (chroma above COLOUR_CHROMA), grown by one pixel to take their rims."""
    if img.ndim == 2:
        return np.zeros(img.shape, bool)
    rgb = img[..., :3].astype(np.int16)
    return ndi.binary_dilation(rgb.max(-1) - rgb.min(-1) > COLOUR_CHROMA)


def inpaint(gray: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Fill ``holes`` by normalised Gaussian convolution of the known pixels, at growing scales."""
    if not holes.any():
        return gray
    out = gray.astype(np.float32)
    known = ~holes
    for sigma in (2, 4, 8, 16, 32, 64):
        num = ndi.gaussian_filter(np.where(known, out, 0), sigma)
        den = ndi.gaussian_filter(known.astype(np.float32), sigma)
        fill = ~known & (den > 1e-3)
        out[fill] = num[fill] / den[fill]
        known = known | fill
        if known.all():
            break
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ---- intensities and geometry ----------------------------------------------------------------------


def rescale_percentiles(gray: np.ndarray, mask: np.ndarray, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """Map the lo-th..hi-th percentile of the scan region to 0..255 (clipped); zero outside the region."""
    inside = gray[mask] if mask.any() else gray.ravel()
    p_lo, p_hi = np.percentile(inside, [lo, hi])
    scale = 255.0 / (p_hi - p_lo) if p_hi > p_lo else 0.0
    out = np.clip((gray.astype(np.float32) - p_lo) * scale, 0, 255)
    return np.where(mask, np.round(out), 0).astype(np.uint8)


def resize_pad(img: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit into size x size keeping the aspect ratio, centred, zero (False) padding."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.zeros((size, size) + img.shape[2:], img.dtype)
    out_m = np.zeros((size, size), bool)
    out[top : top + nh, left : left + nw] = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    out_m[top : top + nh, left : left + nw] = np.asarray(Image.fromarray(mask).resize((nw, nh), Image.NEAREST))
    return out, out_m


def phash(gray: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the 8x8 low-frequency DCT of a 32x32 thumbnail around its median."""
    thumb = np.asarray(Image.fromarray(gray).resize((32, 32), Image.BILINEAR), np.float32)
    low = dctn(thumb, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# ---- the pipeline ------------------------------------------------------------------------------------


def preprocess(
    s: Sample, cfg: PreprocessConfig = PreprocessConfig(), scan_mask: np.ndarray | ScanMask | None = None
) -> Sample:
    """Grayscale, scan-masked, overlay-cleaned, cropped, rescaled and resized copy of ``s``.

    The scan mask is, in order: ``scan_mask`` (e.g. fitted once for a cine; a bare array counts as given),
    or :func:`sample_scan_mask`; its source goes to ``mask_source`` and any fitted shapes to ``meta["fan"]``.
    ``meta`` gains ``colour_frac``, ``inpainted`` and ``flagged`` ("colour" when overlays cover >=
    ``inpaint_max_frac`` of the image, else "").
    A blank frame (no signal inside the scan region) is a DataError naming the file and frame.
    """
    colour = colour_pixels(s.image)
    gray = to_gray(s.image)
    found = sample_scan_mask(s, gray) if scan_mask is None else scan_mask
    if not isinstance(found, ScanMask):
        found = ScanMask(found, "given")
    scan_mask = found.mask
    inside = gray[scan_mask]
    if inside.size == 0 or inside.min() == inside.max():
        where = s.meta.get("path", "?") + (f" frame {s.meta['frame']}" if s.meta.get("frame", -1) >= 0 else "")
        what = f"every pixel is {inside.min()}" if inside.size else "the scan mask is empty"
        raise DataError(f"{where}: blank frame ({what}); expected speckle inside the scan region")
    frac = float(colour.mean())
    small = 0 < frac < cfg.inpaint_max_frac
    if small:
        gray = inpaint(gray, colour)
    if cfg.crop:
        top, bottom, left, right = crop_box(scan_mask)
        gray, scan_mask = gray[top:bottom, left:right], scan_mask[top:bottom, left:right]
    gray = rescale_percentiles(gray, scan_mask, *cfg.percentiles)
    if cfg.size:
        gray, scan_mask = resize_pad(gray, scan_mask, cfg.size)
    meta = s.meta | {
        "colour_frac": round(frac, 5),
        "inpainted": small,
        "flagged": "" if frac < cfg.inpaint_max_frac else "colour",
        "has_mask": True,
        "preprocessed": True,
        "fan": found.kinds,
    }
    meta.pop("us_regions", None)
    return Sample(gray, scan_mask, s.label, meta, mask_source=found.source)
