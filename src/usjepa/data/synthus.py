"""SynthUS: anatomical presets and lesion models on the B-mode simulator, labelled tasks and an unlabelled
corpus written in the UltraBench processed layout, and the `usjepa simulate` subcommand.

Anatomy is drawn in depth-normalised Cartesian coordinates (u = z / depth, v = x / depth). Echogenicity is
linear backscatter power relative to soft tissue (1.0); attenuation is in dB/(cm·MHz). Per-patient draws
(anatomy, probe, lesion shape) come from a generator seeded by (seed, task, patient, class); per-image
draws (view, gain) from one seeded by (seed, task, index), so output bytes do not depend on worker count.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.random import Generator
from PIL import Image
from threadpoolctl import threadpool_limits

from usjepa.data.simulate import PROBES, BeamGrid, Frame, ScanParams, simulate
from usjepa.errors import ConfigError, DataError
from usjepa.paths import out_dir

TASKS: dict[str, tuple[str, ...]] = {
    "synthus_lesion": ("normal", "benign", "malignant"),
    "synthus_organ": ("liver", "kidney", "bladder", "thyroid", "carotid", "heart", "muscle"),
    "synthus_fatty": ("normal", "fatty"),
    "synthus_lung": ("a_lines", "b_lines", "consolidation"),
}
CORPUS = "synthus_corpus"
IMAGES_PER_PATIENT = 5  # the organ task instead scans every patient once per organ
TEST_FRACTION = 0.2
VERSION = "UltraBench Version: 1.0.1"
ANECHOIC = 0.003  # fluid: clutter floor ≈ −25 dB


class Canvas:
    """Echogenicity, attenuation and lesion-label maps over a beam grid, painted in (u, v) coordinates."""

    def __init__(self, grid: BeamGrid, depth: float, shift: float) -> None:
        self.u = grid.z / np.float32(depth)
        self.v = grid.x / np.float32(depth) - np.float32(shift)
        self.line = np.broadcast_to(grid.line.astype(np.float32), self.u.shape)
        self.echo = np.ones(self.u.shape, np.float32)
        self.atten = np.full(self.u.shape, 0.5, np.float32)
        self.label: np.ndarray | None = None

    def paint(self, w: np.ndarray, echo: float | np.ndarray, atten: float | None = None) -> None:
        """Blend echo (and attenuation) in with weight w ∈ [0, 1]."""
        self.echo += w * (echo - self.echo)
        if atten is not None:
            self.atten += w * (atten - self.atten)

    def texture(self, rng: Generator, cells: tuple[int, int], contrast: float) -> np.ndarray:
        """Smooth log-normal tissue structure (mean ≈ 1): coarse noise upsampled along beams and lines."""
        n_ax, n_lat = self.u.shape
        coarse = rng.standard_normal(cells).astype(np.float32)
        field = _interp_matrix(n_ax, cells[0]) @ coarse @ _interp_matrix(n_lat, cells[1]).T
        return np.exp(contrast * field - contrast ** 2 / 2)


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

def ellipse(cv: Canvas, cu: float, cvv: float, ru: float, rv: float, angle: float = 0.0, edge: float = 0.01,
            margin: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
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


# ---- anatomy: a preset draws per-patient choices and returns how to paint each image ----

Painter = Callable[[Canvas, Generator], None]


@dataclass(frozen=True)
class Anatomy:
    organ: str
    depth_cm: float
    paint: Painter
    probe: str | None = None  # None: any probe


def body_wall(pr: Generator, depth_cm: float, fat_cm: tuple[float, float] = (0.3, 1.5)) -> Painter:
    """Skin line, subcutaneous fat with septa, and a striated muscle layer."""
    fat, muscle = pr.uniform(*fat_cm) / depth_cm, pr.uniform(0.4, 1.0) / depth_cm
    skin = 0.15 / depth_cm

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, -1, skin), 3.0)
        cv.paint(layer(cv.u, skin, skin + fat), 0.35 * cv.texture(ir, (12, 5), 0.8))
        cv.paint(layer(cv.u, skin + fat, skin + fat + muscle), 0.5 * cv.texture(ir, (40, 3), 0.9))
        cv.paint(line(cv.u - (skin + fat + muscle), 0.006), 3.0)
    return paint


def vessels(pr: Generator, n: int, region: tuple[float, float], bright_walls: float) -> Painter:
    """Tubular vessels cut obliquely: anechoic lumens, some with echogenic (portal) walls."""
    spec = [(pr.uniform(*region), pr.uniform(-0.35, 0.35), pr.uniform(0.012, 0.03), pr.uniform(0.03, 0.09),
             pr.uniform(-1, 1), pr.random() < 0.5) for _ in range(n)]

    def paint(cv: Canvas, ir: Generator) -> None:
        for cu, cvv, ru, rv, ang, portal in spec:
            if portal:
                cv.paint(ring(cv, cu, cvv, ru, rv, 0.008, ang), bright_walls)
            cv.paint(ellipse(cv, cu, cvv, ru, rv, ang, 0.005), ANECHOIC, 0.05)
    return paint


def liver(pr: Generator, fatty: float = 0.0, depth: tuple[float, float] = (12, 16)) -> Anatomy:
    """Liver parenchyma with vessels and the diaphragm; `fatty` ∈ [0, 1] brightens it and raises attenuation."""
    d = _depth(pr, depth)
    wall = body_wall(pr, d)
    echo, att = 1.0 + 2.5 * fatty, 0.5 + 0.7 * fatty
    vs = vessels(pr, pr.integers(2, 6), (0.3, 0.75), 4.0 if fatty < 0.5 else 1.3 * echo)
    dia, curve = pr.uniform(0.78, 0.92), pr.uniform(0.1, 0.4)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.12, 2), echo * cv.texture(ir, (10, 10), 0.15), att)
        vs(cv, ir)
        below = dia + curve * cv.v ** 2
        cv.paint(layer(cv.u, below, 3), 0.05)
        cv.paint(line(cv.u - below, 0.012), 8.0)
        wall(cv, ir)
    return Anatomy("liver", d, paint)


def kidney(pr: Generator, liver_echo: float = 1.2, liver_atten: float = 0.5, depth: tuple[float, float] = (11, 15),
           cortex: float = 0.8) -> Anatomy:
    """Hepatorenal view: liver above a kidney with capsule, cortex, medullary pyramids and a bright sinus."""
    d = _depth(pr, depth)
    wall = body_wall(pr, d)
    cu, cvv, ru, rv, ang = pr.uniform(0.5, 0.62), pr.uniform(-0.1, 0.1), pr.uniform(0.16, 0.22), pr.uniform(0.32, 0.42), pr.uniform(-0.35, 0.35)
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
        cv.paint(ellipse(cv, cu, cvv, ru * 0.45, rv * 0.55, ang, 0.02, sinus), 4.0 * cv.texture(ir, (16, 16), 0.6), 0.8)
        wall(cv, ir)
    return Anatomy("kidney", d, paint)


def bladder(pr: Generator) -> Anatomy:
    """Full bladder: anechoic lumen with a bright wall and posterior enhancement, a solid organ behind."""
    d = _depth(pr, (10, 14))
    wall = body_wall(pr, d)
    cu, ru, rv = pr.uniform(0.38, 0.48), pr.uniform(0.18, 0.26), pr.uniform(0.3, 0.45)
    organ_u, organ_r = cu + ru + pr.uniform(0.12, 0.18), pr.uniform(0.1, 0.16)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.1, 2), 0.8 * cv.texture(ir, (10, 10), 0.3))
        cv.paint(ellipse(cv, organ_u, 0, organ_r, organ_r * 1.6), 1.1 * cv.texture(ir, (14, 14), 0.25))
        cv.paint(ring(cv, cu, 0, ru, rv, 0.015), 3.0)
        cv.paint(ellipse(cv, cu, 0, ru, rv, 0, 0.02, irregular(pr, 2, 0.08)), ANECHOIC, 0.02)
        wall(cv, ir)
    return Anatomy("bladder", d, paint)


def thyroid(pr: Generator) -> Anatomy:
    """Transverse neck: bright thyroid lobes and isthmus around the trachea, carotids laterally."""
    d = _depth(pr, (3.5, 5))
    wall = body_wall(pr, d, (0.2, 0.5))
    lobe_u, lobe_v, tr_r = pr.uniform(0.4, 0.5), pr.uniform(0.22, 0.3), pr.uniform(0.1, 0.14)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, 0.1, 2), 0.6 * cv.texture(ir, (20, 6), 0.6))
        gland = 1.8 * cv.texture(ir, (14, 14), 0.2)
        for s in (-1, 1):
            cv.paint(ellipse(cv, lobe_u, s * lobe_v, 0.14, 0.15), gland)
            cv.paint(ring(cv, lobe_u + 0.05, s * (lobe_v + 0.27), 0.09, 0.09, 0.012), 3.0)
            cv.paint(ellipse(cv, lobe_u + 0.05, s * (lobe_v + 0.27), 0.09, 0.09), ANECHOIC, 0.05)
        cv.paint(ellipse(cv, lobe_u - 0.14, 0, 0.05, 0.2), gland)
        cv.paint(ellipse(cv, lobe_u + 0.02, 0, tr_r, tr_r), 0.01, 0.5)
        cv.paint(ring(cv, lobe_u + 0.02, 0, tr_r, tr_r, 0.02) * (cv.u < lobe_u), 12.0, 25.0)
        cv.paint(line(cv.u - 0.88, 0.02) * (np.abs(cv.v) < 0.3), 10.0, 30.0)  # vertebral body
        wall(cv, ir)
    return Anatomy("thyroid", d, paint, "linear")


def carotid(pr: Generator) -> Anatomy:
    """Longitudinal carotid artery: anechoic lumen between double-line walls, sometimes a calcified plaque."""
    d = _depth(pr, (3.5, 5))
    wall = body_wall(pr, d, (0.2, 0.5))
    cu, half, slope = pr.uniform(0.4, 0.55), pr.uniform(0.08, 0.12), pr.uniform(-0.15, 0.15)
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
    return Anatomy("carotid", d, paint, "linear")


def heart(pr: Generator) -> Anatomy:
    """Apical four-chamber view: myocardium and septa around four anechoic chambers, bright valves."""
    d = _depth(pr, (13, 17))
    ang = pr.uniform(-0.25, 0.25)
    chambers = [(0.38, 0.13, 0.27, 0.11), (0.42, -0.13, 0.22, 0.1), (0.8, 0.13, 0.12, 0.11), (0.8, -0.14, 0.11, 0.1)]
    scale = pr.uniform(0.9, 1.1)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, -1, 2), 0.15 * cv.texture(ir, (8, 8), 0.6))
        cv.paint(ring(cv, 0.55, 0, 0.47 * scale, 0.38 * scale, 0.025, ang), 3.0)
        cv.paint(ellipse(cv, 0.55, 0, 0.47 * scale, 0.38 * scale, ang, 0.02), 1.0 * cv.texture(ir, (10, 10), 0.3))
        ca, sa = math.cos(ang), math.sin(ang)
        for u, v, ru, rv in chambers:
            du, dv = (u - 0.55) * scale, v * scale
            cu, cvv = 0.55 + ca * du + sa * dv, -sa * du + ca * dv
            cv.paint(ellipse(cv, cu, cvv, ru * scale, rv * scale, ang, 0.02), 0.006)
        cv.paint(line(cv.u - (0.62 + 0.1 * cv.v), 0.012) * (np.abs(cv.v) < 0.25), 4.0)
    return Anatomy("heart", d, paint, "phased")


def muscle(pr: Generator) -> Anatomy:
    """Musculoskeletal: pennate muscle fascicles between bright fasciae, above a shadowing bone cortex."""
    d = _depth(pr, (3.5, 5.5))
    wall = body_wall(pr, d, (0.2, 0.6))
    pen, period = pr.uniform(0.2, 0.5) * pr.choice((-1, 1)), pr.uniform(0.035, 0.06)
    bone, curve = pr.uniform(0.72, 0.86), pr.uniform(0.05, 0.3)

    def paint(cv: Canvas, ir: Generator) -> None:
        fibres = 0.5 + 0.5 * np.cos((cv.u * math.cos(pen) + cv.v * math.sin(pen)) * (2 * math.pi / period))
        cv.paint(layer(cv.u, 0.1, 2), (0.3 + 1.8 * fibres ** 4) * cv.texture(ir, (10, 10), 0.3))
        cv.paint(line(cv.u - (bone - 0.3), 0.01), 4.0)
        cv.paint(line(cv.u - (bone + curve * cv.v ** 2), 0.015), 20.0, 80.0)
        wall(cv, ir)
    return Anatomy("muscle", d, paint, "linear")


ORGANS: dict[str, Callable[[Generator], Anatomy]] = {
    "liver": liver, "kidney": kidney, "bladder": bladder, "thyroid": thyroid,
    "carotid": carotid, "heart": heart, "muscle": muscle,
}


def breast(pr: Generator) -> Anatomy:
    """Breast: skin, fat lobules with Cooper ligaments, fibroglandular tissue, pectoral muscle, rib."""
    d = _depth(pr, (3.5, 5))
    fat_end, gland_end = pr.uniform(0.2, 0.3), pr.uniform(0.55, 0.65)
    lobules = [(pr.uniform(0.06, fat_end), pr.uniform(-0.6, 0.6), pr.uniform(0.03, 0.06), pr.uniform(0.06, 0.12))
               for _ in range(6)]

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(layer(cv.u, -1, 0.04), 3.0)
        cv.paint(layer(cv.u, 0.04, fat_end), 0.3 * cv.texture(ir, (8, 12), 0.5))
        for lu, lv, ru, rv in lobules:
            cv.paint(ring(cv, lu, lv, ru, rv, 0.006), 2.5)
        cv.paint(layer(cv.u, fat_end, gland_end, 0.02), 1.8 * cv.texture(ir, (18, 14), 0.5))
        cv.paint(layer(cv.u, gland_end, gland_end + 0.1), 0.35)
        cv.paint(layer(cv.u, gland_end + 0.1, 2), 0.5 * cv.texture(ir, (40, 3), 0.9))
    return Anatomy("breast", d, paint, "linear")


# ---- lesions ----

def lesion(pr: Generator, kind: str) -> Painter:
    """A focal lesion: 'benign' (anechoic cyst with posterior enhancement, or an oval circumscribed mildly
    hypoechoic solid mass) or 'malignant' (irregular spiculated, taller than wide, heterogeneous and
    shadowing, often with microcalcifications). Writes the lesion label map."""
    cu, cvv, r = pr.uniform(0.35, 0.6), pr.uniform(-0.2, 0.2), pr.uniform(0.07, 0.13)
    cyst = kind == "benign" and pr.random() < 0.5
    if kind == "benign":
        ru, rv, margin = r / pr.uniform(1.2, 1.8) ** 0.5, r * pr.uniform(1.2, 1.8) ** 0.5, irregular(pr, 2, 0.04)
        echo, att = (ANECHOIC, 0.0) if cyst else (pr.uniform(0.3, 0.55), 0.5)
    else:
        ratio = pr.uniform(1.1, 1.6) ** 0.5
        ru, rv, margin = r * ratio, r / ratio, irregular(pr, 14, pr.uniform(0.15, 0.3))
        echo, att = pr.uniform(0.08, 0.2), pr.uniform(1.5, 3.0)
    n_calc = pr.integers(4, 14) if kind == "malignant" and pr.random() < 0.6 else 0
    ang = pr.uniform(-0.4, 0.4) if kind == "benign" else pr.uniform(-0.15, 0.15)

    def paint(cv: Canvas, ir: Generator) -> None:
        du, dv, s = ir.uniform(-0.03, 0.03), ir.uniform(-0.05, 0.05), ir.uniform(0.9, 1.1)
        c = (cu + du, cvv + dv, ru * s, rv * s, ang)
        inside = ellipse(cv, *c, 0.006 if kind == "benign" else 0.015, margin)
        if kind == "malignant":
            cv.paint(np.clip(ellipse(cv, c[0], c[1], c[2] + 0.025, c[3] + 0.025, ang, 0.02, margin) - inside, 0, 1), 2.0)
            cv.paint(inside, echo * cv.texture(ir, (20, 20), 0.7), att)
            scatter_points(cv, ir, inside, n_calc, 60.0, 3.0)
        else:
            cv.paint(ring(cv, *c[:4], 0.008, ang), 2.0 if cyst else 1.5)
            cv.paint(inside, echo * (1 if cyst else cv.texture(ir, (16, 16), 0.2)), att)
        cv.label = (inside > 0.5).astype(np.uint8)
    return paint


def calcification(pr: Generator) -> Painter:
    """A coarse calcification: a bright curved focus with a clean acoustic shadow."""
    cu, cvv = pr.uniform(0.3, 0.7), pr.uniform(-0.35, 0.35)
    ru, rv = pr.uniform(0.008, 0.015), pr.uniform(0.015, 0.04)

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(ellipse(cv, cu, cvv, ru, rv, 0, 0.005), 60.0, 60.0)
    return paint


def lesion_scene(pr: Generator, kind: str) -> Anatomy:
    """Lesion task: a breast or liver host, with no lesion ('normal'), a benign or a malignant lesion;
    a coarse calcification appears in any class as a distractor."""
    host = breast(pr) if pr.random() < 0.5 else liver(pr, depth=(8, 12))
    les = lesion(pr, kind) if kind != "normal" else None
    calc = calcification(pr) if pr.random() < 0.2 else None

    def paint(cv: Canvas, ir: Generator) -> None:
        host.paint(cv, ir)
        for part in (les, calc):
            if part is not None:
                part(cv, ir)
    return Anatomy(host.organ, host.depth_cm, paint, host.probe)


def fatty_scene(pr: Generator, fatty: bool) -> Anatomy:
    """Hepatorenal view: fatty liver is brighter than the renal cortex and attenuates more (fading far field,
    blurred vessel walls, faint diaphragm); a normal liver is about as bright as the cortex."""
    degree = pr.uniform(0.55, 1.0) if fatty else pr.uniform(0.0, 0.15)
    cortex = pr.uniform(0.5, 1.5)  # the liver's brightness relative to the cortex carries the label, not its level
    return kidney(pr, liver_echo=cortex * (0.9 + 2.5 * degree), liver_atten=0.5 + 0.6 * degree, cortex=cortex)


def lung_scene(pr: Generator, pattern: str) -> Anatomy:
    """Lung: chest wall, ribs with shadows and the pleural line; then A-lines (reverberations at multiples of
    the pleural depth), B-lines (vertical comet tails along the beam, to the bottom) or a consolidation
    (tissue-like lung with air bronchograms and a shredded deep border)."""
    d = _depth(pr, (8, 12))
    wall = body_wall(pr, d, (0.3, 1.0))
    pleura = pr.uniform(0.15, 0.26)
    ribs = [s * pr.uniform(0.28, 0.42) for s in (-1, 1) if pr.random() < 0.8]
    decay = pr.uniform(0.35, 0.65)
    n_b = pr.integers(1, 6)
    b_lines = [(pr.uniform(-0.35, 0.35), pr.uniform(0.012, 0.03), pr.uniform(3, 8)) for _ in range(n_b)]
    cons = (pleura + pr.uniform(0.08, 0.2), pr.uniform(-0.15, 0.15), pr.uniform(0.08, 0.25), pr.uniform(0.1, 0.3))
    haze = 10 ** pr.uniform(-2.3, -0.7)  # sub-pleural clutter level, varies between patients
    shred = irregular(pr, 12, 0.25)

    def paint(cv: Canvas, ir: Generator) -> None:
        wall(cv, ir)
        cv.paint(layer(cv.u, pleura, 3), haze * cv.texture(ir, (6, 6), 0.8))
        cv.paint(line(cv.u - pleura, 0.012), 10.0)
        if pattern == "a_lines":
            for k in range(2, 8):
                cv.paint(line(cv.u - k * pleura, 0.012), 6.0 * decay ** (k - 1))
        elif pattern == "b_lines":
            for k in range(2, 4):
                cv.paint(line(cv.u - k * pleura, 0.012), 0.5 * decay ** (k - 1))
            for pos, width, echo in b_lines:
                cv.paint(line(cv.line - pos - ir.uniform(-0.03, 0.03), width) * (cv.u > pleura), echo, 0.0)
        else:
            inside = ellipse(cv, cons[0], cons[1], cons[2], cons[3], 0, 0.01, shred) * (cv.u > pleura)
            cv.paint(inside, 1.2 * cv.texture(ir, (14, 14), 0.35), 0.6)
            scatter_points(cv, ir, inside, 40, 25.0)
        for rv in ribs:
            cv.paint(ellipse(cv, pleura - 0.03, rv, 0.03, 0.1), 10.0, 80.0)
    return Anatomy("lung", d, paint)


def _depth(pr: Generator, cm: tuple[float, float]) -> float:
    """An imaging depth in 0.5 cm steps, as a scanner offers."""
    return round(pr.uniform(*cm) * 2) / 2


ANATOMY: dict[str, Callable[[Generator, str], Anatomy]] = {
    "synthus_lesion": lesion_scene,
    "synthus_organ": lambda pr, name: ORGANS[name](pr),
    "synthus_fatty": lambda pr, name: fatty_scene(pr, name == "fatty"),
    "synthus_lung": lung_scene,
}


# ---- acquisition ----

def scan_params(pr: Generator, ir: Generator, depth_cm: float, probe: str | None) -> ScanParams:
    """Probe settings a sonographer would pick for this depth: f0 for penetration, focus mid-image;
    per-patient gain, TGC slope and dynamic range plus a small per-image gain change."""
    kind = probe or PROBES[pr.integers(3)]
    f0 = float(np.clip(round(pr.uniform(0.8, 1.1) * 30 / depth_cm * 2) / 2, 2.0, 8.0)) * 1e6
    depth = depth_cm / 100
    geometry = {
        "linear": {"width": depth * (0.8 if depth_cm > 6 else 1.0), "pitch": 3e-4},
        "convex": {"radius": (0.04, 0.06)[pr.integers(2)], "sector": math.radians(65), "pitch": 4e-4},
        "phased": {"radius": 0.002, "sector": math.radians(80), "pitch": 1540 / f0 / 2},
    }[kind]
    return ScanParams(probe=kind, f0=f0, bandwidth=(0.5, 0.6, 0.7)[pr.integers(3)], depth=depth,
                      focus=round(pr.uniform(0.4, 0.7) * depth_cm * 2) / 200, n_active=64,
                      attenuation=float(pr.uniform(0.4, 0.7)), dynamic_range=float(pr.uniform(50, 70)),
                      gain=float(pr.uniform(-8, 8) + ir.uniform(-2, 2)),
                      **geometry)


def _code(task: str) -> int:
    return zlib.crc32(task.encode())


@dataclass(frozen=True)
class Item:
    """Where one image sits in a task: its index, virtual patient and class (-1 in the corpus)."""

    task: str
    index: int
    patient: int
    label: int


def items(task: str, n: int) -> list[Item]:
    """The n images of a task: several per virtual patient; one class per patient, except the organ task
    where each patient is scanned at every organ."""
    if task == "synthus_organ":
        k = len(TASKS[task])
        return [Item(task, i, i // k, i % k) for i in range(n)]
    if task == CORPUS:
        return [Item(task, i, i // IMAGES_PER_PATIENT, -1) for i in range(n)]
    k = len(TASKS[task])
    return [Item(task, i, i // IMAGES_PER_PATIENT, (i // IMAGES_PER_PATIENT) % k) for i in range(n)]


def _example(task: str, label: int, rank: int) -> Item:
    """The first image of the rank-th patient of a class, as items() numbers them."""
    k = len(TASKS[task])
    if task == "synthus_organ":
        return Item(task, rank * k + label, rank, label)
    patient = rank * k + label
    return Item(task, patient * IMAGES_PER_PATIENT, patient, label)


def render(item: Item, seed: int, img_size: int) -> tuple[Frame, dict]:
    """Simulate one image of a task; returns the frame and its record metadata."""
    task, label = item.task, item.label
    if task == CORPUS:  # any task's preset, per patient
        pick = np.random.default_rng([seed, _code(task), 2, item.patient])
        task = list(TASKS)[pick.integers(len(TASKS))]
        label = int(pick.integers(len(TASKS[task])))
    pr = np.random.default_rng([seed, _code(item.task), 0, item.patient, label])
    ir = np.random.default_rng([seed, _code(item.task), 1, item.index])
    anatomy = ANATOMY[task](pr, TASKS[task][label])
    params = scan_params(pr, ir, anatomy.depth_cm, anatomy.probe)
    shift = ir.uniform(-0.06, 0.06)

    def scene(grid: BeamGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        cv = Canvas(grid, params.depth, shift)
        anatomy.paint(cv, ir)
        return cv.echo, cv.atten, cv.label

    frame = simulate(scene, params, ir, img_size)
    meta = {"organ": anatomy.organ, "probe": params.probe, "preset": f"{task}/{TASKS[task][label]}"}
    return frame, meta


# ---- writing the UltraBench layout ----

def _write_one(item: Item, out: Path, seed: int, img_size: int) -> dict:
    frame, meta = render(item, seed, img_size)
    labelled = item.task != CORPUS
    stem = f"{item.patient}_{TASKS[item.task][item.label]}_{item.index:06d}" if labelled else f"{item.patient}_{item.index:06d}"
    rec: dict = {"patient": item.patient}
    if labelled:
        rec |= {"class": TASKS[item.task][item.label], "label": item.label}
    rec |= {"image": f"images/{stem}.png", "scan_mask": f"masks/scan/{stem}.png"}
    _png(np.rint(frame.image * 255).astype(np.uint8), out / rec["image"])
    _png(frame.mask.astype(np.uint8), out / rec["scan_mask"])
    if item.task == "synthus_lesion":
        rec["lesion_mask"] = None
        if frame.label is not None:
            rec["lesion_mask"] = f"masks/lesion/{stem}.png"
            _png(frame.label, out / rec["lesion_mask"])
    return rec | meta


def _png(a: np.ndarray, path: Path) -> None:
    Image.fromarray(a).save(path, format="PNG", compress_level=1)


def _write_chunk(job: tuple[list[Item], str, int, int]) -> list[dict]:
    chunk, root, seed, img_size = job
    with threadpool_limits(1, user_api="blas"):  # tiny matrix products: BLAS threads only contend
        return [_write_one(it, Path(root) / it.task, seed, img_size) for it in chunk]


def _split(records: list[dict], task: str, seed: int) -> tuple[list[dict], list[dict]]:
    """Patient-grouped train_val / test split, stratified by the patient's class, seeded."""
    rng = np.random.default_rng([seed, _code(task), 3])
    by_class: dict[str, list[int]] = {}
    for rec in records:
        pats = by_class.setdefault(str(rec.get("class")) if task != "synthus_organ" else "all", [])
        if rec["patient"] not in pats:
            pats.append(rec["patient"])
    test = set()
    for pats in by_class.values():
        order = rng.permutation(len(pats))
        n_test = max(1, round(TEST_FRACTION * len(pats))) if len(pats) > 1 else 0
        test |= {pats[i] for i in order[:n_test]}
    return [r for r in records if r["patient"] not in test], [r for r in records if r["patient"] in test]


