"""Phantoms: the canvas that scenes paint on, shape primitives, anatomy presets, lesions and tissue textures.

Anatomy is drawn in depth-normalised Cartesian coordinates (u = z / depth, v = x / depth), zoomed about the
skin's centre and shifted and mirrored laterally per image, so organ size and position are nuisances.
Echogenicity is linear backscatter power relative to soft tissue (1.0); attenuation is in dB/(cm·MHz).
A preset draws its per-patient choices from one generator and paints each image with another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.random import Generator

from usjepa.synthus.physics import BeamGrid

ANECHOIC = 0.003  # fluid: clutter floor ≈ −25 dB


class Canvas:
    """Echogenicity, attenuation and class-index label maps over a beam grid, painted in (u, v) coordinates.

    ``classes`` names the regions that ``mark`` writes into the label map (index = position + 1); others are
    ignored, so one preset serves tasks with and without masks.
    """

    def __init__(
        self,
        grid: BeamGrid,
        depth: float,
        shift: float = 0.0,
        zoom: float = 1.0,
        flip: bool = False,
        classes: tuple[str, ...] = (),
    ) -> None:
        self.u = grid.z / np.float32(depth * zoom)
        self.v = (grid.x / np.float32(depth) - np.float32(shift)) / np.float32(zoom) * np.float32(-1 if flip else 1)
        self.line = np.broadcast_to(grid.line.astype(np.float32), self.u.shape)
        self.echo = np.ones(self.u.shape, np.float32)
        self.atten = np.full(self.u.shape, 0.5, np.float32)
        self.classes = classes
        self.label: np.ndarray | None = None

    def paint(self, w: np.ndarray, echo: float | np.ndarray, atten: float | None = None) -> None:
        """Blend echo (and attenuation) in with weight w ∈ [0, 1]."""
        self.echo += w * (echo - self.echo)
        if atten is not None:
            self.atten += w * (atten - self.atten)

    def mark(self, region: str, w: np.ndarray) -> None:
        """Label the samples where w > 0.5 as ``region``, if this canvas records that region."""
        if region in self.classes:
            if self.label is None:
                self.label = np.zeros(self.u.shape, np.uint8)
            self.label[w > 0.5] = self.classes.index(region) + 1

    def texture(self, rng: Generator, cells: tuple[int, int], contrast: float) -> np.ndarray:
        """Smooth log-normal tissue structure (mean ≈ 1): coarse noise upsampled along beams and lines."""
        return np.exp(contrast * self.noise(rng, cells) - contrast**2 / 2)

    def noise(self, rng: Generator, cells: tuple[int, int]) -> np.ndarray:
        """A smooth standard-normal-ish field: cells[0] × cells[1] nodes interpolated onto the grid."""
        n_ax, n_lat = self.u.shape
        coarse = rng.standard_normal(cells).astype(np.float32)
        return _interp_matrix(n_ax, cells[0]) @ coarse @ _interp_matrix(n_lat, cells[1]).T


@lru_cache(maxsize=32)
def _interp_matrix(n: int, m: int) -> np.ndarray:
    """(n, m) linear interpolation from m coarse nodes to n samples."""
    pos = np.linspace(0, m - 1, n)
    lo = np.minimum(pos.astype(int), m - 2) if m > 1 else np.zeros(n, int)
    t = pos - lo
    w = np.zeros((n, m), np.float32)
    w[np.arange(n), lo] = 1 - t
    if m > 1:
        w[np.arange(n), lo + 1] += t
    return w


# ---- shapes: soft weights in [0, 1] over the canvas coordinates ----


def ellipse(
    cv: Canvas,
    cu: float,
    cvv: float,
    ru: float,
    rv: float,
    angle: float = 0.0,
    edge: float = 0.01,
    margin: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Inside of an ellipse centred (cu, cvv) with radii ru (depth) and rv (lateral); margin = (harmonic
    amplitudes, phases) makes the border irregular: radius × (1 + Σ_k a_k cos((k + 2)φ + φ_k))."""
    du, dv = cv.u - cu, cv.v - cvv
    if angle:
        ca, sa = math.cos(angle), math.sin(angle)
        du, dv = ca * du - sa * dv, sa * du + ca * dv
    rho = np.sqrt((du / ru) ** 2 + (dv / rv) ** 2)
    if margin is not None:  # evaluated only where the border can reach: Σ c_k e^{ikφ} by Horner
        amps, phases = margin
        near = np.flatnonzero(rho.ravel() < 1 + float(np.sum(amps)) + 2 * edge / min(ru, rv))
        e = ((dv / rv).ravel()[near] + 1j * (du / ru).ravel()[near]) / np.maximum(rho.ravel()[near], 1e-6)
        poly = np.zeros_like(e)
        for c in (amps * np.exp(1j * phases))[::-1]:
            poly = (poly + c) * e
        rho.ravel()[near] /= np.maximum(1 + (poly * e).real, 0.25)
    return np.clip((1 - rho) * (min(ru, rv) / edge) + 0.5, 0, 1)


