"""The training monitor: rank, kNN and linear-probe columns, the bench's features, collapse warning, selection."""

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from usjepa import encoders
from usjepa.bench.features import extract
from usjepa.bench.tasks import load_task
from usjepa.checkpoint import load_checkpoint
from usjepa.cli import main
from usjepa.config import ConfigError, load_config
from usjepa.modelio import export_run
from usjepa.train import Trainer

from .bench.conftest import write_task


def _args(folder, run, tiny, *extra):
    return [
        *tiny,
        "method=mae",
        f"out={run}",
        f"data.sources=[{folder}]",
        "data.num_workers=0",
        "optim.batch_size=8",
        "optim.epochs=2",
        "data.val_fraction=0.25",
        "log_every=1",
        "monitor.every=2",
        *extra,
    ]


def _rows(run) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def task(tmp_path):
    return write_task(tmp_path / "blobs", n_patients=10, per_patient=6)


def test_cli_run_logs_rank_knn_and_linear_to_csv_and_tensorboard(tmp_path, image_folder, tiny_overrides, task, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                "--config",
                "tiny",
                *_args(
                    image_folder,
                    run,
                    tiny_overrides,
                    f"monitor.tasks=[{task}]",
                    "monitor.collapse_rank=1e9",
                    "monitor.collapse_checks=2",
                    "monitor.max_overhead=0",
                ),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    checks = [r for r in _rows(run) if r["rank"]]  # 16 held-out images: a rank of at most 16
    steps = [int(r["step"]) for r in checks]
    assert steps == sorted(set(steps)) and steps[:3] == [2, 4, 6]  # every 2 steps, once per step
    for r in checks:
        for col in ("rank", "knn_blobs", "linear_blobs", "monitor_s"):
            assert math.isfinite(float(r[col])), (col, r)
        assert 1 <= float(r["rank"]) <= 16 and 0 <= float(r["linear_blobs"]) <= 1 and 0 <= float(r["knn_blobs"]) <= 1
    # the collapse warning names the step at which the rank had been low for 2 checks, and the run goes on
    assert f"step {steps[1]}: warning: the feature effective rank" in out and (run / "export" / "card.json").is_file()
    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"]
    assert {"monitor/rank", "monitor/knn_blobs", "monitor/linear_blobs", "monitor/monitor_s"} <= set(tags)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"]["checks"] == len(checks) and 0 < summary["monitor"]["overhead"] < 1
    assert f"monitor: {len(checks)} checks took" in out


def test_monitor_features_equal_the_benchmarks_for_the_same_checkpoint(tmp_path, image_folder, tiny_overrides, task):
    run = tmp_path / "run"
    trainer = Trainer(
        load_config(
            "tiny",
            _args(image_folder, run, tiny_overrides, f"monitor.tasks=[{task}]", "max_steps=2", "monitor.max_images=20"),
        )
    )
    trainer.fit()  # leaves the last checkpoint's weights in memory
    enc = encoders.load(f"usjepa:{export_run(run, tmp_path / 'export', which='last')}")
    records = load_task(str(task)).splits["train"]
    keep = trainer.monitor.subsets[0]["train"]
    assert len(keep) == 20 and len(records) > 20  # a seeded subset of the larger split
    ours = trainer.monitor.features(trainer.monitor.task_images[0]["train"])
    theirs = extract(enc, [records[i] for i in keep], "mean")
    assert ours.shape == theirs.shape == (20, 192)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_monitoring_leaves_training_unchanged(tmp_path, image_folder, tiny_overrides, task):
    runs = {}
    for name, extra in {
        "on": ["monitor.every=1", f"monitor.tasks=[{task}]", "monitor.max_overhead=0"],
        "off": ["monitor.enabled=false"],
    }.items():
        runs[name] = tmp_path / name
        Trainer(
            load_config("tiny", _args(image_folder, runs[name], tiny_overrides, "deterministic=true", *extra))
        ).fit()
    a, b = (load_checkpoint(runs[n] / "checkpoints" / "last.pt") for n in ("on", "off"))
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert [r["loss"] for r in _rows(runs["on"]) if r["loss"]] == [r["loss"] for r in _rows(runs["off"]) if r["loss"]]
    assert "rank" not in _rows(runs["off"])[0]


def test_best_checkpoint_follows_the_selection_rule_and_the_summary_keeps_both(tmp_path, image_folder, tiny_overrides):
    run = tmp_path / "run"
    args = _args(
        image_folder,
        run,
        tiny_overrides,
        "optim.epochs=3",
        "monitor.select=monitor",
        "monitor.score=rank",
        "monitor.every=0",
    )
    summary = Trainer(load_config("tiny", args)).fit()
    rows = _rows(run)
    at_val = [r for r in rows if r["val_loss"]]
    assert all(r["rank"] for r in at_val)  # a check at every validation
    by_rank = max(at_val, key=lambda r: float(r["rank"]))
    by_loss = min(at_val, key=lambda r: float(r["val_loss"]))
    sel = json.loads((run / "summary.json").read_text())["selection"]
    assert sel == summary["selection"] and sel["rule"] == "monitor"
    assert sel["monitor"]["step"] == int(by_rank["step"]) and sel["monitor"]["score"] == pytest.approx(
        float(by_rank["rank"])
    )
    assert sel["val_loss"]["step"] == int(by_loss["step"])
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == int(by_rank["step"])
    # benchmarks/loss_vs_probe.py reads the same validation points: Spearman(val loss, rank) over the 3 of them
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "loss_vs_probe.py"), "--runs", str(run)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rho = spearmanr([float(r["val_loss"]) for r in at_val], [float(r["rank"]) for r in at_val])[0]
    cell = re.escape(f"{rho:+.2f} (p=")
    assert re.search(rf"^run\s+\|\s+3 \| - \| - \| {cell}", out.stdout, re.MULTILINE), out.stdout


