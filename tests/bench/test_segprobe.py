import json

import pytest
import torch
import torch.nn.functional as F

from usjepa.bench.run import run_bench
from usjepa.bench.segprobe import IGNORE, SegConfig, fit, score_test

from .test_segtasks import seg_folder


def _linear_task(n: int, w: torch.Tensor, g: torch.Generator):
    """Grids [n, 16, 8, 8] whose masks [n, 32, 32] are argmax of the linear map w, bilinearly upsampled."""
    x = torch.randn(n, 16, 8, 8, generator=g)
    z = F.interpolate(torch.einsum("bdhw,cd->bchw", x, w), size=(32, 32), mode="bilinear", align_corners=False)
    y = z.argmax(1).to(torch.uint8)
    y[:, :2] = IGNORE  # a strip outside the scan region
    return x.half(), y


def test_linear_probe_recovers_linear_masks():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 16, generator=g)
    (xt, yt), (xv, yv), (xs, ys) = (_linear_task(n, w, g) for n in (64, 16, 16))
    probe = fit(xt, yt, xv, yv, 3, seed=0, cfg=SegConfig(max_epochs=40, patience=10))
    s = score_test(probe.predict(xs, 32), ys, ["bg", "a", "b"])
    assert s["mean_dice"] >= 0.95
    assert probe.val_mean_dice >= 0.95 and 0 <= probe.best_epoch < 40


def test_bench_seg_protocol_writes_rows_report_and_overlays(tmp_path):
    folder = seg_folder(tmp_path / "liver_task")
    res = run_bench(
        ["pixels:8"],
        [str(folder)],
        tmp_path / "out",
        protocols=["seg", "seg-multiscale"],
        seeds=2,
        cache=None,
        device="cpu",
    )
    rows = [r for r in res["rows"] if r["protocol"] == "seg"]
    assert len(rows) == 2 and {"dice_per_class", "iou_per_class", "hd95_per_class"} <= set(rows[0])
    base = next(r for r in res["rows"] if r["encoder"] == "all-background")
    assert base["mean_dice"] == 0.0
    assert json.loads((tmp_path / "out/results.json").read_text())["tasks"]["liver_task"]["null_masks"]["test"] == 2
    assert "| liver_task | pixels:8 | seg |" in (tmp_path / "out/leaderboard.md").read_text()
    assert (tmp_path / "out/seg_overlays_liver_task.png").stat().st_size > 1000


def test_seg_and_classification_protocols_do_not_mix(tmp_path):
    from usjepa.errors import ConfigError

    with pytest.raises(ConfigError, match="seg protocols run on segmentation tasks"):
        run_bench(["pixels:8"], [str(tmp_path)], tmp_path / "out", protocols=["seg", "linear"])