def _write(out: Path, sizes: dict[str, int], img_size: int, seed: int, workers: int) -> dict[str, Path]:
    """Generate every task's images (one pool for all) and write the split files and version.txt."""
    if img_size < 16:
        raise DataError(f"--img-size must be at least 16 pixels, got {img_size}")
    folders = {t: Path(out) / t for t, n in sizes.items() if n > 0}
    for task, folder in folders.items():
        for sub in ("images", "masks/scan") + (("masks/lesion",) if task == "synthus_lesion" else ()):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    work = [it for t in folders for it in items(t, sizes[t])]
    chunks = [(work[i:i + 32], str(out), seed, img_size) for i in range(0, len(work), 32)]
    if workers > 1 and len(chunks) > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            done = pool.map(_write_chunk, chunks, chunksize=1)
    else:
        done = [_write_chunk(c) for c in chunks]
    records = [r for part in done for r in part]
    start = 0
    for task, folder in folders.items():
        recs, start = records[start:start + sizes[task]], start + sizes[task]
        train_val, test = (recs, []) if task == CORPUS else _split(recs, task, seed)
        (folder / "train_val.json").write_text(json.dumps(train_val, indent=1))
        (folder / "test.json").write_text(json.dumps(test, indent=1))
        (folder / "version.txt").write_text(f"{VERSION}\nCreated: SynthUS seed={seed} img_size={img_size}\n")
    return folders