def ring(cv: Canvas, cu: float, cvv: float, ru: float, rv: float, width: float, angle: float = 0.0) -> np.ndarray:
    """A wall of the given width just outside an ellipse."""
    return np.clip(ellipse(cv, cu, cvv, ru + width, rv + width, angle) - ellipse(cv, cu, cvv, ru, rv, angle), 0, 1)


def layer(u: np.ndarray, top: float | np.ndarray, bottom: float | np.ndarray, edge: float = 0.006) -> np.ndarray:
    """Depth band between two (possibly curved) boundaries."""
    return np.clip(np.minimum(u - top, bottom - u) / edge + 0.5, 0, 1)


def line(dist: np.ndarray, width: float) -> np.ndarray:
    """A thin bright line: triangle profile of half-width `width` around dist = 0."""
    return np.clip(1 - np.abs(dist) / width, 0, 1)


def scatter_points(cv: Canvas, rng: Generator, where: np.ndarray, n: int, echo: float, atten: float = 0.5) -> None:
    """Sparse bright reflectors (calcifications, bronchograms) on n random samples where `where` > 0.5."""
    idx = np.flatnonzero(where.ravel() > 0.5)
    if idx.size:
        pick = rng.choice(idx, size=min(n, idx.size), replace=False)
        cv.echo.ravel()[pick] = echo
        cv.atten.ravel()[pick] = atten


def irregular(rng: Generator, n: int, amp: float) -> tuple[np.ndarray, np.ndarray]:
    """Random border harmonics k = 2 .. n+1 with amplitudes decaying from amp."""
    return amp * rng.uniform(0.3, 1, n) / np.sqrt(np.arange(1, n + 1)), rng.uniform(0, 2 * math.pi, n)


# ---- tissue textures at matched mean log echogenicity ----

SPARSE_SIGMA, SPARSE_SHIFT = 1.8, 0.55  # per-sample log-power spread of resolved strong scatterers, and the
# offset that keeps their mean log brightness after the PSF blends neighbours (measured at 64 and 224 px)
CLUMP_SIGMA, CLUMP_CELLS = 1.5, 5  # log-power spread of clumps, and their spacing in beam samples


