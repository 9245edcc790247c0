"""The fan a scanner draws, fitted to boundary evidence: a linear rectangle, or a sector about an apex.

A sector has an apex, two straight edges through it and an inner and outer radius about it; a convex probe's
inner arc is its face, a phased probe's apex sits at or just above its top, which displays often trim flat, so
every fan is also cut by a box (a linear fan is its box alone). Fitting reads only where the evidence ends:
the leftmost and rightmost evidence pixel of every row lie on the fan's edges, except below the deep corners.
RANSAC lines through those give the edges (and, where they cross, the apex); radii and box are robust
quantiles of the evidence's extent, so a dark deep field or an anechoic interior, which empty a part of
the fan's evidence but never widen it, do not shrink the fan unless the whole arc is dark. The shapes are
scored by how far the evidence's extremes lie from their outline; a sector must beat the rectangle clearly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from sklearn.linear_model import LinearRegression, RANSACRegressor

FAR = 1e9  # an unbounded side of a box
ANGLE_BINS = 64  # angular bins over which a sector's radii are read
MIN_SPREAD = math.radians(4)  # edges converging by less than this are parallel: a linear fan
SECTOR_GAIN = 0.8  # a sector is chosen only if its residual is below this fraction of the rectangle's
CONVEX_RATIO = 0.25  # inner / outer radius above which a sector is called convex (its inner arc is the probe face)


@dataclass(frozen=True)
class Fan:
    """A fan in pixel coordinates (x right, y down, pixel centres at integers); ``residual`` in pixels."""

    kind: str  # "linear" | "convex" | "phased"
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (inclusive)
    apex: tuple[float, float] = (0.0, 0.0)  # x, y of a sector's apex
    angles: tuple[float, float] = (
        0.0,
        0.0,
    )  # left and right edge, radians from straight down (+y)
    radii: tuple[float, float] = (0.0, 0.0)  # inner and outer radius about the apex
    residual: float = 0.0

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """HxW bool, True inside the fan."""
        h, w = shape
        y, x = np.mgrid[:h, :w].astype(np.float64)
        x0, y0, x1, y1 = self.box
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        if self.kind == "linear":
            return inside
        dx, dy = x - self.apex[0], y - self.apex[1]
        r, t = np.hypot(dx, dy), np.arctan2(dx, dy)
        return inside & (r >= self.radii[0]) & (r <= self.radii[1]) & (t >= self.angles[0]) & (t <= self.angles[1])

    def scaled(self, k: float) -> Fan:
        """The same fan on an image ``k`` times larger."""

        def c(v: float) -> float:  # pixel-centre coordinates
            return v if abs(v) >= FAR else (v + 0.5) * k - 0.5

        return replace(
            self,
            box=tuple(c(v) for v in self.box),
            apex=(c(self.apex[0]), c(self.apex[1])),
            radii=(self.radii[0] * k, self.radii[1] * k),
            residual=self.residual * k,
        )


def row_extremes(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, leftmost x, rightmost x) of the rows holding evidence."""
    rows = np.nonzero(ev.any(1))[0]
    sub = ev[rows]
    return rows, sub.argmax(1), ev.shape[1] - 1 - sub[:, ::-1].argmax(1)


def side_points(ev: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, x) of the left or right row extremes, less those on the image border (where the image, not the
    fan, ends)."""
    rows, xl, xr = row_extremes(ev)
    x = xl if side == "left" else xr
    keep = (x > 0) & (x < ev.shape[1] - 1)
    return rows[keep], x[keep]


def outline_points(ev: np.ndarray) -> np.ndarray:
    """[N, 2] (x, y) of the evidence's row and column extremes off the image border: where the outline shows."""
    parts = []
    for side in ("left", "right"):
        rows, x = side_points(ev, side)
        parts.append(np.stack([x, rows], 1))
        cols, y = side_points(ev.T, side)
        parts.append(np.stack([cols, y], 1))
    return np.concatenate(parts).astype(np.float64)