def test_monitor_config_faults_fail_fast(image_folder, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match="monitor.select: 'monitor' with monitor.score='linear' needs monitor.tasks"):
        load_config("tiny", _args(image_folder, tmp_path / "r", tiny_overrides, "monitor.select=monitor"))
    with pytest.raises(ConfigError, match="data.val_fraction is 0"):
        load_config(
            "tiny",
            _args(
                image_folder, tmp_path / "r", tiny_overrides, "data.val_fraction=0", f"monitor.tasks=[{image_folder}]"
            ),
        )
    with pytest.raises(ConfigError, match="monitor.every: must be >= 0"):
        load_config("tiny", _args(image_folder, tmp_path / "r", tiny_overrides, "monitor.every=-1"))
    cfg = load_config("tiny", _args(image_folder, tmp_path / "r", tiny_overrides, f"monitor.tasks=[{tmp_path}/none]"))
    with pytest.raises(Exception, match="none"):
        Trainer(cfg)


def test_report_draws_each_runs_monitor_curves(tmp_path, image_folder, tiny_overrides, task):
    from usjepa.bench.report import monitor_curves, monitor_figure

    run = tmp_path / "run"
    Trainer(load_config("tiny", _args(image_folder, run, tiny_overrides, f"monitor.tasks=[{task}]"))).fit()
    specs = {"salt": f"usjepa:{run / 'export'}", "effnet": "effnet-lite0", "other": f"usjepa:{tmp_path}"}
    results = {"encoders": {name: {"spec": spec} for name, spec in specs.items()}}  # keyed by display name
    curves = monitor_curves(results)
    assert list(curves) == ["salt"]  # only runs that logged the monitor
    rows = curves["salt"]
    assert list(rows) == sorted(rows) and rows[2]["rank"] and rows[2]["linear_blobs"]
    fig = monitor_figure(curves)
    rank_ax, probe_ax = fig.axes
    assert list(rank_ax.lines[0].get_xdata()) == list(rows)
    assert [ln.get_label() for ln in probe_ax.lines] == ["salt linear", "salt knn"]
    assert probe_ax.lines[0].get_ydata()[0] == pytest.approx(100 * float(rows[2]["linear_blobs"]))