def scatterers(cv: Canvas, rng: Generator, kind: str) -> np.ndarray:
    """Per-sample backscatter power of a tissue whose scatterers differ but whose mean log power is that of the
    surrounding tissue (0 dB), so it shows at the same mean brightness on the log-compressed display:

    - 'fine': many sub-resolution scatterers per cell (fully developed speckle);
    - 'sparse': a few strong scatterers of independent, widely spread strength (resolved bright points);
    - 'clustered': scatterers gathered in clumps a few resolution cells wide, sparser between them.
    """
    if kind == "fine":
        return np.ones(cv.u.shape, np.float32)
    if kind == "sparse":
        return np.exp(SPARSE_SIGMA * rng.standard_normal(cv.u.shape, dtype=np.float32) - SPARSE_SHIFT)
    n_ax, n_lat = cv.u.shape
    field = cv.noise(rng, (max(n_ax // CLUMP_CELLS, 2), max(n_lat // CLUMP_CELLS, 2)))
    return np.exp(CLUMP_SIGMA * field / max(float(field.std()), 1e-3))


U_RANGE = (0.25, 0.8)  # the depths a Placement's centre is drawn from


@dataclass(frozen=True)
class Placement:
    """Where a focal finding or an organ sits (depth-normalised centre, u drawn uniformly from U_RANGE) and how
    large a finding is (mean radius): a nuisance. With a view's `zoom`, u is the depth in the image (the canvas
    depth is u / zoom) and v is already on the canvas."""

    u: float
    v: float
    radius: float
    zoom: float = 1.0

    def scale(self, lo: float, hi: float) -> float:
        """The centre depth mapped linearly from U_RANGE onto [lo, hi]: for a size that follows the placement."""
        return lo + (hi - lo) * (self.u - U_RANGE[0]) / (U_RANGE[1] - U_RANGE[0])

    def depth(self, lo: float, hi: float) -> float:
        """The canvas depth that shows at that mapped image depth, for anatomy that fits only there."""
        return self.scale(lo, hi) / self.zoom


# ---- anatomy: a preset draws per-patient choices and returns how to paint each image ----

Painter = Callable[[Canvas, Generator], None]


@dataclass(frozen=True)
class Anatomy:
    organ: str
    paint: Painter


def overlay(base: Anatomy, *parts: Painter | None) -> Anatomy:
    """`base` with more painters applied after it, in order; None stands for a part this patient lacks."""

    def paint(cv: Canvas, ir: Generator) -> None:
        base.paint(cv, ir)
        for part in parts:
            if part is not None:
                part(cv, ir)

    return Anatomy(base.organ, paint)


def body_wall(pr: Generator, depth_cm: float, fat_cm: tuple[float, float] = (0.3, 1.5)) -> tuple[Painter, float]:
    """Skin line, subcutaneous fat with septa, and a striated muscle layer; returns the painter and its bottom.
    Their echo levels vary between patients (×0.5 to ×2), so the wall's brightness is no reference level."""
    fat, muscle = pr.uniform(*fat_cm) / depth_cm, pr.uniform(0.4, 1.0) / depth_cm
    skin = 0.15 / depth_cm
    fat_echo, muscle_echo = 0.35 * 2 ** pr.uniform(-1, 1), 0.5 * 2 ** pr.uniform(-1, 1)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, -1, skin), 3.0)
        cv.paint(layer(cv.u, skin, skin + fat), fat_echo * cv.texture(ir, (12, 5), 0.8))
        cv.paint(layer(cv.u, skin + fat, skin + fat + muscle), muscle_echo * cv.texture(ir, (40, 3), 0.9))
        cv.paint(line(cv.u - (skin + fat + muscle), 0.006), 3.0)

    return paint, skin + fat + muscle


def vessels(pr: Generator, n: int, region: tuple[float, float], bright_walls: float) -> Painter:
    """Tubular vessels cut obliquely: anechoic lumens, some with echogenic (portal) walls."""
    spec = [
        (
            pr.uniform(*region),
            pr.uniform(-0.35, 0.35),
            pr.uniform(0.012, 0.03),
            pr.uniform(0.03, 0.09),
            pr.uniform(-1, 1),
            pr.random() < 0.5,
        )
        for _ in range(n)
    ]

    def paint(cv: Canvas, ir: Generator) -> None:
        for cu, cvv, ru, rv, ang, portal in spec:
            if portal:
                cv.paint(ring(cv, cu, cvv, ru, rv, 0.008, ang), bright_walls)
            cv.paint(ellipse(cv, cu, cvv, ru, rv, ang, 0.005), ANECHOIC, 0.05)

    return paint


def liver(pr: Generator, depth_cm: float, at: Placement | None = None, fatty: float = 0.0) -> Anatomy:
    """Liver parenchyma with vessels and the diaphragm (at a depth set by `at`, or by the patient); `fatty`
    ∈ [0, 1] brightens it and raises attenuation."""
    wall, _ = body_wall(pr, depth_cm)
    echo, att = 1.0 + 2.5 * fatty, 0.5 + 0.7 * fatty
    dia, curve = pr.uniform(0.78, 0.92), pr.uniform(0.1, 0.4)
    dia = at.depth(0.45, 0.85) if at is not None else dia
    vs = vessels(pr, pr.integers(2, 6), (0.25, max(dia - 0.1, 0.3)), 4.0 if fatty < 0.5 else 1.3 * echo)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.12, 2), echo * cv.texture(ir, (10, 10), 0.15), att)
        vs(cv, ir)
        below = dia + curve * cv.v**2
        cv.paint(layer(cv.u, below, 3), 0.05)
        cv.paint(line(cv.u - below, 0.012), 8.0)
        wall(cv, ir)

    return Anatomy("liver", paint)


