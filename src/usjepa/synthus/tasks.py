"""SynthUS tasks: what each class looks like, the nuisances drawn per image, and the rendering of one image.

Labels live in anatomy, morphology and texture only. Every nuisance (probe kind and fan geometry, depth, f0,
focus, bandwidth, gain, TGC, dynamic range, organ zoom, lateral shift and mirroring, the position of a focal
finding or of an organ's main structure, and the finding's size) is drawn per image from a generator seeded by
(seed, task, index), never by the label, and recorded. The display then applies an automatic gain and TGC:
the in-fan intensity is set to a drawn mean, spread and depth slope, then remapped monotonically (histogram
matching) onto a fixed-shape distribution of that drawn mean and spread, so the whole in-fan histogram, not
only its mean and spread, and the fan area carry no class information; brightness order and spatial structure
are kept. Finer passes then give every depth the same mean, so that no class leaves a mean image either.
Per-patient anatomy comes from a generator seeded by (seed, task, patient, class), so output bytes do not
depend on the worker count.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from numpy.random import Generator
from scipy.ndimage import gaussian_filter1d
from scipy.special import ndtri

from usjepa.synthus import phantoms as ph
from usjepa.synthus.phantoms import Anatomy, Canvas, Placement
from usjepa.synthus.physics import PROBES, BeamGrid, Frame, ScanParams, simulate

TASKS: dict[str, tuple[str, ...]] = {
    "synthus_lesion": ("normal", "benign", "malignant"),
    "synthus_organ": ("liver", "kidney", "bladder", "thyroid", "carotid", "heart", "muscle"),
    "synthus_fatty": ("normal", "fatty"),
    "synthus_lung": ("a_lines", "b_lines", "consolidation"),
    "synthus_texture": ("fine", "sparse", "clustered"),
}
# Segmentation tasks: class-index masks under masks/<kind>/ (0 = background), no image label.
SEGMENTATION: dict[str, tuple[str, tuple[str, ...]]] = {
    "synthus_segment": ("anatomy", ("background", "liver", "kidney", "lesion")),
}
MASKS = {"synthus_lesion": "lesion", "synthus_texture": "region"} | {t: k for t, (k, _) in SEGMENTATION.items()}
CORPUS = "synthus_corpus"
IMAGES_PER_PATIENT = 5  # the organ task instead scans every patient once per organ
DEPTH_CM = {
    "synthus_lesion": (4, 9),
    "synthus_organ": (4, 16),
    "synthus_fatty": (10, 16),
    "synthus_lung": (5, 12),
    "synthus_texture": (4, 12),
    "synthus_segment": (10, 16),
}


@dataclass(frozen=True)
class Nuisance:
    """Per-image acquisition, placement and display settings, drawn without the label."""

    probe: str
    convex_radius_cm: float
    depth_cm: float
    f0_mhz: float
    bandwidth: float
    focus_cm: float
    gain_db: float
    tgc_db_cm_mhz: float  # the attenuation the TGC compensates
    dynamic_range_db: float
    zoom: float  # anatomy scale about the skin's centre
    shift: float  # lateral shift (depth units)
    flip: bool  # left-right mirror
    at_u: float  # focal finding: centre depth, lateral position, radius (depth units)
    at_v: float
    at_radius: float
    level: float  # display: in-fan mean, spread and mean change from top to bottom
    spread: float
    slope: float

    def scan(self) -> ScanParams:
        f0, depth = self.f0_mhz * 1e6, self.depth_cm / 100
        geometry = {
            "linear": {"width": depth * (0.8 if self.depth_cm > 6 else 1.0), "pitch": 3e-4},
            "convex": {"radius": self.convex_radius_cm / 100, "sector": math.radians(65), "pitch": 4e-4},
            "phased": {"radius": 0.002, "sector": math.radians(80), "pitch": 1540 / f0 / 2},
        }[self.probe]
        return ScanParams(
            probe=self.probe,
            f0=f0,
            bandwidth=self.bandwidth,
            depth=depth,
            focus=self.focus_cm / 100,
            n_active=64,
            attenuation=self.tgc_db_cm_mhz,
            dynamic_range=self.dynamic_range_db,
            gain=self.gain_db,
            **geometry,
        )

    def placement(self) -> Placement:
        return Placement(self.at_u, self.at_v, self.at_radius)

    def placement_in_view(self) -> Placement:
        """The placement as a position in the image, moved only by the view's lateral shift: the zoom does not
        push it out of view."""
        v = self.at_v / self.zoom * (-1 if self.flip else 1)
        return Placement(self.at_u, v, self.at_radius, self.zoom)


def draw_nuisance(ir: Generator, task: str) -> Nuisance:
    """Nuisances of one image, from the image's generator (the same ranges for every class of a task).

    The focal finding (lesion, texture region, kidney) is placed uniformly over the fan, so that on average
    over images it darkens or brightens every part of the image alike and a class leaves no mean image.
    """
    depth = round(ir.uniform(*DEPTH_CM.get(task, (4, 16))) * 2) / 2  # 0.5 cm steps, as a scanner offers
    f0 = float(np.clip(round(ir.uniform(0.8, 1.1) * 30 / depth * 2) / 2, 2.0, 8.0))
    probe, convex_radius = PROBES[ir.integers(3)], float((4, 6)[ir.integers(2)])
    at_u, at_radius = float(ir.uniform(0.25, 0.8)), float(ir.uniform(*RADIUS.get(task, (0.08, 0.15))))
    half = _half_width(probe, convex_radius / depth, depth, at_u)
    return Nuisance(
        probe=probe,
        convex_radius_cm=convex_radius,
        depth_cm=depth,
        f0_mhz=f0,
        bandwidth=float((0.5, 0.6, 0.7)[ir.integers(3)]),
        focus_cm=round(ir.uniform(0.4, 0.7) * depth * 2) / 2,
        gain_db=float(ir.uniform(-8, 8)),
        tgc_db_cm_mhz=float(ir.uniform(0.4, 0.7)),
        dynamic_range_db=float(ir.uniform(50, 70)),
        zoom=float(ir.uniform(*ZOOM.get(task, (0.8, 1.2)))),
        shift=float(ir.uniform(*SHIFT.get(task, (-0.12, 0.12)))),
        flip=bool(ir.random() < 0.5),
        at_u=at_u,
        at_v=float(ir.uniform(-1, 1) * max(half - 0.6 * at_radius, 0.03)),
        at_radius=at_radius,
        level=float(ir.uniform(0.3, 0.45)),
        spread=float(ir.uniform(0.13, 0.19)),
        slope=float(ir.uniform(-0.06, 0.06)),
    )


ZOOM = {"synthus_organ": (0.6, 1.6)}  # whole-organ views: a wider range of organ sizes and depths
SHIFT = {"synthus_organ": (-0.25, 0.25)}  # and of lateral positions
# focal findings large enough to show at 64 px: a lesion's margin, fatty's kidney (its cortex carries the label)
RADIUS = {"synthus_lesion": (0.14, 0.22), "synthus_fatty": (0.14, 0.24)}


def _half_width(probe: str, radius: float, depth_cm: float, u: float) -> float:
    """Half the fan's width at depth u, in depth units (the geometry of Nuisance.scan)."""
    if probe == "linear":
        return 0.4 if depth_cm > 6 else 0.5
    if probe == "convex":
        return (radius + u) * math.sin(math.radians(65) / 2)
    return (0.2 / depth_cm + u) * math.sin(math.radians(80) / 2)


