import numpy as np
import pytest
from scipy.spatial.distance import cdist, directed_hausdorff

from usjepa.bench.segmetrics import boundary, dice_iou, hausdorff, image_scores, summarise


def _reference(pred, gt, region, c):
    a, b = (pred == c) & region, (gt == c) & region
    inter = np.logical_and(a, b).sum()
    return 2 * inter / (a.sum() + b.sum()), inter / np.logical_or(a, b).sum()


def test_dice_iou_match_numpy_reference_inside_region():
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 3, (20, 24)), rng.integers(0, 3, (20, 24))
    region = np.zeros((20, 24), bool)
    region[2:18, 3:20] = True
    dice, iou = dice_iou(pred, gt, region, 4)
    for c in range(3):
        assert (dice[c], iou[c]) == pytest.approx(_reference(pred, gt, region, c))
    assert np.isnan(dice[3]) and np.isnan(iou[3])  # in neither map: no score
    pred_out = pred.copy()
    pred_out[~region] = 2  # outside the scan region: ignored
    assert np.allclose(dice_iou(pred_out, gt, region, 4)[0][:3], dice[:3])


def test_hausdorff_100_equals_scipy_and_95_equals_hand_computation():
    a, b = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    a[5:20, 5:25] = True
    b[8:30, 10:22] = True
    b[30:33, 10:12] = True
    pa, pb = np.argwhere(boundary(a)), np.argwhere(boundary(b))
    scipy_hd = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hausdorff(a, b, 100) == pytest.approx(scipy_hd)
    d = cdist(pa, pb)
    hand = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
    assert hausdorff(a, b) == pytest.approx(hand)
    assert hausdorff(a, a) == 0.0
    assert np.isnan(hausdorff(a, np.zeros_like(a)))


def test_summary_means_foreground_classes_and_counts_undefined_hd():
    gt = np.zeros((16, 16), int)
    gt[4:10, 4:10] = 1
    region = np.ones_like(gt, bool)
    perfect = image_scores(gt, gt, region, 3)
    missed = image_scores(np.zeros_like(gt), gt, region, 3)
    s = summarise([perfect, missed], ["bg", "a", "b"])
    assert s["dice_per_class"]["a"] == pytest.approx(0.5) and s["dice_per_class"]["b"] is None
    assert s["mean_dice"] == pytest.approx(0.5)
    assert s["image_mean_dice"] == [1.0, 0.0]
    assert s["hd95_undefined"] == 1 and s["mean_hd95"] == 0.0