def kidney(
    pr: Generator,
    depth_cm: float,
    at: Placement | None = None,
    liver_echo: float = 1.2,
    liver_atten: float = 0.5,
    cortex: float = 0.8,
    sinus_size: float = 1.0,
) -> Anatomy:
    """Hepatorenal view: liver above a kidney with capsule, cortex, medullary pyramids and a bright sinus (its
    radii x `sinus_size`), centred and sized by `at` (at.radius 0.2 keeps the patient's size) or by the patient.
    Marks 'liver' and 'kidney'."""
    wall, wall_bottom = body_wall(pr, depth_cm)
    cu, cvv = pr.uniform(0.5, 0.62), pr.uniform(-0.1, 0.1)
    ru, rv, ang = pr.uniform(0.16, 0.22), pr.uniform(0.32, 0.42), pr.uniform(-0.35, 0.35)
    if at is not None:
        cu, cvv, ru, rv = at.u / at.zoom, at.v, ru * at.radius / 0.2, rv * at.radius / 0.2
    n_pyr = pr.integers(5, 8)
    pyr = [(a, pr.uniform(0.55, 0.75)) for a in np.linspace(0, 2 * math.pi, n_pyr, endpoint=False) + pr.uniform(0, 1)]
    sinus = irregular(pr, 4, 0.15)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.12, 2), liver_echo * cv.texture(ir, (10, 10), 0.15), liver_atten)
        cv.paint(ring(cv, cu, cvv, ru, rv, 0.03, ang), 2.5 * liver_echo / 1.2, 0.6)
        cv.paint(ellipse(cv, cu, cvv, ru, rv, ang), cortex * cv.texture(ir, (12, 12), 0.2), 0.5)
        ca, sa = math.cos(ang), math.sin(ang)
        for a, r in pyr:
            pu, pv = r * ru * math.sin(a), r * rv * math.cos(a)
            cv.paint(ellipse(cv, cu + ca * pu + sa * pv, cvv - sa * pu + ca * pv, 0.05, 0.05), 0.12 * cortex)
        sinus_in = ellipse(cv, cu, cvv, ru * 0.45 * sinus_size, rv * 0.55 * sinus_size, ang, 0.02, sinus)
        cv.paint(sinus_in, 4.0 * cv.texture(ir, (16, 16), 0.6), 0.8)
        wall(cv, ir)
        cv.mark("liver", layer(cv.u, wall_bottom + 0.01, 2))
        cv.mark("kidney", ellipse(cv, cu, cvv, ru + 0.03, rv + 0.03, ang))

    return Anatomy("kidney", paint)


def bladder(pr: Generator, depth_cm: float, at: Placement | None = None) -> Anatomy:
    """Full bladder (centred at `at`, or by the patient): anechoic lumen with a bright wall and posterior
    enhancement, a solid organ behind."""
    wall, _ = body_wall(pr, depth_cm)
    cu, cvv, ru, rv = pr.uniform(0.38, 0.48), 0.0, pr.uniform(0.14, 0.24), pr.uniform(0.25, 0.42)
    if at is not None:
        cu, cvv = at.depth(0.25, 0.8), at.v
    organ_u, organ_v, organ_r = cu + ru + pr.uniform(0.12, 0.18), cvv + pr.uniform(-0.2, 0.2), pr.uniform(0.1, 0.16)
    shape = irregular(pr, 2, 0.08)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.1, 2), 0.8 * cv.texture(ir, (10, 10), 0.3))
        cv.paint(ellipse(cv, organ_u, organ_v, organ_r, organ_r * 1.6), 1.1 * cv.texture(ir, (14, 14), 0.25))
        cv.paint(ring(cv, cu, cvv, ru, rv, 0.015), 3.0)
        cv.paint(ellipse(cv, cu, cvv, ru, rv, 0, 0.02, shape), ANECHOIC, 0.02)
        wall(cv, ir)

    return Anatomy("bladder", paint)


