"""Scan masks on every ultrasound DICOM of pydicom-data (points picked by eye on each rendered frame), and
fitted fans on simulated frames whose interior is blacked out (anechoic)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydicom.data import get_testdata_file
from scipy import ndimage as ndi

from usjepa.data.decode import to_gray
from usjepa.data.fan import Fan, fit_fan
from usjepa.data.preprocess import (
    PreprocessConfig,
    estimate_scan_mask,
    preprocess,
    sample_scan_mask,
)
from usjepa.data.scanmask import ScanMask, find_scan_mask
from usjepa.data.sources import open_source
from usjepa.data.usregions import Region, read_regions
from usjepa.synthus.physics import ScanParams, simulate

# (y, x) points in full-size pixels; "outside" are burnt-in graphics or background next to the fan
OB = {  # Philips C5-1 convex probe, amniotic fluid filling the fan (interior grey level 1 on 0)
    "inside": [(400, 460), (480, 460), (300, 250), (300, 680), (430, 250), (110, 460)],
    "outside": [
        (100, 30),
        (75, 40),
        (94, 200),
        (500, 165),
        (25, 400),
        (300, 150),
        (560, 460),
        (150, 785),
        (80, 320),
        (75, 460),
    ],
}  # ... (75, 460): above the probe face's arc
SONOSITE = {  # phased sector with dark sides
    "inside": [(250, 320), (350, 200), (300, 120), (300, 560), (80, 340)],
    "outside": [
        (20, 40),
        (465, 300),
        (40, 380),
        (100, 600),
        (200, 60),
        (420, 320),
        (40, 250),
    ],
}
GE_LINEAR = {  # GE linear probe, power Doppler boxes over a lymph node
    "inside": [(120, 320), (320, 320), (220, 60), (200, 600)],
    "outside": [(30, 50), (368, 300), (450, 150), (465, 500), (60, 300), (400, 320)],
}
ALOKA = {  # two panes side by side
    "inside": [(250, 180), (250, 480), (170, 150), (380, 600), (100, 200), (100, 500)],
    "outside": [
        (10, 300),
        (20, 560),
        (440, 100),
        (465, 600),
        (145, 10),
        (300, 15),
        (70, 45),
    ],
}  # (70, 45): grey bar
CASES = {
    "OBXXXX1A.dcm": OB,
    "OBXXXX1A_2frame.dcm": OB,
    "OBXXXX1A_rle.dcm": OB,
    "OBXXXX1A_rle_2frame.dcm": OB,
    # the same scan cropped to 350 rows (its regions still describe 600: not trusted, the fan is fitted)
    "examples_palette.dcm": {
        "inside": [(300, 460), (250, 300), (110, 460), (340, 650)],
        "outside": [(100, 30), (94, 200), (300, 150), (75, 460), (150, 785), (25, 400)],
    },
    "OBXXXX1A_expb.dcm": OB,  # big-endian, its palette of 8-bit values in 16-bit words
    "OBXXXX1A_expb_2frame.dcm": OB,
    "JPGLosslessP14SV1_1s_1f_8b.dcm": {  # Philips EPIQ S5-1 echo: the deep field fades to black
        "inside": [
            (560, 350),
            (600, 450),
            (550, 600),
            (400, 500),
            (300, 400),
            (200, 520),
            (480, 160),
        ],
        "outside": [
            (35, 70),
            (75, 200),
            (330, 820),
            (200, 975),
            (720, 200),
            (740, 960),
            (470, 50),
            (100, 583),
            (150, 515),
            (560, 100),
        ],
    },  # (150, 515): above the flat-cut top; (560, 100): past the deep arc
    "color3d_jpeg_baseline.dcm": SONOSITE,
    "examples_ybr_color.dcm": {  # the SonoSite cine at half size (its regions still describe 640 x 480)
        "inside": [(125, 160), (175, 100), (150, 60), (150, 280)],
        "outside": [(10, 20), (232, 150), (20, 190), (50, 300), (100, 30), (212, 160)],
    },
    "US1_UNCR.dcm": GE_LINEAR,
    "US1_UNCI.dcm": GE_LINEAR,
    "US1_J2KR.dcm": GE_LINEAR,
    "US1_J2KI.dcm": GE_LINEAR,
    "examples_jpeg2k.dcm": GE_LINEAR,
    "examples_rgb_color.dcm": {
        "inside": [(60, 160), (160, 160), (110, 30)],
        "outside": [(15, 25), (184, 150), (225, 75), (232, 250), (30, 150)],
    },
    "color-pl.dcm": {
        "inside": [
            (60, 130),
            (100, 60),
            (20, 190),
            (110, 200),
        ],  # colour Doppler on a grey background
        "outside": [(10, 10), (110, 10), (10, 245), (60, 252)],
    },
    "color-px.dcm": {
        "inside": [(60, 130), (100, 60), (20, 190), (110, 200)],
        "outside": [(10, 10), (110, 10), (10, 245)],
    },
    # a 60 x 80 crop from inside a colour-Doppler sector: every pixel is scan, there is no outside
    "ExplVR_BigEnd.dcm": {
        "inside": [(2, 2), (2, 77), (30, 40), (57, 2), (57, 77)],
        "outside": [],
    },
    "gdcm-US-ALOKA-16.dcm": ALOKA,
    "gdcm-US-ALOKA-16_big.dcm": ALOKA,
}
SOURCE = {
    "OBXXXX1A.dcm": "dicom",
    "examples_palette.dcm": "fit",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "dicom",
    "examples_ybr_color.dcm": "fit",
    "US1_UNCR.dcm": "fit",
    "color-pl.dcm": "fit",
    "ExplVR_BigEnd.dcm": "frame",
}


def clip_mask(name: str) -> tuple[ScanMask, np.ndarray]:
    """The scan mask of a file, fitted once on all its (sampled) frames, and its first grayscale frame."""
    src = open_source(get_testdata_file(name))
    frames = [src.load(i) for i in range(len(src))]
    gray = np.stack([to_gray(f.image) for f in frames])
    return sample_scan_mask(frames[0], gray if len(frames) > 1 else gray[0]), gray[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_scan_mask_on_every_pydicom_ultrasound(name):
    sm, _ = clip_mask(name)
    inside, outside = CASES[name]["inside"], CASES[name]["outside"]
    assert [p for p in inside if not sm.mask[p]] == [], sm.source
    assert [p for p in outside if sm.mask[p]] == [], sm.source
    if name in SOURCE:
        assert sm.source == SOURCE[name]


def test_obstetric_fan_is_the_whole_anechoic_sector():
    sm, _ = clip_mask("OBXXXX1A.dcm")
    assert sm.kinds == "convex" and 0.37 < sm.mask.mean() < 0.43  # the texture hull alone: 4 %
    assert estimate_scan_mask(to_gray(open_source(get_testdata_file("OBXXXX1A.dcm")).load(0).image)).mean() < 0.06


def test_echo_keeps_deep_field_and_aloka_two_panes():
    echo, _ = clip_mask("JPGLosslessP14SV1_1s_1f_8b.dcm")
    assert echo.kinds == "phased" and echo.mask.mean() > 0.32  # the texture hull: 29 %
    aloka, _ = clip_mask("gdcm-US-ALOKA-16.dcm")
    assert aloka.source == "dicom" and aloka.kinds == "linear+linear"
    (l0, _, l1, _), (r0, _, r1, _) = sorted(f.box for f in aloka.fans)
    assert l1 < r0 and aloka.mask[250, int(l0) + 5 : int(l1)].all() and aloka.mask[250, int(r0) : int(r1) - 5].all()


def test_dicom_regions_read_and_stale_ones_ignored():
    regions = read_regions(get_testdata_file("gdcm-US-ALOKA-16.dcm"))
    assert [r.box for r in regions if r.is_pane] == [
        (32, 24, 335, 415),
        (336, 24, 639, 415),
    ]
    assert [r.is_bar for r in regions] == [False, False, True]
    assert read_regions(get_testdata_file("US1_UNCR.dcm")) == ()
    gray = np.zeros((100, 120), np.uint8)
    gray[20:80, 20:100] = np.random.default_rng(0).integers(20, 200, (60, 80))
    assert find_scan_mask(gray, (Region((0, 0, 119, 99), 1, 1),)).source == "dicom"
    assert find_scan_mask(gray, (Region((0, 0, 239, 199), 1, 1),)).source == "fit"  # drawn for a larger frame


# ---- simulated frames with an anechoic interior ---------------------------------------------------------

GEOMETRY = {
    "linear": {"width": 0.04, "depth": 0.05},
    "convex": {"radius": 0.04, "sector": 1.13, "depth": 0.1},
    "phased": {"radius": 0.002, "sector": 1.4, "depth": 0.12},
}


def on_screen(frame: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame placed on a screen with text and a grey bar beside it, and its mask on that screen."""
    n = frame.shape[0]
    screen, truth = (
        np.zeros((n + 40, n + 120), np.uint8),
        np.zeros((n + 40, n + 120), bool),
    )
    screen[30 : 30 + n, 60 : 60 + n], truth[30 : 30 + n, 60 : 60 + n] = frame, mask
    im = Image.fromarray(screen)
    draw = ImageDraw.Draw(im)
    for i, text in enumerate(["C5-1", "Gen 60", "12cm", "2D"]):
        draw.text((4, 40 + 14 * i), text, fill=230)
    draw.text((70, 4), "SIMULATOR 2026", fill=200)
    draw.rectangle((n + 100, 40, n + 106, 120), fill=255)
    return np.asarray(im), truth


