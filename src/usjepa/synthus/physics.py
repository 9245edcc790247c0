"""Physics-based B-mode simulator: scatterers → depth-varying PSF → attenuation + TGC → envelope → log →
scan conversion.

The simulation runs in the complex baseband (IQ) on a beam-space grid (depth along the beam × scan line).
A Gaussian-modulated pulse at f0, demodulated by f0, is its Gaussian envelope; scatterers at random
sub-cell positions carry uniform phases exp(2i·k0·z), so a circular complex Gaussian amplitude per cell
(variance = local echogenicity) is fully developed speckle. The modulus of the filtered field is the
analytic-signal (Hilbert) envelope of the RF line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import fft, sparse

PROBES = ("linear", "convex", "phased")
DB_NEPER = math.log(10) / 20  # amplitude dB → nepers


@dataclass(frozen=True)
class ScanParams:
    """Acquisition parameters, SI units (attenuation in the clinical dB/(cm·MHz))."""

    probe: str = "convex"  # linear | convex | phased
    f0: float = 3.5e6  # centre frequency [Hz]
    bandwidth: float = 0.6  # fractional −6 dB pulse-echo bandwidth
    c: float = 1540.0  # speed of sound [m/s]
    pitch: float = 3e-4  # element pitch [m]
    n_active: int = 64  # elements in the active aperture
    depth: float = 0.08  # imaging depth [m]
    focus: float = 0.04  # transmit focal depth [m]
    f_number_rx: float = 2.0  # receive F-number of dynamic receive focusing
    rx_elements: int = 128  # largest receive aperture [elements]
    width: float = 0.04  # field of view of a linear probe [m]
    sector: float = 1.1  # sector angle of convex and phased probes [rad]
    radius: float = 0.04  # convex radius of curvature; phased: virtual apex behind the face [m]
    attenuation: float = 0.5  # tissue attenuation that the TGC compensates [dB/(cm·MHz)]
    dynamic_range: float = 60.0  # displayed dynamic range [dB]
    gain: float = 0.0  # overall receive gain [dB]
    noise: float = -45.0  # receiver noise power relative to unit-echogenicity tissue [dB]

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {self.probe!r}")

    @property
    def wavelength(self) -> float:
        return self.c / self.f0

    @property
    def aperture(self) -> float:
        return self.n_active * self.pitch

    def axial_sigma(self) -> float:
        """Std of the Gaussian pulse-echo envelope along depth [m]."""
        sigma_f = self.bandwidth * self.f0 / (2 * math.sqrt(2 * math.log(2)))
        return self.c / (2 * 2 * math.pi * sigma_f)

    def lateral_sigma(self, d: np.ndarray) -> np.ndarray:
        """Std of the two-way lateral profile at depth d [m]: transmit beam × receive beam.

        Transmit: a Gaussian beam focused at `focus` (waist λ·F/2.355 with F = focus / aperture, depth of
        field 7·λ·F²). Receive: dynamic focusing at F-number `f_number_rx` until the aperture reaches
        `rx_elements`, beyond which it widens with depth. The profile is narrowest at the focus.
        """
        fwhm = 2 * math.sqrt(2 * math.log(2))
        f_tx = self.focus / self.aperture
        dof = 7.0 * self.wavelength * f_tx**2
        tx = self.wavelength * f_tx / fwhm * np.sqrt(1 + (2 * (d - self.focus) / dof) ** 2)
        rx = self.wavelength * np.maximum(self.f_number_rx, d / (self.rx_elements * self.pitch)) / fwhm
        return 1 / np.sqrt(tx**-2 + rx**-2)


@dataclass(frozen=True)
class BeamGrid:
    """Beam-space sample positions: Cartesian x (lateral) and z (depth below the probe centre) per sample."""

    x: np.ndarray  # (n_ax, n_lat) [m]
    z: np.ndarray  # (n_ax, n_lat) [m]
    line: np.ndarray  # (n_lat,) scan-line coordinate in [-0.5, 0.5]
    depth: np.ndarray  # (n_ax,) distance along the beam [m]
    spacing: np.ndarray  # (n_ax,) lateral distance between neighbouring lines at that depth [m]


@dataclass(frozen=True)
class Frame:
    """One simulated frame: display image in [0, 1], scan mask, optional label map, pre-log envelope."""

    image: np.ndarray  # (H, W) float32, 0 outside the fan
    mask: np.ndarray  # (H, W) bool scan region
    label: np.ndarray | None  # (H, W) uint8 scan-converted label map
    envelope: np.ndarray  # (n_ax, n_lat) float32 beam-space envelope before log compression
    grid: BeamGrid


# A scene maps the beam grid to echogenicity (linear power), attenuation [dB/(cm·MHz)] and an optional label map.
Scene = Callable[[BeamGrid], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def beam_grid(p: ScanParams, n_ax: int, n_lat: int) -> BeamGrid:
    """Sample centres of n_ax depths × n_lat scan lines for the probe geometry of p."""
    return _beam_grid(_geometry(p), n_ax, n_lat)


def _geometry(p: ScanParams) -> ScanParams:
    """p with the fields that do not shape the grid, PSF or scan conversion reset: the cache key."""
    return replace(p, attenuation=0.0, dynamic_range=1.0, gain=0.0, noise=0.0)


@lru_cache(maxsize=16)
def _beam_grid(p: ScanParams, n_ax: int, n_lat: int) -> BeamGrid:
    d = (np.arange(n_ax) + 0.5) / n_ax * p.depth
    line = (np.arange(n_lat) + 0.5) / n_lat - 0.5
    if p.probe == "linear":
        x = np.broadcast_to(line * p.width, (n_ax, n_lat))
        z = np.broadcast_to(d[:, None], (n_ax, n_lat))
        spacing = np.full(n_ax, p.width / n_lat)
    else:
        theta, r = line * p.sector, p.radius + d
        x = r[:, None] * np.sin(theta)
        z = r[:, None] * np.cos(theta) - p.radius
        spacing = r * p.sector / n_lat
    grid = BeamGrid(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(z, np.float32), line, d, spacing)
    for a in (grid.x, grid.z, grid.line, grid.depth, grid.spacing):
        a.flags.writeable = False  # shared by every frame of this geometry
    return grid


def _gaussian_transfer(sigma: np.ndarray, n: int) -> np.ndarray:
    """Unit-energy Gaussian transfer functions, one row per sigma (cells), padded against wrap-around."""
    size = fft.next_fast_len(n + math.ceil(3 * float(np.max(sigma))) + 1)
    f = fft.fftfreq(size)
    h = np.exp(-2 * math.pi**2 * np.multiply.outer(sigma, f) ** 2)
    h /= np.sqrt(np.mean(h * h, axis=1, keepdims=True))  # unit energy: speckle power = echogenicity
    return h.astype(np.float32)


@lru_cache(maxsize=64)
def _psf_transfer(p: ScanParams, n_ax: int, n_lat: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth-varying lateral transfer (n_ax, L) and axial transfer (L', 1) of the PSF on the beam grid."""
    grid = _beam_grid(p, n_ax, n_lat)
    lateral = np.clip(p.lateral_sigma(grid.depth) / grid.spacing, 0.3, n_lat / 16)
    axial = np.array([max(p.axial_sigma() / (p.depth / n_ax), 0.3)])
    return _gaussian_transfer(lateral, n_lat), _gaussian_transfer(axial, n_ax).T