def thyroid(pr: Generator, depth_cm: float, at: Placement | None = None) -> Anatomy:
    """Transverse neck (the trachea at `at`, or by the patient): bright thyroid lobes and isthmus around the
    trachea, carotids laterally."""
    wall, _ = body_wall(pr, depth_cm, (0.2, 0.5))
    lobe_u, lobe_v, tr_r = pr.uniform(0.4, 0.5), pr.uniform(0.22, 0.3), pr.uniform(0.1, 0.14)
    mid = 0.0
    if at is not None:
        lobe_u, mid = at.depth(0.3, 0.6), at.v

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.1, 2), 0.6 * cv.texture(ir, (20, 6), 0.6))
        gland = 1.8 * cv.texture(ir, (14, 14), 0.2)
        for s in (-1, 1):
            cv.paint(ellipse(cv, lobe_u, mid + s * lobe_v, 0.14, 0.15), gland)
            cv.paint(ring(cv, lobe_u + 0.05, mid + s * (lobe_v + 0.27), 0.09, 0.09, 0.012), 3.0)
            cv.paint(ellipse(cv, lobe_u + 0.05, mid + s * (lobe_v + 0.27), 0.09, 0.09), ANECHOIC, 0.05)
        cv.paint(ellipse(cv, lobe_u - 0.14, mid, 0.05, 0.2), gland)
        cv.paint(ellipse(cv, lobe_u + 0.02, mid, tr_r, tr_r), 0.01, 0.5)
        cv.paint(ring(cv, lobe_u + 0.02, mid, tr_r, tr_r, 0.02) * (cv.u < lobe_u), 12.0, 25.0)
        cv.paint(line(cv.u - (lobe_u + 0.4), 0.02) * (np.abs(cv.v - mid) < 0.3), 10.0, 30.0)  # vertebral body
        wall(cv, ir)

    return Anatomy("thyroid", paint)


def carotid(pr: Generator, depth_cm: float, at: Placement | None = None) -> Anatomy:
    """Longitudinal carotid artery (its axis at the depth of `at`, or by the patient): anechoic lumen between
    double-line walls, sometimes a calcified plaque."""
    wall, _ = body_wall(pr, depth_cm, (0.2, 0.5))
    cu, half, slope = pr.uniform(0.4, 0.55), pr.uniform(0.08, 0.12), pr.uniform(-0.15, 0.15)
    cu = at.depth(0.3, 0.75) if at is not None else cu
    plaque = pr.random() < 0.3

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.1, 2), 0.6 * cv.texture(ir, (40, 4), 1.0))
        axis = cv.u - (cu + slope * cv.v)
        for s in (-1, 1):
            cv.paint(line(axis - s * (half + 0.012), 0.012), 4.0)
            cv.paint(line(axis - s * (half + 0.035), 0.01), 2.0)
        cv.paint(layer(axis, -half, half, 0.004), ANECHOIC, 0.05)
        if plaque:
            cv.paint(ellipse(cv, cu - half + 0.02, 0.05, 0.02, 0.08), 40.0, 40.0)
        wall(cv, ir)

    return Anatomy("carotid", paint)


