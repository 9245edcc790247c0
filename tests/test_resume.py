"""Fault tolerance of the training loop, in real subprocesses: SIGKILL at random steps, SIGTERM."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from usjepa.checkpoint import load_checkpoint
from usjepa.cli import main
from usjepa.config import load_config
from usjepa.errors import CheckpointError
from usjepa.train import Trainer
from usjepa.weights import file_sha256


def _cmd(folder, run, tiny, *extra):
    return [
        sys.executable,
        "-m",
        "usjepa",
        "pretrain",
        "--config",
        "tiny",
        *tiny,
        "method=ijepa",
        f"out={run}",
        f"data.sources=[{folder}]",
        "data.num_workers=0",
        "optim.batch_size=8",
        "optim.epochs=3",
        "data.val_fraction=0.25",
        "log_every=1",
        "ckpt_every=1",
        "deterministic=true",
        *extra,
    ]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _logged_step(run) -> int:
    try:
        with open(run / "metrics.csv") as f:
            return max((int(r["step"]) for r in csv.DictReader(f)), default=0)
    except (OSError, ValueError, KeyError, TypeError):  # not there yet, or caught mid-write (a torn header or row)
        return 0


def _run_until(cmd, run, step, sig, timeout=120):
    """Start ``cmd``; once it has logged ``step``, send ``sig``; return the exit code."""
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while p.poll() is None and _logged_step(run) < step and time.time() < deadline:
        time.sleep(0.02)
    if p.poll() is None:
        p.send_signal(sig)
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


def test_sigkill_at_random_steps_then_resume_is_bit_exact(tmp_path, image_folder, tiny_overrides):
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    done = subprocess.run(_cmd(image_folder, ref, tiny_overrides), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    total = load_checkpoint(ref / "checkpoints" / "last.pt")["step"]
    kills = sorted(random.Random(7).sample(range(1, total), 5))
    for k in kills:
        rc, out = _run_until(_cmd(image_folder, crash, tiny_overrides), crash, k, signal.SIGKILL)
        assert rc == -signal.SIGKILL, out
    final = subprocess.run(
        _cmd(image_folder, crash, tiny_overrides), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stdout + final.stderr
    a, b = load_checkpoint(ref / "checkpoints" / "last.pt"), load_checkpoint(crash / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == total
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), f"{k} differs after resuming from kills at steps {kills}"
    for k, st in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][k][n]) for n, v in st.items())
    with open(crash / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["loss"]]
    assert steps == sorted(set(steps)), "duplicate rows in metrics.csv after resuming"


def test_sigterm_checkpoints_at_a_step_boundary_and_exits_0(tmp_path, image_folder, tiny_overrides):
    run = tmp_path / "term"
    rc, out = _run_until(_cmd(image_folder, run, tiny_overrides, "ckpt_every=1000"), run, 2, signal.SIGTERM)
    assert rc == 0, out
    assert "preempted: checkpoint written at step" in out
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] >= 2 and not (run / "export").exists()
    assert _logged_step(run) <= ckpt["step"]  # nothing logged beyond the checkpoint


CHANGES = [
    ("method=mae", "method: 'ijepa' -> 'mae'"),
    ("method=vpixel", "method: 'ijepa' -> 'vpixel'"),
    ("model.depth=3", "model.depth: 2 -> 3"),
    ("model.pred_dim=96", "model.pred_dim: 48 -> 96"),
    ("data.img_size=64", "data.img_size: 32 -> 64"),
]


def test_restart_with_another_method_or_model_changes_no_file(tmp_path, image_folder, tiny_overrides):
    """A finished run restarted with another method or model is refused before any file of its folder changes
    (config.yaml, metrics.csv, checkpoints, TensorBoard events, export); the same model still resumes."""
    run = tmp_path / "run"
    argv = _cmd(image_folder, run, tiny_overrides)[3:]  # the pretrain arguments, run in-process
    argv[argv.index("optim.epochs=3")] = "max_steps=2"
    assert main(argv) == 0
    before = {p: file_sha256(p) for p in sorted(run.rglob("*")) if p.is_file()}
    assert {"config.yaml", "metrics.csv", "last.pt", "best.pt", "model.safetensors"} <= {p.name for p in before}
    for change, named in CHANGES:
        with pytest.raises(CheckpointError, match=f"cannot resume this run with another method or model \\({named}\\)"):
            Trainer(load_config("tiny", argv[3:] + [change]))
        assert {p: file_sha256(p) for p in sorted(run.rglob("*")) if p.is_file()} == before, change
    with open(run / "metrics.csv", "a") as f:
        f.write("torn\x00row,,\n3")  # a line cut by a crash
    assert Trainer(load_config("tiny", argv[3:] + ["model.grad_checkpointing=true"])).step > 0  # a memory knob only
    with open(run / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2", "2"]  # torn rows dropped on resume
