"""The scan region of a frame or a clip, from the most trusted source that has one.

Sources, in order of trust (the name each leaves in ``Sample.mask_source``):
``given`` a mask that came with the data (e.g. UltraBench ``masks/scan``); ``dicom`` the DICOM ultrasound
regions' 2-D tissue panes, each intersected with the fan fitted inside it (bars drawn in a pane cut out);
``fit`` a fan (:mod:`usjepa.data.fan`) fitted to each large component of evidence; ``hull`` the convex hull
of each component, when a fan does not hold it; ``frame`` the whole frame, when there is no evidence.

Evidence is what tells B-mode from burnt-in graphics. Speckle is textured everywhere, while text,
calipers and banners are flat strokes: thin strokes vanish under a grey opening and flat areas have no
local variance, so what stays dense after both seeds the imaging region. An anechoic fan (fluid, a dark
deep field) is flat too, but it is a plateau just above the background, wide enough to survive the
opening and joined to the speckle; such plateaus are added to the seed they touch. A clip pools its
evidence over frames, so the fit is made once per clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from usjepa.data.fan import Fan, fit_fan
from usjepa.data.usregions import Region, panes

MASK_WORK_SIDE = 640  # scan masks are estimated at this resolution, then drawn at full size
PLATEAU_MAX = 24  # an anechoic plateau is at most this many grey levels above the background
NOISE_FACTOR = 3.0  # texture is local variation above this many times the background's
MINOR_FRAC = 0.002  # smaller speckle components, down to this fraction of the image, may join the main fan ...
MAX_MINOR = 4  # ... the largest few of them
JOINT_SLACK = 1.5  # one fan for several components if its residual is within this factor of theirs
MIN_COVER = 0.9  # a fitted fan must hold this fraction of its evidence ...
MAX_GROWTH = 2.5  # ... and be at most this many times the area of the evidence's convex hull


@dataclass
class ScanMask:
    mask: np.ndarray  # HxW bool
    source: str  # given | dicom | fit | hull | frame
    fans: list[Fan] = field(default_factory=list)  # fitted fans, in full-size pixels

    @property
    def kinds(self) -> str:
        """The fitted shapes, e.g. "convex" or "linear+linear"; "" when none was fitted."""
        return "+".join(f.kind for f in self.fans)


def local_std(g: np.ndarray) -> np.ndarray:
    mean = ndi.uniform_filter(g, 5)
    return np.sqrt(np.clip(ndi.uniform_filter(g * g, 5) - mean * mean, 0, None))


def texture(gray: np.ndarray) -> np.ndarray:
    """Pixels with speckle-like texture: still bright after a 5x5 grey opening, and a local std (5x5) above
    0.6 and above NOISE_FACTOR times the median on the frame's border (a grey, noisy background)."""
    g = gray.astype(np.float32)
    std = local_std(g)
    noise = float(np.median(border(std[None], 2))) if min(g.shape) > 8 else 0.0
    return (std > max(0.6, NOISE_FACTOR * noise)) & (ndi.grey_opening(g, size=(5, 5)) > 0.5)


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