def heart(pr: Generator, depth_cm: float, at: Placement | None = None) -> Anatomy:
    """Apical four-chamber view (moved and sized by `at`, or by the patient): near-field chest wall clutter,
    myocardium and septa around four anechoic chambers, bright valves."""
    wall, _ = body_wall(pr, depth_cm, (0.2, 0.6))
    ang = pr.uniform(-0.25, 0.25)
    chambers = [(0.38, 0.13, 0.27, 0.11), (0.42, -0.13, 0.22, 0.1), (0.8, 0.13, 0.12, 0.11), (0.8, -0.14, 0.11, 0.1)]
    scale, c_u, c_v = pr.uniform(0.9, 1.1), 0.55, 0.0
    if at is not None:
        scale = at.scale(0.7, 1.15)
        c_u, c_v = 0.1 + 0.45 * scale, 0.5 * at.v

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, -1, 2), 0.15 * cv.texture(ir, (8, 8), 0.6))
        cv.paint(ring(cv, c_u, c_v, 0.47 * scale, 0.38 * scale, 0.025, ang), 3.0)
        cv.paint(ellipse(cv, c_u, c_v, 0.47 * scale, 0.38 * scale, ang, 0.02), 1.0 * cv.texture(ir, (10, 10), 0.3))
        ca, sa = math.cos(ang), math.sin(ang)
        for u, v, ru, rv in chambers:
            du, dv = (u - 0.55) * scale, v * scale
            cu, cvv = c_u + ca * du + sa * dv, c_v - sa * du + ca * dv
            cv.paint(ellipse(cv, cu, cvv, ru * scale, rv * scale, ang, 0.02), 0.006)
        valves = c_u + 0.07 * scale + 0.1 * (cv.v - c_v)
        cv.paint(line(cv.u - valves, 0.012) * (np.abs(cv.v - c_v) < 0.25 * scale), 4.0)
        wall(cv, ir)

    return Anatomy("heart", paint)


def muscle(pr: Generator, depth_cm: float, at: Placement | None = None) -> Anatomy:
    """Musculoskeletal: pennate muscle fascicles between bright fasciae, above a shadowing bone cortex (at the
    depth of `at`, or by the patient)."""
    wall, _ = body_wall(pr, depth_cm, (0.2, 0.6))
    pen, period = pr.uniform(0.2, 0.5) * pr.choice((-1, 1)), pr.uniform(0.06, 0.1)
    bone, curve = pr.uniform(0.72, 0.86), pr.uniform(0.05, 0.3)
    bone = at.depth(0.5, 0.95) if at is not None else bone

    def paint(cv: Canvas, ir: Generator) -> None:
        fibres = 0.5 + 0.5 * np.cos((cv.u * math.cos(pen) + cv.v * math.sin(pen)) * (2 * math.pi / period))
        cv.paint(layer(cv.u, 0.1, 2), (0.3 + 1.8 * fibres**4) * cv.texture(ir, (10, 10), 0.3))
        cv.paint(line(cv.u - (bone - 0.3), 0.01), 4.0)
        cv.paint(line(cv.u - (bone + curve * cv.v**2), 0.015), 20.0, 80.0)
        wall(cv, ir)

    return Anatomy("muscle", paint)


ORGANS: dict[str, Callable[[Generator, float, Placement | None], Anatomy]] = {
    "liver": liver,
    "kidney": kidney,
    "bladder": bladder,
    "thyroid": thyroid,
    "carotid": carotid,
    "heart": heart,
    "muscle": muscle,
}


def breast(pr: Generator, depth_cm: float) -> Anatomy:
    """Breast: skin, fat lobules with Cooper ligaments, fibroglandular tissue, pectoral muscle, rib."""
    fat_end, gland_end = pr.uniform(0.2, 0.3), pr.uniform(0.55, 0.65)
    lobules = [
        (pr.uniform(0.06, fat_end), pr.uniform(-0.6, 0.6), pr.uniform(0.03, 0.06), pr.uniform(0.06, 0.12))
        for _ in range(6)
    ]

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, -1, 0.04), 3.0)
        cv.paint(layer(cv.u, 0.04, fat_end), 0.3 * cv.texture(ir, (8, 12), 0.5))
        for lu, lv, ru, rv in lobules:
            cv.paint(ring(cv, lu, lv, ru, rv, 0.006), 2.5)
        cv.paint(layer(cv.u, fat_end, gland_end, 0.02), 1.8 * cv.texture(ir, (18, 14), 0.5))
        cv.paint(layer(cv.u, gland_end, gland_end + 0.1), 0.35)
        cv.paint(layer(cv.u, gland_end + 0.1, 2), 0.5 * cv.texture(ir, (40, 3), 0.9))

    return Anatomy("breast", paint)


