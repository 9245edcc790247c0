"""Test-set uncertainty of macro-F1: stratified bootstrap CIs, paired permutation tests, Holm's correction.

Everything works from per-image test predictions ``pred [S, N]`` (S probe seeds, N test images) and labels
``y [N]``. The statistic is the reported one: macro-F1 averaged over the seeds. A resample reweights the test
images (each image's count in the resample), so the confusion matrices of every seed under every resample are one
matrix product of the counts [B, N] with the images' one-hot (seed, label, prediction) cells [N, S * C * C].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
ALPHA = 0.05  # significance level of the paired tests, after Holm's correction
CHUNK = 250  # resamples per matrix product: bounds memory at CHUNK x N floats


@dataclass(frozen=True)
class Comparison:
    """Encoder a minus encoder b on the same test images: macro-F1 difference, its bootstrap CI, and p-values."""

    diff: float
    ci_low: float
    ci_high: float
    p: float  # two-sided paired permutation test
    p_holm: float = float("nan")  # after Holm's correction across the task's pairs


def stratified_counts(y: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[B, N] counts of each image in B bootstrap resamples that keep every class's size (images drawn with
    replacement within their class)."""
    counts = np.zeros((resamples, len(y)), np.float32)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        draws = rng.integers(0, len(idx), (resamples, len(idx))) + len(idx) * np.arange(resamples)[:, None]
        counts[:, idx] = np.bincount(draws.ravel(), minlength=resamples * len(idx)).reshape(resamples, len(idx))
    return counts


def _cells(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot [N, S * C * C]: image i's (seed, true class, predicted class) cell of each seed's confusion matrix."""
    s, n = pred.shape
    cell = (np.arange(s)[:, None] * n_classes + y[None]) * n_classes + pred
    onehot = np.zeros((n, s * n_classes * n_classes), np.float32)
    onehot[np.repeat(np.arange(n)[None], s, 0).ravel(), cell.ravel()] = 1
    return onehot


def _f1_of_confusions(conf: np.ndarray, n_seeds: int, n_classes: int) -> np.ndarray:
    """[B, S * C * C] weighted confusions -> [B] macro-F1 averaged over seeds (classes present in y or pred,
    as sklearn and probe.macro_f1)."""
    conf = conf.reshape(len(conf), n_seeds, n_classes, n_classes)
    tp = np.diagonal(conf, axis1=2, axis2=3)
    support = conf.sum(2) + conf.sum(3)
    f1 = np.where(support > 0, 2 * tp / np.maximum(support, 1e-12), 0).sum(2) / np.maximum((support > 0).sum(2), 1)
    return f1.mean(1)


def macro_f1_draws(y: np.ndarray, pred: np.ndarray, n_classes: int, counts: np.ndarray) -> np.ndarray:
    """Seed-averaged macro-F1 [B] of predictions ``pred [S, N]`` under each resample's image counts [B, N]."""
    cells = _cells(y, pred, n_classes)
    return np.concatenate(
        [_f1_of_confusions(counts[i : i + CHUNK] @ cells, len(pred), n_classes) for i in range(0, len(counts), CHUNK)]
    )


def interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap draws."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    y: np.ndarray, pred: np.ndarray, n_classes: int, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile CI of the seed-averaged test macro-F1, resampling test images within their class."""
    counts = stratified_counts(y, resamples, np.random.default_rng(seed))
    return interval(macro_f1_draws(y, np.atleast_2d(pred), n_classes, counts), level)


def paired_test(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Comparison:
    """Compare two encoders' predictions [S, N] on the same test images.

    The difference's CI comes from a paired stratified bootstrap (both encoders see the same resampled images).
    The p-value is a two-sided paired permutation test: under the null that the encoders are exchangeable on every
    image, swapping an image's predictions (all seeds' together) between a and b leaves the difference's law
    unchanged; p = (1 + #{|d*| >= |d|}) / (1 + B), never zero.
    """
    pred_a, pred_b = np.atleast_2d(pred_a), np.atleast_2d(pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(
            f"paired_test: predictions must match in seeds and images, got {pred_a.shape} vs {pred_b.shape}"
        )
    rng = np.random.default_rng(seed)
    s = len(pred_a)
    cells_a, cells_b = _cells(y, pred_a, n_classes), _cells(y, pred_b, n_classes)
    ones = np.ones((1, len(y)), np.float32)
    diff = float(
        _f1_of_confusions(ones @ cells_a, s, n_classes)[0] - _f1_of_confusions(ones @ cells_b, s, n_classes)[0]
    )
    counts = stratified_counts(y, resamples, rng)
    boot = macro_f1_draws(y, pred_a, n_classes, counts) - macro_f1_draws(y, pred_b, n_classes, counts)
    conf_a, conf_b, swap = ones @ cells_a, ones @ cells_b, cells_b - cells_a
    null = []
    for i in range(0, resamples, CHUNK):
        flips = (rng.random((min(CHUNK, resamples - i), len(y))) < 0.5).astype(np.float32) @ swap
        null.append(_f1_of_confusions(conf_a + flips, s, n_classes) - _f1_of_confusions(conf_b - flips, s, n_classes))
    extreme = int((np.abs(np.concatenate(null)) >= abs(diff) - 1e-12).sum())
    return Comparison(diff, *interval(boot, level), (1 + extreme) / (1 + resamples))


def holm(p: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control across the given tests)."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    scaled = np.minimum(1.0, p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