def write_task(out: str | Path, task: str, img_size: int = 224, n: int = 1500, seed: int = 0,
               workers: int = 2) -> Path:
    """Write one labelled task folder `<out>/<task>`."""
    if task not in TASKS:
        raise DataError(f"unknown SynthUS task {task!r}; expected one of {', '.join(TASKS)}")
    return _write(Path(out), {task: n}, img_size, seed, workers)[task]


def write_corpus(out: str | Path, n: int = 10_000, img_size: int = 224, seed: int = 0, workers: int = 2) -> Path:
    """Write the unlabelled pretraining corpus `<out>/synthus_corpus` (every preset, no labels, empty test)."""
    return _write(Path(out), {CORPUS: n}, img_size, seed, workers)[CORPUS]


def write_suite(out: str | Path, img_size: int = 224, n_per_task: int = 1500, corpus_size: int = 10_000,
                seed: int = 0, workers: int = 2, tasks: list[str] | None = None) -> dict[str, Path]:
    """Write the labelled tasks (all by default) and the corpus; returns task name → folder."""
    tasks = list(TASKS) if tasks is None else tasks
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise DataError(f"unknown SynthUS task(s) {unknown}; expected some of {', '.join(TASKS)}")
    sizes = {t: n_per_task for t in tasks} | {CORPUS: corpus_size}
    return _write(Path(out), sizes, img_size, seed, workers)