# ---- scenes: (per-patient generator, image nuisances, class name) -> anatomy ----


def lesion_scene(pr: Generator, nz: Nuisance, kind: str) -> Anatomy:
    """A breast or liver host with a benign or a malignant lesion, or ('normal') a duct of a lesion's area and
    echogenicity in its place; a coarse calcification appears in any class as a distractor."""
    host = ph.breast(pr, nz.depth_cm) if pr.random() < 0.5 else ph.liver(pr, nz.depth_cm)
    les = ph.lesion(pr, kind, nz.placement()) if kind != "normal" else ph.duct(pr, nz.placement())
    calc = ph.calcification(pr) if pr.random() < 0.3 else None
    return ph.overlay(host, les, calc)


def fatty_scene(pr: Generator, nz: Nuisance, fatty: bool) -> Anatomy:
    """Hepatorenal view: a fatty liver is much brighter than the renal cortex (hepatorenal ratio 2.5-5), a
    normal liver about as bright (0.8-1.25). The liver's own level (against the body wall) and its attenuation
    are drawn per patient alike in both classes, so only the liver-cortex contrast carries the label. A
    gallbladder of any size, or none, darkens part of the view in both classes, so that the area of dark tissue
    (which the display's histogram matching turns into a brighter rest) does not tell them apart. The fatty
    kidney's bright sinus is larger (renal sinus fat accumulates with a fatty liver), which brings the kidney's
    mean display level back to the normal one's, so that a dark kidney-sized blob is not the label."""
    liver = float(np.exp(pr.uniform(np.log(0.8), np.log(3.0))))
    ratio = pr.uniform(2.5, 5.0) if fatty else pr.uniform(0.8, 1.25)
    view = ph.kidney(
        pr,
        nz.depth_cm,
        nz.placement(),
        liver_echo=liver,
        liver_atten=pr.uniform(0.5, 1.0),
        cortex=liver / ratio,
        sinus_size=1.4 if fatty else 1.0,
    )
    gb = (pr.uniform(0.25, 0.5), pr.uniform(-0.3, 0.3), pr.uniform(0.04, 0.12), pr.uniform(0.08, 0.2))
    gb_angle = pr.uniform(-0.6, 0.6)

    def gallbladder(cv: Canvas, ir: Generator) -> None:
        cv.paint(ph.ellipse(cv, *gb, gb_angle), ph.ANECHOIC, 0.02)

    return ph.overlay(view, gallbladder if gb[2] > 0.06 else None)  # a quarter of the patients have none in view