def _convolve(a: np.ndarray, h: np.ndarray, axis: int) -> np.ndarray:
    n = a.shape[axis]
    out = fft.ifft(fft.fft(a, n=h.shape[axis], axis=axis) * h, axis=axis)
    return out[:, :n] if axis == 1 else out[:n]


def echo_iq(echo: np.ndarray, atten: np.ndarray, p: ScanParams, grid: BeamGrid, rng: np.random.Generator) -> np.ndarray:
    """Complex analytic echo signal on the beam grid, after attenuation and time-gain compensation.

    Receiver noise enters before the TGC, so it rises with depth, and is beamformed like the echoes.
    """
    n_ax, n_lat = echo.shape
    f_mhz, dz_cm = p.f0 / 1e6, p.depth / n_ax * 100
    loss_db = 2 * f_mhz * dz_cm * np.cumsum(atten, axis=0, dtype=np.float32)  # two-way, along each beam
    tgc_db = (2 * f_mhz * p.attenuation * grid.depth * 100).astype(np.float32)[:, None]
    power = np.maximum(echo, 0) * np.exp((2 * DB_NEPER) * (tgc_db - loss_db)) + np.exp(
        (2 * DB_NEPER) * (p.noise + tgc_db)
    )
    z = rng.standard_normal((2, n_ax, n_lat), dtype=np.float32)
    amp = np.sqrt(power * np.float32(0.5), dtype=np.float32)
    field = (z[0] * amp) + 1j * (z[1] * amp)  # circular complex Gaussian scatterers, variance = power
    h_lat, h_ax = _psf_transfer(_geometry(p), n_ax, n_lat)
    return _convolve(_convolve(field, h_lat, axis=1), h_ax, axis=0)