# ---- focal findings ----


def lesion(pr: Generator, kind: str, at: Placement) -> Painter:
    """A focal lesion with the same range of sizes, positions, mean echogenicity and posterior acoustics
    (enhancement to shadow, drawn per patient) in both classes, so its brightness histogram does not tell them
    apart: 'benign' is an oval, wider than tall, circumscribed by a thin capsule and homogeneous; 'malignant'
    is taller than wide with an irregular spiculated margin and an echogenic halo, heterogeneous, with
    microcalcifications. Marks the 'lesion' region."""
    echo, atten = pr.uniform(0.04, 0.2), pr.uniform(0.05, 1.5)
    if kind == "benign":
        ratio, margin, ang = 1 / pr.uniform(1.2, 1.7), irregular(pr, 2, 0.04), pr.uniform(-0.4, 0.4)
    else:
        ratio, margin, ang = pr.uniform(1.4, 2.0), irregular(pr, 14, pr.uniform(0.4, 0.55)), pr.uniform(-0.15, 0.15)
    ru, rv = at.radius * ratio**0.5, at.radius / ratio**0.5
    n_calc = pr.integers(6, 16)

    def paint(cv: Canvas, ir: Generator) -> None:
        c = (at.u, at.v, ru, rv, ang)
        inside = ellipse(cv, *c, 0.006 if kind == "benign" else 0.015, margin)
        if kind == "malignant":
            cv.paint(
                np.clip(ellipse(cv, c[0], c[1], c[2] + 0.025, c[3] + 0.025, ang, 0.02, margin) - inside, 0, 1), 2.0
            )
            cv.paint(inside, echo * cv.texture(ir, (20, 20), 0.7), atten)
            scatter_points(cv, ir, inside, n_calc, 60.0, atten)
        else:
            cv.paint(ring(cv, *c[:4], 0.015, ang), 3.0)
            cv.paint(inside, echo * cv.texture(ir, (16, 16), 0.15), atten)
        cv.mark("lesion", inside)

    return paint


def duct(pr: Generator, at: Placement, length: float = 1.0) -> Painter:
    """Normal tissue's look-alike of a lesion: a straight hypoechoic duct or vessel with thin bright walls
    through the finding's place, of a lesion's area, echogenicity and posterior acoustics, so that the extent
    and level of a dark region do not tell a lesion from none; its shape (a long band) does."""
    echo, atten, ang = pr.uniform(0.04, 0.2), pr.uniform(0.05, 1.5), pr.uniform(-0.5, 0.5)
    half = math.pi * at.radius**2 / length / 2
    ca, sa = math.cos(ang), math.sin(ang)

    def paint(cv: Canvas, ir: Generator) -> None:
        across = (cv.u - at.u) * ca - (cv.v - at.v) * sa
        along = np.clip((length / 2 - np.abs((cv.u - at.u) * sa + (cv.v - at.v) * ca)) / 0.01 + 0.5, 0, 1)
        cv.paint((layer(across, -half - 0.01, -half) + layer(across, half, half + 0.01)) * along, 2.0)
        cv.paint(layer(across, -half, half) * along, echo * cv.texture(ir, (16, 16), 0.15), atten)

    return paint


def calcification(pr: Generator) -> Painter:
    """A coarse calcification: a bright curved focus with a clean acoustic shadow."""
    cu, cvv = pr.uniform(0.3, 0.7), pr.uniform(-0.35, 0.35)
    ru, rv = pr.uniform(0.008, 0.015), pr.uniform(0.015, 0.04)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(ellipse(cv, cu, cvv, ru, rv, 0, 0.005), 60.0, 60.0)

    return paint