def lung_scene(pr: Generator, nz: Nuisance, pattern: str) -> Anatomy:
    """Lung: chest wall, ribs with shadows and the pleural line; then A-lines (reverberations at multiples of
    the pleural depth), B-lines (three to six vertical comet tails along the beam, to the bottom) or a
    consolidation (tissue-like lung with air bronchograms and a shredded deep border). A-line and consolidation
    views may show up to two B-lines, as a normal lung does, so that vertical streaks alone do not decide. The
    B-lines of a view gather in one intercostal space (a cluster 0.06-0.4 wide, confluent at its narrowest), so
    that how many image columns hold a streak does not count them; the cluster lies anywhere across the view
    (streaks past an edge are mirrored back in), so that bright columns in the middle do not tell B-lines."""
    wall, _ = ph.body_wall(pr, nz.depth_cm, (0.3, 1.0))
    pleura = pr.uniform(0.15, 0.26)
    ribs = [s * pr.uniform(0.28, 0.42) for s in (-1, 1) if pr.random() < 0.8]
    decay = pr.uniform(0.35, 0.65)
    n_b = pr.integers(3, 7) if pattern == "b_lines" else pr.integers(0, 3)  # up to 2 B-lines are normal
    centre, cluster = pr.uniform(-0.47, 0.47), pr.uniform(0.03, 0.2)  # B-lines gather in one intercostal space
    spots = centre + cluster * pr.uniform(-1, 1, n_b)
    spots = np.clip(spots, -0.94 - spots, 0.94 - spots)  # mirrored at +-0.47
    b_lines = [(float(p), pr.uniform(0.012, 0.03), pr.uniform(3, 8)) for p in spots]
    at = nz.placement()  # the consolidation's place and size, anywhere below the pleura
    cons = (max(at.u, pleura + 0.1), at.v, 1.3 * at.radius, 2 * at.radius)
    haze = 10 ** pr.uniform(-2.3, -0.7)  # sub-pleural clutter level, varies between patients
    shred = ph.irregular(pr, 12, 0.25)

    def paint(cv: Canvas, ir: Generator) -> None:
        wall(cv, ir)
        cv.paint(ph.layer(cv.u, pleura, 3), haze * cv.texture(ir, (6, 6), 0.8))
        cv.paint(ph.line(cv.u - pleura, 0.012), 10.0)
        if pattern == "a_lines":
            for k in range(2, 8):
                cv.paint(ph.line(cv.u - k * pleura, 0.012), 6.0 * decay ** (k - 1))
        elif pattern == "b_lines":
            for k in range(2, 4):
                cv.paint(ph.line(cv.u - k * pleura, 0.012), 0.5 * decay ** (k - 1))
        else:
            inside = ph.ellipse(cv, cons[0], cons[1], cons[2], cons[3], 0, 0.01, shred) * (cv.u > pleura)
            cv.paint(inside, 1.2 * cv.texture(ir, (14, 14), 0.35), 0.6)
            ph.scatter_points(cv, ir, inside, 40, 25.0)
        for pos, width, echo in b_lines:
            cv.paint(ph.line(cv.line - pos - ir.uniform(-0.03, 0.03), width) * (cv.u > pleura), echo, 0.0)
        for rv in ribs:
            cv.paint(ph.ellipse(cv, pleura - 0.03, rv, 0.03, 0.1), 10.0, 80.0)

    return Anatomy("lung", paint)


