"""Segmentation metrics per image, inside the scan region: per-class Dice and IoU, and the 95 % boundary
Hausdorff distance (HD95, pixels) from scipy distance transforms.

Pixels outside the scan region count for neither prediction nor ground truth. A class absent from both
prediction and ground truth of an image has no score there (NaN); the image means skip it. HD95 is NaN
when either side is empty for that class (no boundary to measure), counted by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice_iou(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU [n_classes] of one image's class-index maps, restricted to ``region`` (bool)."""
    p, g = pred[region], gt[region]
    dice, iou = np.full(n_classes, np.nan), np.full(n_classes, np.nan)
    for c in range(n_classes):
        a, b = p == c, g == c
        inter, total = np.sum(a & b), a.sum() + b.sum()
        if total:
            dice[c], iou[c] = 2 * inter / total, inter / (total - inter)
    return dice, iou


def boundary(m: np.ndarray) -> np.ndarray:
    """Pixels of the bool mask ``m`` with a 4-neighbour outside it (the image edge counts as outside)."""
    return m & ~ndimage.binary_erosion(m, border_value=0)


def hausdorff(a: np.ndarray, b: np.ndarray, percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance (pixels) between the boundaries of bool masks ``a`` and ``b``:
    the larger of the two directed percentiles; 100 gives the classic Hausdorff distance. NaN if either is empty."""
    ba, bb = boundary(a), boundary(b)
    if not ba.any() or not bb.any():
        return float("nan")
    to_b = ndimage.distance_transform_edt(~bb)[ba]  # each boundary pixel of a -> nearest boundary pixel of b
    to_a = ndimage.distance_transform_edt(~ba)[bb]
    return float(max(np.percentile(to_b, percentile), np.percentile(to_a, percentile)))


def image_scores(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Per-class dice, iou and hd95 [n_classes] of one image (class 0, background, included)."""
    dice, iou = dice_iou(pred, gt, region, n_classes)
    p, g = np.where(region, pred, -1), np.where(region, gt, -1)
    hd = np.array([hausdorff(p == c, g == c) for c in range(n_classes)])
    return {"dice": dice, "iou": iou, "hd95": hd}


def summarise(per_image: list[dict[str, np.ndarray]], class_names: list[str]) -> dict:
    """Dataset scores: per-class means over images (NaNs skipped), their mean over the foreground classes, and
    each image's mean foreground Dice (1.0 for an image with no foreground in either map), for CIs and overlays."""
    out: dict = {}
    for metric in ("dice", "iou", "hd95"):
        per_class = np.array([_nanmean(col) for col in np.stack([s[metric] for s in per_image]).T])
        out[f"{metric}_per_class"] = {n: _num(v) for n, v in zip(class_names, per_class)}
        out[f"mean_{metric}"] = _num(_nanmean(per_class[1:]))
    fg = np.stack([s["dice"][1:] for s in per_image])
    scored = ~np.isnan(fg)
    img = np.where(scored.any(1), np.nansum(fg, 1) / np.maximum(scored.sum(1), 1), 1.0)
    out["image_mean_dice"] = [float(v) for v in img]
    # a class on one side only: Dice 0, no boundary distance
    out["hd95_undefined"] = int(sum((np.isnan(s["hd95"][1:]) & ~np.isnan(s["dice"][1:])).sum() for s in per_image))
    return out


def _nanmean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
