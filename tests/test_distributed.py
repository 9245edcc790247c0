"""A 2-process CPU run (torchrun, gloo) against a 1-process run at the same global batch."""
import csv
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _losses(run):
    with open(run / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]


@pytest.mark.parametrize("method", ["ijepa"])
def test_two_process_loss_curve_matches_one_process(tmp_path, image_folder, tiny_overrides, method):
    args = ["pretrain", "--config", "tiny", *tiny_overrides, f"method={method}", f"data.sources=[{image_folder}]",
            "data.num_workers=0", "optim.batch_size=16", "optim.epochs=3", "data.val_fraction=0.2", "log_every=1",
            "device=cpu", "mask.pad_mode=pad"]  # truncation would depend on each rank's half of the batch
    one = subprocess.run([sys.executable, "-m", "usjepa", *args, f"out={tmp_path / 'one'}"], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "usjepa", *args, f"out={tmp_path / 'two'}"], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) >= 6
    for step, (x, y) in enumerate(zip(a, b), 1):
        # The same samples and masks; only the per-rank token normalisation of the loss differs.
        assert abs(x - y) <= 0.03 * abs(x), f"step {step}: 1 process {x:.5f} vs 2 processes {y:.5f}"
    assert (tmp_path / "two" / "export" / "model.safetensors").is_file()
