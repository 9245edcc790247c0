"""Physics checks of the B-mode simulator: speckle statistics, PSF-driven speckle size, cysts, fan geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from usjepa.synthus.physics import PROBES, ScanParams, beam_grid, echo_iq, log_compress, simulate

N = 128


def homogeneous(grid):
    return np.ones(grid.x.shape, np.float32), np.full(grid.x.shape, 0.5, np.float32), None


def envelope(p: ScanParams, seed: int, echo=None, atten=None) -> np.ndarray:
    grid = beam_grid(p, N, N)
    e0, a0, _ = homogeneous(grid)
    return np.abs(
        echo_iq(e0 if echo is None else echo, a0 if atten is None else atten, p, grid, np.random.default_rng(seed))
    )


def speckle_sigma(env: np.ndarray, axis: int) -> float:
    """Std (cells) of the Gaussian fitted to the intensity autocovariance along axis: where it falls to e^-1/2."""
    i = env.astype(np.float64) ** 2
    i = i - i.mean(axis=axis, keepdims=True)
    spec = np.abs(np.fft.fft(i, n=2 * i.shape[axis], axis=axis)) ** 2
    ac = np.fft.ifft(spec, axis=axis).real.mean(axis=1 - axis)[:12]
    ac /= ac[0]
    k = int(np.argmax(ac < math.exp(-0.5)))
    return k - 1 + (ac[k - 1] - math.exp(-0.5)) / (ac[k - 1] - ac[k])


def test_homogeneous_envelope_is_rayleigh():
    p = ScanParams(probe="linear", depth=0.04, focus=0.02, width=0.04, f0=5e6)
    env = np.concatenate([envelope(p, s)[10:-10, 10:-10].ravel() for s in range(4)])
    snr = env.mean() / env.std()
    print(f"envelope mean/std = {snr:.3f} (Rayleigh 1.913)")
    assert abs(snr - 1.91) < 0.1


def test_speckle_size_follows_psf():
    """The intensity autocovariance of fully developed speckle has the PSF's Gaussian width."""
    for bw in (0.3, 0.5):
        p = ScanParams(probe="linear", f0=2e6, bandwidth=bw, depth=0.02, focus=0.01, width=0.02, n_active=48)
        env = np.concatenate([envelope(p, s) for s in range(3)], axis=1)
        axial = speckle_sigma(env[8:-8], axis=0)
        expect_ax = p.axial_sigma() / (p.depth / N)
        lateral = speckle_sigma(envelope(p, 7)[N // 2 - 8 : N // 2 + 8].T, axis=0)
        expect_lat = float(p.lateral_sigma(np.array(p.focus))) / (p.width / N)
        print(
            f"bandwidth {bw}: axial {axial:.2f} vs PSF {expect_ax:.2f} cells; lateral {lateral:.2f} vs {expect_lat:.2f}"
        )
        assert axial == pytest.approx(expect_ax, rel=0.15)
        assert lateral == pytest.approx(expect_lat, rel=0.2)


def test_lateral_speckle_grows_away_from_focus():
    p = ScanParams(probe="linear", f0=3e6, depth=0.06, focus=0.03, width=0.03, n_active=64, pitch=3e-4)
    env = np.concatenate([envelope(p, s) for s in range(3)], axis=1)
    rows = {"near": slice(4, 24), "focus": slice(N // 2 - 10, N // 2 + 10), "far": slice(N - 24, N - 4)}
    size = {k: speckle_sigma(env[r].T, axis=0) for k, r in rows.items()}
    print("lateral speckle sigma (cells):", {k: round(v, 2) for k, v in size.items()})
    assert size["focus"] < 0.8 * size["near"] and size["focus"] < 0.8 * size["far"]


def cyst_scene(p: ScanParams):
    grid = beam_grid(p, N, N)
    inside = (grid.x / 0.004) ** 2 + ((grid.z - 0.015) / 0.004) ** 2 < 1
    echo = np.where(inside, 0.0, 1.0).astype(np.float32)  # no scatterers in the fluid
    atten = np.where(inside, 0.0, 0.5).astype(np.float32)  # fluid barely attenuates
    return grid, inside, echo, atten


def test_anechoic_cyst_contrast_gcnr_and_enhancement():
    p = ScanParams(probe="linear", f0=5e6, depth=0.03, focus=0.015, width=0.03)
    grid, inside, echo, atten = cyst_scene(p)
    env = np.concatenate([envelope(p, s, echo, atten) for s in range(3)], axis=1)
    core = np.tile((grid.x / 0.003) ** 2 + ((grid.z - 0.015) / 0.003) ** 2 < 1, 3)
    ring = np.tile(
        ((grid.x / 0.008) ** 2 + ((grid.z - 0.015) / 0.008) ** 2 > 1.3) & (np.abs(grid.z - 0.015) < 0.006), 3
    )
    contrast = 20 * math.log10(env[core].mean() / env[ring].mean())
    edges = np.histogram_bin_edges(20 * np.log10(env[core | ring]), 100)
    h_in = np.histogram(20 * np.log10(env[core]), edges)[0] / core.sum()
    h_out = np.histogram(20 * np.log10(env[ring]), edges)[0] / ring.sum()
    gcnr = 1 - np.minimum(h_in, h_out).sum()
    behind = np.tile((np.abs(grid.x) < 0.002) & (grid.z > 0.021) & (grid.z < 0.027), 3)
    beside = np.tile((np.abs(grid.x) > 0.008) & (grid.z > 0.021) & (grid.z < 0.027), 3)
    enhancement = 20 * math.log10(env[behind].mean() / env[beside].mean())
    print(f"cyst contrast {contrast:.1f} dB, gCNR {gcnr:.3f}, posterior enhancement {enhancement:.1f} dB")
    assert -50 < contrast < -20
    assert 0.9 < gcnr <= 1.0
    assert 0.5 < enhancement < 6


@pytest.mark.parametrize("probe", PROBES)
def test_outside_the_fan_is_zero(probe):
    p = ScanParams(probe=probe, radius=0.002 if probe == "phased" else 0.04, width=0.05)

    def scene(grid):
        echo, atten, _ = homogeneous(grid)
        return echo * 50, atten, np.ones(grid.x.shape, np.uint8)  # saturating echoes, label everywhere

    frame = simulate(scene, p, np.random.default_rng(0), 64)
    assert frame.image.shape == frame.mask.shape == (64, 64)
    assert frame.image[~frame.mask].max() == 0 and frame.label[~frame.mask].max() == 0
    assert (
        frame.image[frame.mask].mean() > 0.6
        and (frame.image[frame.mask] > 0).all()
        and frame.label[frame.mask].min() == 1
    )
    assert 0.3 < frame.mask.mean() < 1.0 if probe != "linear" else frame.mask.mean() > 0.6
    if probe != "linear":  # the top corners of a sector image are outside the fan
        assert not frame.mask[0, 0] and not frame.mask[0, -1]


def test_log_compression_maps_the_dynamic_range():
    p = ScanParams(dynamic_range=60, gain=0)
    mean_env = math.sqrt(math.pi) / 2
    out = log_compress(np.array([mean_env, mean_env * 10 ** (-12 / 20), mean_env * 1e-3, 1e3], np.float32), p)
    assert out.tolist() == pytest.approx([0.45, 0.45 - 12 / 60, 0.0, 1.0], abs=1e-5)


def test_same_seed_same_frame():
    p = ScanParams(probe="convex")
    a = simulate(homogeneous, p, np.random.default_rng(3), 48)
    b = simulate(homogeneous, p, np.random.default_rng(3), 48)
    c = simulate(homogeneous, p, np.random.default_rng(4), 48)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
