"""Test-set statistics: bootstrap CIs against a plain loop and sklearn, the paired test's error rates, Holm."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from usjepa.bench.stats import (
    bootstrap_ci,
    holm,
    macro_f1_draws,
    paired_test,
    stratified_counts,
)


def _encoder(
    rng: np.random.Generator,
    y: np.ndarray,
    accuracy: float,
    n_classes: int,
    seeds: int = 5,
    knows: np.ndarray | None = None,
) -> np.ndarray:
    """Predictions [seeds, N] of a simulated encoder: its features separate each image with probability ``accuracy``
    (or where ``knows``); each probe seed then flips 5 % of its answers, so seeds agree mostly but not fully. Wrong
    answers are uniform."""
    knows = rng.random(len(y)) < accuracy if knows is None else knows
    wrong = (y + rng.integers(1, n_classes, len(y))) % n_classes
    pred = np.where(knows, y, wrong)[None].repeat(seeds, 0)
    flip = rng.random(pred.shape) < 0.05
    return np.where(flip, (pred + rng.integers(1, n_classes, pred.shape)) % n_classes, pred)


def test_draws_equal_sklearn_on_each_resample_and_keep_class_sizes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    pred = _encoder(rng, y, 0.7, 3, seeds=3)
    counts = stratified_counts(y, 20, rng)
    assert all(
        np.bincount(np.repeat(y, c.astype(int)), minlength=3).tolist() == np.bincount(y).tolist() for c in counts
    )
    draws = macro_f1_draws(y, pred, 3, counts)
    for c, d in zip(counts, draws):
        idx = np.repeat(np.arange(len(y)), c.astype(int))
        assert d == pytest.approx(np.mean([f1_score(y[idx], p[idx], average="macro") for p in pred]), abs=1e-6)


def test_ci_brackets_the_estimate_and_narrows_with_more_test_images():
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 1600):
        y = rng.integers(0, 2, n)
        pred = _encoder(rng, y, 0.8, 2)
        lo, hi = bootstrap_ci(y, pred, 2, resamples=1000)
        est = np.mean([f1_score(y, p, average="macro") for p in pred])
        assert lo < est < hi
        widths.append(hi - lo)
    assert 3 < widths[0] / widths[1] < 5  # ~ sqrt(16)


def test_ci_covers_the_true_score_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    y_big = rng.integers(0, 3, 200_000)  # a "population": its macro-F1 is the truth a test set estimates
    pred_big = _encoder(rng, y_big, 0.75, 3, seeds=1)
    truth = f1_score(y_big, pred_big[0], average="macro")
    hits = 0
    for _ in range(100):
        i = rng.choice(len(y_big), 200, replace=False)
        lo, hi = bootstrap_ci(y_big[i], pred_big[:, i], 3, resamples=1000, seed=int(rng.integers(1 << 30)))
        hits += lo <= truth <= hi
    assert 88 <= hits <= 100


def test_identical_predictions_are_no_difference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 150)
    pred = _encoder(rng, y, 0.6, 4)
    c = paired_test(y, pred, pred.copy(), 4, resamples=500)
    assert c.diff == 0 and c.ci_low == c.ci_high == 0 and c.p == 1.0


def _null_p_values(rng: np.random.Generator, same_features: bool, cases: int = 200) -> np.ndarray:
    p = []
    for _ in range(cases):
        y = rng.integers(0, 3, 200)
        knows = rng.random(len(y)) < 0.75 if same_features else None
        a, b = _encoder(rng, y, 0.75, 3, knows=knows), _encoder(rng, y, 0.75, 3, knows=knows)
        p.append(paired_test(y, a, b, 3, resamples=500, seed=int(rng.integers(1 << 30))).p)
    return np.array(p)


def test_two_identical_encoders_are_not_called_different():
    """200 simulated test sets, one encoder's features probed twice (fresh probe noise) -> p >= 0.05 in >= 95 %."""
    p = _null_p_values(np.random.default_rng(4), same_features=True)
    assert np.mean(p >= 0.05) >= 0.95


def test_the_test_keeps_its_level_for_equally_good_encoders():
    """Two different encoders of the same accuracy (independent errors): an exact level-5 % test rejects a true null
    5 % of the time, so of 200 cases Binomial(200, <= 0.05): at most 5 % + 3 sd rejected, and p about uniform."""
    p = _null_p_values(np.random.default_rng(5), same_features=False)
    assert np.mean(p < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)
    assert 0.35 < np.mean(p >= 0.5) < 0.65  # uniform under the null, not pinned at 1 (a test that never rejects)


def test_a_ten_point_gap_on_500_images_is_significant():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 500)
    a, b = _encoder(rng, y, 0.85, 3), _encoder(rng, y, 0.75, 3)
    c = paired_test(y, a, b, 3, resamples=2000)
    assert c.p < 0.01 and 0.05 < c.diff < 0.15 and 0 < c.ci_low < c.diff < c.ci_high
    assert paired_test(y, b, a, 3, resamples=2000).diff == pytest.approx(-c.diff)


def test_paired_test_needs_matching_predictions():
    with pytest.raises(ValueError, match="must match in seeds and images"):
        paired_test(np.zeros(4, int), np.zeros((2, 4), int), np.zeros((3, 4), int), 2)


def test_holm_matches_the_step_down_rule():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])
    np.testing.assert_allclose(holm([0.3, 0.2]), [0.4, 0.4])  # monotone: never below a smaller p's adjustment
