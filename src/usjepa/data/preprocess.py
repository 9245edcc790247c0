"""The ingest-time pipeline: scan mask, colour overlays, grayscale, crop, percentile rescale, resize-pad.

Scan-region estimation works on what tells B-mode from burnt-in graphics: speckle is textured
everywhere inside the scan region, while text, calipers, colour bars and banners are flat strokes on a
flat or black background. Thin strokes vanish under a grey opening, flat areas have no local variance;
what stays dense after both is the imaging region, one convex hull per large component (so two-pane
layouts keep both panes and dark cysts or chambers inside the fan are kept).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.fft import dctn
from scipy.spatial import ConvexHull, QhullError

from usjepa.data.decode import to_gray
from usjepa.data.sample import Sample
from usjepa.errors import DataError

MASK_WORK_SIDE = 640  # scan masks are estimated at this resolution, then upsampled
COLOUR_CHROMA = 40  # max - min over RGB above this: a coloured pixel (Doppler, markers)
INPAINT_MAX_FRAC = 0.05  # the paper's rule: in-paint coloured overlays under 5 % of the image, flag above


@dataclass
class PreprocessConfig:
    size: int | None = 256  # output side (aspect kept, zero padding); None keeps the cropped size
    percentiles: tuple[float, float] = (2.0, 98.0)
    inpaint_max_frac: float = INPAINT_MAX_FRAC
    crop: bool = True


# ---- scan region -----------------------------------------------------------------------------------

def texture(gray: np.ndarray) -> np.ndarray:
    """Pixels with speckle-like texture: local std > 0.6 in 5x5 and still bright after a 5x5 grey opening."""
    g = gray.astype(np.float32)
    mean = ndi.uniform_filter(g, 5)
    std = np.sqrt(np.clip(ndi.uniform_filter(g * g, 5) - mean * mean, 0, None))
    return (std > 0.6) & (ndi.grey_opening(g, size=(5, 5)) > 0.5)


def fill_hull(component: np.ndarray) -> np.ndarray:
    """The filled convex hull of a bool component (the component itself if degenerate)."""
    ys, xs = np.nonzero(component)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    try:
        eq = ConvexHull(pts).equations  # rows (a, b, c): a*x + b*y + c <= 0 inside
    except QhullError:
        return component
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    gy, gx = np.mgrid[y0:y1, x0:x1]
    inside = np.all(gx[..., None] * eq[:, 0] + gy[..., None] * eq[:, 1] + eq[:, 2] <= 0.5, axis=-1)
    out = np.zeros_like(component)
    out[y0:y1, x0:x1] = inside
    return out


def estimate_scan_mask(gray: np.ndarray, min_frac: float = 0.02, rel_frac: float = 0.2) -> np.ndarray:
    """HxW bool scan region of a grayscale frame, or of a [T,H,W] cine (texture pooled over frames).

    Components smaller than ``rel_frac`` of the largest or ``min_frac`` of the image are dropped
    (colour bars, logos). All True when nothing qualifies, so a frame without any is never lost.
    """
    frames = gray if gray.ndim == 3 else gray[None]
    h, w = frames.shape[1:]
    f = min(1.0, MASK_WORK_SIDE / max(h, w))
    sh, sw = max(1, round(h * f)), max(1, round(w * f))
    small = [np.asarray(Image.fromarray(fr).resize((sw, sh), Image.NEAREST)) if f < 1 else fr for fr in frames]
    tex = np.any([texture(s) for s in small], axis=0)
    r = max(2, round(0.012 * max(sh, sw)))
    dense = ndi.uniform_filter(tex.astype(np.float32), 2 * r + 1) > 0.5  # text is sparse, speckle dense
    dense = ndi.binary_opening(dense, structure=np.ones((2 * r + 1, 2 * r + 1), bool))
    labels, n = ndi.label(dense)
    if n == 0:
        return np.ones((h, w), bool)
    areas = ndi.sum_labels(dense, labels, np.arange(1, n + 1))
    keep = [k + 1 for k, a in enumerate(areas) if a >= rel_frac * areas.max() and a >= min_frac * sh * sw]
    if not keep:
        return np.ones((h, w), bool)
    mask = np.zeros((sh, sw), bool)
    for k in keep:
        mask |= fill_hull(labels == k)
    return mask if f == 1 else np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))


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
    out[top:top + nh, left:left + nw] = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    out_m[top:top + nh, left:left + nw] = np.asarray(Image.fromarray(mask).resize((nw, nh), Image.NEAREST))
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

def preprocess(s: Sample, cfg: PreprocessConfig = PreprocessConfig(), scan_mask: np.ndarray | None = None) -> Sample:
    """Grayscale, scan-masked, overlay-cleaned, cropped, rescaled and resized copy of ``s``.

    The scan mask is, in order: ``scan_mask`` (e.g. pooled over a cine), the sample's own when it came
    from a file (``meta["has_mask"]``), or estimated here. ``meta`` gains ``colour_frac``, ``inpainted``
    and ``flagged`` ("colour" when overlays cover >= ``inpaint_max_frac`` of the image, else "").
    A blank frame (no signal inside the scan region) is a DataError naming the file and frame.
    """
    colour = colour_pixels(s.image)
    gray = to_gray(s.image)
    if scan_mask is None:
        scan_mask = s.scan_mask if s.meta.get("has_mask", True) and not s.scan_mask.all() else estimate_scan_mask(gray)
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
        t, b, l, r = crop_box(scan_mask)
        gray, scan_mask = gray[t:b, l:r], scan_mask[t:b, l:r]
    gray = rescale_percentiles(gray, scan_mask, *cfg.percentiles)
    if cfg.size:
        gray, scan_mask = resize_pad(gray, scan_mask, cfg.size)
    meta = s.meta | {"colour_frac": round(frac, 5), "inpainted": small, "flagged": "" if frac < cfg.inpaint_max_frac else "colour",
                     "has_mask": True, "preprocessed": True}
    return Sample(gray, scan_mask, s.label, meta)