def log_compress(envelope: np.ndarray, p: ScanParams) -> np.ndarray:
    """Envelope → display values in [0, 1]; unit-echogenicity tissue sits at 45 % of the dynamic range."""
    ref_db = 20 * math.log10(math.sqrt(math.pi) / 2) - 0.45 * p.dynamic_range  # Rayleigh mean of unit power
    db = 20 * np.log10(envelope + np.float32(1e-12)) + np.float32(p.gain - ref_db)
    return np.clip(db * np.float32(1 / p.dynamic_range), 0, 1)


@lru_cache(maxsize=64)
def _scan_map(p: ScanParams, n: int, k: int) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Scan conversion of an n×n beam grid to an (n/k)² image: bilinear weights box-filtered by k, as one
    sparse matrix; the fan mask; and the nearest beam sample of each pixel (-1 outside), for label maps.

    The fan's bounding box is scaled isotropically to fit, top aligned and centred laterally.
    """
    if p.probe == "linear":
        half_w, z_min = p.width / 2, 0.0
    else:
        half_w = (p.radius + p.depth) * math.sin(p.sector / 2)
        z_min = -p.radius * (1 - math.cos(p.sector / 2))
    scale = max(2 * half_w, p.depth - z_min) / n
    c = (np.arange(n) + 0.5) * scale
    x, z = (c - n * scale / 2)[None, :], (c + z_min)[:, None]
    if p.probe == "linear":
        d, lat = np.broadcast_to(z, (n, n)), np.broadcast_to(x / p.width, (n, n))
    else:
        d, lat = np.hypot(x, z + p.radius) - p.radius, np.arctan2(x, z + p.radius) / p.sector
    fi, fj = d / p.depth * n - 0.5, (lat + 0.5) * n - 0.5
    inside = (d >= 0) & (d <= p.depth) & (np.abs(lat) <= 0.5)
    size = n // k
    mask = inside.reshape(size, k, size, k).mean(axis=(1, 3)) >= 0.5
    i0 = np.clip(np.floor(fi), 0, n - 2).astype(np.int64)
    j0 = np.clip(np.floor(fj), 0, n - 2).astype(np.int64)
    ti, tj = np.clip(fi - i0, 0, 1), np.clip(fj - j0, 0, 1)
    out = (np.arange(n)[:, None] // k) * size + np.arange(n)[None, :] // k  # the output pixel of each sub-pixel
    keep = (inside & mask.repeat(k, 0).repeat(k, 1)).ravel()
    cols, weights = [], []
    for di, dj, w in ((0, 0, (1 - ti) * (1 - tj)), (0, 1, (1 - ti) * tj), (1, 0, ti * (1 - tj)), (1, 1, ti * tj)):
        cols.append(((i0 + di) * n + j0 + dj).ravel()[keep])
        weights.append(w.ravel()[keep] / k**2)
    rows = np.tile(out.ravel()[keep], 4)
    matrix = sparse.csr_matrix(
        (np.concatenate(weights).astype(np.float32), (rows, np.concatenate(cols))), shape=(size * size, n * n)
    )
    ci = np.clip(np.rint(fi), 0, n - 1).astype(np.int64)[k // 2 :: k, k // 2 :: k]
    cj = np.clip(np.rint(fj), 0, n - 1).astype(np.int64)[k // 2 :: k, k // 2 :: k]
    nearest = np.where(mask, ci * n + cj, -1)
    return matrix, mask, nearest


def scan_convert(
    beam: np.ndarray, p: ScanParams, k: int = 1, label: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """n×n beam-space image → (n/k)² Cartesian image (bilinear, box-filtered by k), fan mask, label map (nearest)."""
    n = beam.shape[0]
    fan = ScanParams(probe=p.probe, depth=p.depth, width=p.width, sector=p.sector, radius=p.radius)
    matrix, mask, nearest = _scan_map(fan, n, k)  # keyed on the fan geometry alone
    image = (matrix @ beam.ravel()).reshape(mask.shape).astype(np.float32)
    lab = None if label is None else np.where(nearest >= 0, label.ravel()[nearest], 0).astype(np.uint8)
    return image, mask, lab


def simulate(scene: Scene, p: ScanParams, rng: np.random.Generator, img_size: int) -> Frame:
    """Render one frame of img_size² pixels.

    Small outputs are simulated on a grid of at least 128 samples and box-filtered down, as a scanner
    displays a finely sampled acquisition on a coarse screen.
    """
    k = max(1, math.ceil(128 / img_size))
    grid = beam_grid(p, img_size * k, img_size * k)
    echo, atten, label = scene(grid)
    env = np.abs(echo_iq(echo, atten, p, grid, rng))
    image, mask, lab = scan_convert(log_compress(env, p), p, k, label)
    return Frame(image, mask, lab, env, grid)