def texture_scene(pr: Generator, nz: Nuisance, kind: str) -> Anatomy:
    """Homogeneous parenchyma (fully developed speckle) under a body wall, holding a rounded region of the same
    mean echogenicity whose scatterers are 'fine' (the same tissue), 'sparse' or 'clustered'. Marks the region
    unless it is of the surrounding tissue."""
    wall, _ = ph.body_wall(pr, nz.depth_cm, (0.2, 0.8))
    echo, margin = pr.uniform(0.7, 1.4), ph.irregular(pr, 3, 0.12)
    at = nz.placement()
    radius = 1.8 * at.radius

    def paint(cv: Canvas, ir: Generator) -> None:
        cv.paint(ph.layer(cv.u, 0.1, 2), np.float32(echo))
        region = ph.ellipse(cv, at.u, at.v, radius, radius * 1.2, 0, 0.01, margin)
        cv.echo *= 1 + region * (ph.scatterers(cv, ir, kind) - 1)
        wall(cv, ir)
        if kind != "fine":
            cv.mark("region", region)

    return Anatomy("parenchyma", paint)


def organ_scene(pr: Generator, nz: Nuisance, organ: str) -> Anatomy:
    """One organ's standard view, its main structure at the image's placement (anywhere in the fan), so that
    where the dark and bright parts of a view lie does not tell the organ. The placement is an image depth, not
    a canvas one: a deep structure under a large zoom stays in view (the liver's diaphragm, the kidney, the
    muscle's bone), instead of leaving a view with no sign of its organ."""
    at = nz.placement_in_view()
    if organ == "kidney":
        view = ph.kidney(pr, nz.depth_cm, replace(at, radius=0.2))  # radius 0.2: the patient's own size
    else:
        view = ph.ORGANS[organ](pr, nz.depth_cm, at)
    # in every view: vessels and cysts of any size (so the area of fluid, which the display's histogram matching
    # turns into a brighter rest, tells no organ) and a tissue texture
    fluid = [
        (pr.uniform(0.2, 0.9), pr.uniform(-0.45, 0.45), pr.uniform(0.03, 0.11), pr.uniform(0.05, 0.16))
        for _ in range(pr.integers(0, 4))
    ]
    grain = ((8, 8), (14, 14), (20, 6), (40, 4))[pr.integers(4)], pr.uniform(0.2, 0.8)

    def fluid_and_texture(cv: Canvas, ir: Generator) -> None:
        for cu, cvv, ru, rv in fluid:
            cv.paint(ph.ellipse(cv, cu, cvv, ru, rv, 0, 0.01), ph.ANECHOIC, 0.05)
        cv.echo *= cv.texture(ir, *grain)

    return ph.overlay(view, fluid_and_texture)


def segment_scene(pr: Generator, nz: Nuisance, _: str) -> Anatomy:
    """Hepatorenal view (liver, kidney), half the patients with a focal liver lesion, as a class-index mask."""
    at = nz.placement()
    anatomy = ph.kidney(pr, nz.depth_cm, Placement(0.6, 0.4 * at.v, at.radius), liver_echo=pr.uniform(0.9, 1.6))
    les = (
        ph.lesion(pr, ("benign", "malignant")[pr.integers(2)], Placement(0.3, -at.v, 0.6 * at.radius))
        if pr.random() < 0.5
        else None
    )
    return ph.overlay(anatomy, les)


SCENES: dict[str, Callable[[Generator, Nuisance, str], Anatomy]] = {
    "synthus_lesion": lesion_scene,
    "synthus_organ": organ_scene,
    "synthus_fatty": lambda pr, nz, name: fatty_scene(pr, nz, name == "fatty"),
    "synthus_lung": lung_scene,
    "synthus_texture": texture_scene,
    "synthus_segment": segment_scene,
}


def auto_gain(image: np.ndarray, mask: np.ndarray, nz: Nuisance) -> np.ndarray:
    """The display's automatic gain and TGC: in-fan intensity gets the drawn mean (`level`), spread and
    top-to-bottom `slope` around a depth profile smoothed over an eighth of the image, whatever the scene; then
    the in-fan values are histogram-matched onto a normal shape of that level and spread (match_histogram).
    Two finer passes (a profile over 1/32 of the image, then the match again) set every depth's mean to the
    target too, so that where along the depth a class keeps its bright or dark tissue leaves no mean image."""
    dev = image - _depth_profile(image, mask, image.shape[0] / 8)[:, None]
    spread = float(dev[mask].std()) or 1.0
    rows = mask.sum(1)
    top = np.argmax(rows > 0)
    depth = (np.arange(image.shape[0]) - top) / max(image.shape[0] - top, 1) - 0.5
    target = nz.level + nz.slope * depth
    out = np.zeros(image.shape, np.float32)
    out[mask] = match_histogram((target[:, None] + dev * (nz.spread / spread))[mask], nz.level, nz.spread)
    for _ in range(2):
        flat = out - (_depth_profile(out, mask, image.shape[0] / 32) - target)[:, None]
        out[mask] = match_histogram(flat[mask], nz.level, nz.spread)
    return out