def work_frames(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """[T, h, w] frames at the work resolution (nearest) and the factor from full size to it."""
    frames = gray if gray.ndim == 3 else gray[None]
    h, w = frames.shape[1:]
    f = min(1.0, MASK_WORK_SIDE / max(h, w))
    if f == 1:
        return frames, f
    sh, sw = max(1, round(h * f)), max(1, round(w * f))
    return np.stack([np.asarray(Image.fromarray(fr).resize((sw, sh), Image.NEAREST)) for fr in frames]), f


def speckle_seed(small: np.ndarray, min_frac: float = 0.02, rel_frac: float = 0.2) -> np.ndarray:
    """Components of dense texture (pooled over frames) at least ``rel_frac`` of the largest and ``min_frac``
    of the image, as a label image (0: none)."""
    tex = np.any([texture(s) for s in small], axis=0)
    r = max(2, round(0.012 * max(tex.shape)))
    dense = ndi.uniform_filter(tex.astype(np.float32), 2 * r + 1) > 0.5  # text is sparse, speckle dense
    dense = ndi.binary_opening(dense, structure=np.ones((2 * r + 1, 2 * r + 1), bool))
    labels, n = ndi.label(dense)
    if n == 0:
        return labels
    areas = ndi.sum_labels(dense, labels, np.arange(1, n + 1))
    keep = [k + 1 for k, a in enumerate(areas) if a >= rel_frac * areas.max() and a >= min_frac * dense.size]
    return np.where(np.isin(labels, keep), labels, 0)


def border(a: np.ndarray, inset: int = 0) -> np.ndarray:
    """The values on the ring ``inset`` pixels inside the edge of a [T, h, w] stack."""
    i = inset
    return np.concatenate(
        [
            a[:, i].ravel(),
            a[:, -1 - i].ravel(),
            a[:, :, i].ravel(),
            a[:, :, -1 - i].ravel(),
        ]
    )


def background(frame: np.ndarray) -> int:
    """The background level: the commonest value on the border at or below its median (banners are brighter)."""
    ring = border(frame[None])
    dark = ring[ring <= np.median(ring)].astype(np.int64)
    return int(np.bincount(dark).argmax())


def plateaus(small: np.ndarray) -> np.ndarray:
    """Dark plateaus: wider than a stroke, above each frame's background (read on its border) by at most
    PLATEAU_MAX grey levels."""
    out = np.zeros(small.shape[1:], bool)
    for s in small:
        bg = background(s)
        opened = ndi.grey_opening(s, size=(5, 5)).astype(np.float32)
        out |= (opened > bg) & (opened <= bg + PLATEAU_MAX)
    return out


def grow(plateau: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Evidence: the seed components with the plateaus they touch."""
    labels, _ = ndi.label(plateau | (seed > 0))
    touched = np.unique(labels[seed > 0])
    return np.isin(labels, touched[touched > 0])


def join_minor(small: np.ndarray, plateau: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """``ev`` (one component) with the small speckle components that one fan outlines together with it about
    as well as it alone (a near field cut off by an anechoic band); others (logos, bars) stay out."""
    if ndi.label(ev)[1] != 1 or (base := fitted(ev)) is None:
        return ev
    minor = speckle_seed(small, MINOR_FRAC, 0.0)
    ids = [k for k in np.unique(minor[minor > 0]) if not (ev & (minor == k)).any()]
    for k in sorted(ids, key=lambda k: -(minor == k).sum())[:MAX_MINOR]:
        cand = ev | grow(plateau, minor == k)
        fan = fitted(cand)
        if fan is not None and fan.residual <= JOINT_SLACK * base.residual + 1.0:
            ev, base = cand, fan
    return ev


def fitted(ev: np.ndarray) -> Fan | None:
    """The fan fitted to one component of evidence, or None where it does not hold the evidence."""
    fan = fit_fan(ev)
    if fan is None:
        return None
    m = fan.mask(ev.shape)
    if (m & ev).sum() < MIN_COVER * ev.sum() or m.sum() > MAX_GROWTH * fill_hull(ev).sum():
        return None
    return fan


def _resize(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return mask if mask.shape == shape else np.asarray(Image.fromarray(mask).resize(shape[::-1], Image.NEAREST))


def hull_mask(small: np.ndarray, seed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One convex hull per seed component, at full size; all True when there is none."""
    if not seed.any():
        return np.ones(shape, bool)
    mask = np.zeros(seed.shape, bool)
    for k in np.unique(seed[seed > 0]):
        mask |= fill_hull(seed == k)
    return _resize(mask, shape)


def estimate_scan_mask(gray: np.ndarray, min_frac: float = 0.02, rel_frac: float = 0.2) -> np.ndarray:
    """HxW bool texture hull of a grayscale frame, or of a [T,H,W] cine (texture pooled over frames).

    Components smaller than ``rel_frac`` of the largest or ``min_frac`` of the image are dropped
    (colour bars, logos). All True when nothing qualifies, so a frame without any is never lost.
    """
    small, _ = work_frames(gray)
    return hull_mask(small, speckle_seed(small, min_frac, rel_frac), gray.shape[-2:])


def fit_components(ev: np.ndarray, f: float) -> list[Fan] | None:
    """Fans for the components of ``ev`` (work resolution), in full-size pixels; None if one does not hold.

    Components that one fan outlines as well as their own fans do (a near field and deep tissue apart
    across an anechoic band, within one sector) get that one fan; panes side by side keep their own.
    """
    labels, n = ndi.label(ev)
    fans = [fitted(labels == k) for k in range(1, n + 1)]
    if n > 1:
        joint = fitted(ev)
        own = max((fan.residual for fan in fans if fan is not None), default=0.0)
        if joint is not None and joint.residual <= JOINT_SLACK * own + 1.0:
            fans = [joint]
    if any(fan is None for fan in fans):
        return None
    return [fan.scaled(1 / f) for fan in fans]


def _union(fans: list[Fan], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, bool)
    for fan in fans:
        out |= fan.mask(shape)
    return out


def dicom_mask(ev: np.ndarray, f: float, regions: tuple[Region, ...], shape: tuple[int, int]) -> ScanMask | None:
    """The 2-D tissue panes, each cut to the fan fitted to its evidence (the pane alone if none holds)."""
    boxes = panes(regions, shape)
    if not boxes or any(r.box[2] > shape[1] or r.box[3] > shape[0] for r in regions):
        return None  # none, or drawn for another frame size (a resampled file): not this frame's panes
    mask, fans = np.zeros(shape, bool), []
    for x0, y0, x1, y1 in boxes:
        pane = np.zeros(shape, bool)
        pane[y0 : y1 + 1, x0 : x1 + 1] = True
        inside = ev & _resize(pane, ev.shape)
        fan = fitted(inside) if inside.any() else None
        if fan is not None:
            fans.append(fan.scaled(1 / f))
            pane &= fans[-1].mask(shape)
        mask |= pane
    for r in regions:
        if r.is_bar:
            x0, y0, x1, y1 = r.box
            mask[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = False
    return ScanMask(mask, "dicom", fans)


def find_scan_mask(gray: np.ndarray, regions: tuple[Region, ...] = ()) -> ScanMask:
    """The scan region of a grayscale frame or [T,H,W] clip: DICOM panes, else a fitted fan, else the hull."""
    shape = gray.shape[-2:]
    small, f = work_frames(gray)
    seed = speckle_seed(small)
    flat = plateaus(small)
    ev = join_minor(small, flat, grow(flat, seed))
    if regions:
        found = dicom_mask(ev, f, regions, shape)
        if found is not None:
            return found
    if not seed.any():
        return ScanMask(np.ones(shape, bool), "frame")
    fans = fit_components(ev, f)
    if fans:
        return ScanMask(_union(fans, shape), "fit", fans)
    return ScanMask(hull_mask(small, seed, shape), "hull")