def write_preview(path: str | Path, img_size: int = 224, seed: int = 0, per_class: int = 2) -> Path:
    """A contact sheet of every task class (`per_class` patients each), lesion masks outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = [_example(t, c, rank) for t in TASKS for c in range(len(TASKS[t])) for rank in range(per_class)]
    cols = 6
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.6))
    for ax, it in zip(axes.ravel(), tiles):
        frame, meta = render(it, seed, img_size)
        ax.imshow(frame.image, cmap="gray", vmin=0, vmax=1)
        if frame.label is not None and frame.label.any():
            ax.contour(frame.label, levels=[0.5], colors="r", linewidths=0.6)
        ax.set_title(f"{it.task[8:]}: {TASKS[it.task][it.label]}\n{meta['organ']}, {meta['probe']}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- `usjepa simulate` ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="synthus", help="output root; one folder per task (default: ./synthus)")
    parser.add_argument("--img-size", type=int, default=224, help="square image size in pixels (default 224)")
    parser.add_argument("--n-per-task", type=int, default=1500, help="images per labelled task (default 1500)")
    parser.add_argument("--corpus", type=int, default=10_000, help="unlabelled corpus images (default 10000; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help=f"subset of: {' '.join(TASKS)} (default: all)")
    parser.add_argument("--preview", action="store_true", help="also write a contact sheet to <out>/preview.png")


def run(args: argparse.Namespace) -> int:
    for flag, value, low in (("--n-per-task", args.n_per_task, 1), ("--corpus", args.corpus, 0), ("--workers", args.workers, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    out_dir(args.out)
    tasks = None if args.tasks is None else [t if t.startswith("synthus_") else f"synthus_{t}" for t in args.tasks]
    t0 = time.perf_counter()
    folders = write_suite(args.out, args.img_size, args.n_per_task, args.corpus, args.seed, args.workers, tasks)
    for task, folder in folders.items():
        print(f"{task}: {len(list((folder / 'images').iterdir()))} images → {folder}")
    print(f"wrote {sum(len(list((f / 'images').iterdir())) for f in folders.values())} images in "
          f"{time.perf_counter() - t0:.1f} s with {args.workers} worker(s)")
    if args.preview:
        print(f"preview → {write_preview(Path(args.out) / 'preview.png', max(args.img_size, 128), args.seed)}")
    return 0