def _depth_profile(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """In-fan mean intensity per image row, smoothed over sigma rows (rows weighted by their in-fan width)."""
    total = gaussian_filter1d((image * mask).sum(1, dtype=np.float64), sigma, mode="nearest")
    return total / np.maximum(gaussian_filter1d(mask.sum(1).astype(np.float64), sigma, mode="nearest"), 1e-9)


def match_histogram(values: np.ndarray, level: float, spread: float) -> np.ndarray:
    """A monotone remap of in-fan values onto a fixed-shape reference: the normal distribution's quantiles,
    scaled to mean `level` and standard deviation `spread` and clipped to [0, 1]. Ranks come from a stable
    argsort, so ties break by pixel order. The brightness order and every spatial structure survive, but the
    first-order distribution depends only on the pixel count and the drawn level and spread, never the scene."""
    n = values.size
    z = ndtri((np.arange(n) + 0.5) / n)
    z = (z - z.mean()) / (z.std() or 1.0)
    out = np.empty(n, np.float32)
    out[np.argsort(values, kind="stable")] = np.clip(level + spread * z, 0, 1)
    return out


def _code(task: str) -> int:
    return zlib.crc32(task.encode())


@dataclass(frozen=True)
class Item:
    """Where one image sits in a task: its index, virtual patient and class (-1 when unlabelled)."""

    task: str
    index: int
    patient: int
    label: int


def classes(task: str) -> tuple[str, ...]:
    """Class names of a labelled task; a segmentation task has one unnamed scene."""
    return TASKS.get(task, ("scene",))


def items(task: str, n: int) -> list[Item]:
    """The n images of a task: several per virtual patient; one class per patient, except the organ task
    where each patient is scanned at every organ."""
    if task == "synthus_organ":
        k = len(TASKS[task])
        return [Item(task, i, i // k, i % k) for i in range(n)]
    if task not in TASKS:  # the corpus and segmentation tasks: no image label
        return [Item(task, i, i // IMAGES_PER_PATIENT, -1) for i in range(n)]
    k = len(TASKS[task])
    return [Item(task, i, i // IMAGES_PER_PATIENT, (i // IMAGES_PER_PATIENT) % k) for i in range(n)]


def example(task: str, label: int, rank: int) -> Item:
    """The first image of the rank-th patient of a class, as items() numbers them."""
    k = len(classes(task))
    if task == "synthus_organ":
        return Item(task, rank * k + label, rank, label)
    patient = rank * k + max(label, 0)
    return Item(task, patient * IMAGES_PER_PATIENT, patient, label)


def image_rng(item: Item, seed: int) -> Generator:
    """The per-image generator: nuisances first, then speckle. It never sees the label."""
    return np.random.default_rng([seed, _code(item.task), 1, item.index])


def corpus_scene(item: Item, seed: int) -> tuple[str, int]:
    """The task scene and class a corpus patient is drawn from."""
    pick = np.random.default_rng([seed, _code(item.task), 2, item.patient])
    task = list(SCENES)[pick.integers(len(SCENES))]
    return task, int(pick.integers(len(classes(task)))) if task in TASKS else -1


def render(item: Item, seed: int, img_size: int) -> tuple[Frame, dict]:
    """Simulate one image of a task; returns the frame (label = the task's class-index mask, if any) and its
    record metadata: the host organ and every nuisance."""
    task, label = item.task, item.label
    if task == CORPUS:  # any task's scene, per patient
        task, label = corpus_scene(item, seed)
    pr = np.random.default_rng([seed, _code(item.task), 0, item.patient, max(label, 0)])
    ir = image_rng(item, seed)
    nz = draw_nuisance(ir, task)
    anatomy = SCENES[task](pr, nz, classes(task)[label] if label >= 0 else "")
    mask_classes = (
        SEGMENTATION[item.task][1][1:]
        if item.task in SEGMENTATION
        else ((MASKS[item.task],) if item.task in MASKS else ())
    )

    def scene(grid: BeamGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        cv = Canvas(grid, nz.depth_cm / 100, nz.shift, nz.zoom, nz.flip, mask_classes)
        anatomy.paint(cv, ir)
        return cv.echo, cv.atten, cv.label

    frame = simulate(scene, nz.scan(), ir, img_size)
    frame = Frame(auto_gain(frame.image, frame.mask, nz), frame.mask, frame.label, frame.envelope, frame.grid)
    nuisance = asdict(nz) | {"fan_area": round(float(frame.mask.mean()), 4)}
    return frame, {"organ": anatomy.organ, "probe": nz.probe, "nuisance": nuisance}