def simulated(probe: str, echo, n: int = 160):
    """The simulator's frame (uint8) and own mask for a scene of echogenicity ``echo(grid)``."""
    p = ScanParams(probe=probe, **GEOMETRY[probe])

    def scene(grid):
        return (
            echo(grid, p).astype(np.float32),
            np.full(grid.x.shape, 0.5, np.float32),
            None,
        )

    fr = simulate(scene, p, np.random.default_rng(0), n)
    return (fr.image * 255).astype(np.uint8), fr.mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("probe", ["linear", "convex", "phased"])
def test_fan_fit_recovers_simulator_mask_when_blacked_out(probe):
    img, mask = simulated(probe, lambda grid, p: np.ones(grid.x.shape))
    img[ndi.binary_erosion(mask, iterations=img.shape[0] // 12)] = 0  # all but a rim of n / 12 px black
    screen, truth = on_screen(img, mask)
    sm = find_scan_mask(screen)
    assert sm.source == "fit" and iou(sm.mask, truth) >= 0.95, (
        sm.kinds,
        iou(sm.mask, truth),
    )
    assert (sm.kinds == "linear") == (probe == "linear")


def anechoic(grid, p):
    """Tissue in the near field (top 10 % of depth) and along the edges (outer 10 % of the lines) only."""
    rim = (np.abs(grid.line)[None, :] > 0.4) | (grid.depth[:, None] < 0.1 * p.depth)
    return np.broadcast_to(rim, grid.x.shape)


@pytest.mark.parametrize("probe", ["linear", "convex", "phased"])
def test_fan_fit_holds_across_an_anechoic_interior(probe):
    """An echo-free interior, simulated: the receiver noise that the TGC lifts shows deep, the near field is cut
    off by a black band; the fan joins them; the texture hull drops the near field, below the 0.95 bar."""
    screen, truth = on_screen(*simulated(probe, anechoic))
    sm = find_scan_mask(screen)
    assert sm.source == "fit" and iou(sm.mask, truth) >= 0.95, (
        sm.kinds,
        iou(sm.mask, truth),
    )
    if probe != "linear":
        assert sm.kinds == probe and iou(estimate_scan_mask(screen), truth) < 0.95


def test_fit_fan_shapes_and_failure():
    yy, xx = np.mgrid[:120, :160]
    sector = Fan("phased", (-1e9, 10, 1e9, 1e9), (80, 0), (-0.6, 0.6), (10, 100)).mask((120, 160))
    fan = fit_fan(sector & ~ndi.binary_erosion(sector, iterations=6))  # the rim alone
    assert fan.kind != "linear" and abs(fan.apex[0] - 80) < 3 and abs(fan.radii[1] - 100) < 3
    assert fit_fan(np.zeros((50, 50), bool)) is None
    box = (xx >= 30) & (xx <= 130) & (yy >= 20) & (yy <= 100)
    assert fit_fan(box).kind == "linear" and fit_fan(box).box == (30, 20, 130, 100)


def test_preprocess_records_mask_source():
    s = open_source(get_testdata_file("OBXXXX1A.dcm")).load(0)
    out = preprocess(s, PreprocessConfig(size=64))
    assert out.mask_source == "dicom" and out.meta["fan"] == "convex" and "us_regions" not in out.meta
    given = np.zeros(s.image.shape[:2], bool)
    given[100:400, 200:600] = True
    s.scan_mask, s.meta["has_mask"] = given, True
    assert preprocess(s, PreprocessConfig(size=64)).mask_source == "given"