def ransac_line(y: np.ndarray, x: np.ndarray, tol: float) -> tuple[float, float] | None:
    """(slope, intercept) of x = slope * y + intercept through most points within ``tol``; None if too few."""
    if len(y) < 10:
        return None
    fit = RANSACRegressor(LinearRegression(), residual_threshold=tol, max_trials=200, random_state=0)
    try:
        fit.fit(y[:, None].astype(np.float64), x.astype(np.float64))
    except ValueError:  # no consensus set
        return None
    if fit.inlier_mask_.sum() < max(10, 0.3 * len(y)):
        return None
    return float(fit.estimator_.coef_[0]), float(fit.estimator_.intercept_)


def fit_linear(ev: np.ndarray, q: float = 0.1) -> Fan:
    """The rectangle within the ``q``..``1-q`` quantiles of the evidence's row and column extremes."""
    _, xl, xr = row_extremes(ev)
    _, yt, yb = row_extremes(ev.T)
    box = (
        float(np.quantile(xl, q)),
        float(np.quantile(yt, q)),
        float(np.quantile(xr, 1 - q)),
        float(np.quantile(yb, 1 - q)),
    )
    return Fan("linear", box)


def fit_sector(ev: np.ndarray, q: float = 0.1, q_top: float = 0.02) -> Fan | None:
    """A sector through RANSAC edges of the row extremes; None when they do not converge downwards.

    The outer radius is the ``1 - q`` quantile of the angular bins' farthest evidence (a dark deep field
    empties some bins); inner radius and top the ``q_top`` quantile of the nearest (a dark near field in a
    few bins must not cut the face).
    """
    tol = max(1.5, 0.004 * max(ev.shape))
    left, right = (
        ransac_line(*side_points(ev, "left"), tol),
        ransac_line(*side_points(ev, "right"), tol),
    )
    if left is None or right is None:
        return None
    (al, bl), (ar, br) = left, right
    tl, tr = math.atan(al), math.atan(ar)
    if tr - tl < MIN_SPREAD:
        return None
    ay = (bl - br) / (ar - al)  # where the edges cross
    apex = (al * ay + bl, ay)
    ys, xs = np.nonzero(ev)
    r, t = np.hypot(xs - apex[0], ys - apex[1]), np.arctan2(xs - apex[0], ys - apex[1])
    keep = (t >= tl) & (t <= tr)
    if keep.sum() < 50:
        return None
    within = np.zeros_like(ev)
    within[ys[keep], xs[keep]] = True
    tops = row_extremes(within.T)[1]  # the top of every column between the edges
    r, t = r[keep], t[keep]
    b = np.minimum(((t - tl) / (tr - tl) * ANGLE_BINS).astype(int), ANGLE_BINS - 1)
    found = np.unique(b)
    r_min = ndi.minimum(r, b, found)
    r_max = ndi.maximum(r, b, found)
    r0, r1 = float(np.quantile(r_min, q_top)), float(np.quantile(r_max, 1 - q))
    top = float(np.quantile(tops, q_top))
    kind = "convex" if r0 > CONVEX_RATIO * r1 else "phased"
    return Fan(kind, (-FAR, top, FAR, FAR), apex, (tl, tr), (r0, r1))


def outline_residual(fan: Fan, ev: np.ndarray, pts: np.ndarray, cap: float) -> float:
    """Mean distance (capped) from the evidence's outline points to the fan's outline, plus any evidence outside."""
    m = fan.mask(ev.shape)
    edge = m ^ ndi.binary_erosion(m)
    if not edge.any():
        return math.inf
    dist = ndi.distance_transform_edt(~edge)
    d = np.minimum(dist[pts[:, 1].astype(int), pts[:, 0].astype(int)], cap)
    outside = (ev & ~m).sum() / max(1, ev.sum())
    return float(d.mean() + cap * outside)


def fit_fan(ev: np.ndarray) -> Fan | None:
    """The best of a rectangle and a sector for one component of evidence (HxW bool), or None if empty."""
    if ev.sum() < 50:
        return None
    pts = outline_points(ev)
    cap = 0.05 * max(ev.shape)
    linear = fit_linear(ev)
    linear = replace(linear, residual=outline_residual(linear, ev, pts, cap))
    sector = fit_sector(ev)
    if sector is not None:
        sector = replace(sector, residual=outline_residual(sector, ev, pts, cap))
        if sector.residual < SECTOR_GAIN * linear.residual:
            return sector
    return linear
