"""Preprocessing on real pydicom-data ultrasound: scan masks, colour removal, grayscale cine frames."""

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from usjepa.data.decode import to_gray
from usjepa.data.preprocess import (
    PreprocessConfig,
    estimate_scan_mask,
    hamming,
    inpaint,
    phash,
    preprocess,
    rescale_percentiles,
    resize_pad,
)
from usjepa.data.sample import Sample
from usjepa.data.sources import open_source


def _first(name: str) -> Sample:
    return open_source(get_testdata_file(name)).load(0)


@pytest.mark.parametrize(
    "name,inside,outside",
    [
        # two-pane ALOKA pelvis: both panes and the bladder in; banner text, footer text, side ticks out
        (
            "gdcm-US-ALOKA-16.dcm",
            [(250, 180), (250, 480), (170, 150), (380, 600)],
            [(10, 300), (20, 560), (440, 100), (465, 600), (145, 10), (300, 15)],
        ),
        # Philips EPIQ echo: the sector in; annotations, caliper line, grey bar, ECG trace, heart rate out
        (
            "JPGLosslessP14SV1_1s_1f_8b.dcm",
            [(400, 500), (300, 400), (550, 600), (200, 520)],
            [(35, 70), (75, 200), (330, 820), (200, 975), (720, 200), (740, 960), (470, 50)],
        ),
    ],
)
def test_scan_mask_covers_image_excludes_text(name, inside, outside):
    s = _first(name)
    m = estimate_scan_mask(to_gray(s.image))
    assert all(m[y, x] for y, x in inside), [(y, x) for y, x in inside if not m[y, x]]
    assert not any(m[y, x] for y, x in outside), [(y, x) for y, x in outside if m[y, x]]


def test_sonosite_cine_gives_grayscale_frames_with_pooled_mask():
    src = open_source(get_testdata_file("color3d_jpeg_baseline.dcm"))
    frames = [src.load(i) for i in range(len(src))]
    mask = estimate_scan_mask(np.stack([to_gray(f.image) for f in frames]))
    assert mask[250, 320] and not mask[20, 40] and not mask[465, 300]  # fan in; "PLA" label, menu bar out
    out = [preprocess(f, PreprocessConfig(size=128), mask) for f in frames]
    assert len(out) == 12 and all(o.image.shape == (128, 128) and o.image.dtype == np.uint8 for o in out)
    assert len({o.image.tobytes() for o in out}) == 12


@pytest.mark.parametrize(
    "name,flag", [("US1_UNCR.dcm", "colour"), ("color-px.dcm", "colour"), ("gdcm-US-ALOKA-16.dcm", "")]
)
def test_colour_doppler_loses_colour(name, flag):
    s = _first(name)
    out = preprocess(s, PreprocessConfig(size=96))
    assert out.image.ndim == 2 and out.image.shape == (96, 96)
    assert out.meta["flagged"] == flag  # power / colour Doppler cover > 5 %: flagged; green markers: in-painted
    assert out.meta["inpainted"] == (flag == "")


def test_small_overlay_inpainted_from_speckle():
    rng = np.random.default_rng(0)
    gray = rng.integers(90, 110, (64, 64)).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, -1)
    rgb[30:34, 30:34] = (255, 0, 0)  # 16 px = 0.4 % of the image
    out = preprocess(
        Sample(rgb, np.ones((64, 64), bool)), PreprocessConfig(size=None, crop=False, percentiles=(0, 100))
    )
    assert out.meta["inpainted"] and not out.meta["flagged"]
    plain = inpaint(to_gray(rgb), np.pad(np.ones((6, 6), bool), ((29, 29), (29, 29))))
    assert 85 <= plain[31, 31] <= 115


def test_rescale_resize_and_hash():
    g = np.arange(100, dtype=np.uint8).reshape(10, 10)
    m = np.zeros((10, 10), bool)
    m[2:8] = True
    r = rescale_percentiles(g, m)
    assert r[0].max() == 0 and r[2, 0] == 0 and r[7, 9] == 255  # 2nd..98th of rows 2-7, zero outside
    img, mask = resize_pad(np.full((20, 40), 7, np.uint8), np.ones((20, 40), bool), 16)
    assert img.shape == (16, 16) and mask[:4].sum() == 0 and mask[4:12].all() and mask[12:].sum() == 0
    a = np.random.default_rng(1).integers(0, 255, (64, 64)).astype(np.uint8)
    assert hamming(phash(a), phash(a)) == 0 and hamming(phash(a), phash(255 - a)) > 20
