"""Training checkpoints, written atomically (usjepa.atomic: temp file, fsync, rename, fsync of the folder)."""

from __future__ import annotations

import errno
from pathlib import Path

import torch

from usjepa.atomic import atomic_write
from usjepa.errors import CheckpointError
from usjepa.weights import load_weights

FORMAT = "usjepa-checkpoint/1"
TRAINING_STATE = ("optimizer", "step", "epoch", "bad_steps", "best_val", "rng")  # what a resume reads besides weights


def save_atomic(obj: dict, path: str | Path) -> None:
    """Write ``obj`` to ``path`` so that a crash or a full disk never leaves a half-written file there."""
    path = Path(path)
    try:
        with atomic_write(path) as f:
            torch.save(obj, f)
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else e.strerror or str(e)
        raise CheckpointError(f"{path}: cannot write checkpoint ({why}); the previous checkpoint is kept") from None


def load_checkpoint(path: str | Path) -> dict:
    ckpt = load_weights(path, expected="a usjepa checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a usjepa checkpoint (expected format '{FORMAT}')")
    missing = [k for k in ("config", "model") if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise CheckpointError(
            f"{path}: usjepa checkpoint without {' or '.join(repr(k) for k in missing)}; "
            f"it was not written by usjepa pretrain"
        )
    return ckpt


def resume_record(config: dict) -> dict:
    """What a resumed run must share with its checkpoint: the method, the model (all but memory knobs) and the
    input it was built for. Read from the config every checkpoint holds."""
    model = {k: v for k, v in config.get("model", {}).items() if k != "grad_checkpointing"}
    data = config.get("data", {})
    return {"method": config.get("method"), "model": model, "data": {k: data.get(k) for k in ("img_size", "in_chans")}}


def check_resume(path: str | Path, config: dict) -> dict | None:
    """The checkpoint at ``path`` (None when there is none), refused if it was written by another method or model.
    Called before anything in the run directory is written."""
    path = Path(path)
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    old, new = resume_record(ckpt.get("config", {})), resume_record(config)
    changed = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in ("method",) if old[k] != new[k]]
    changed += [
        f"{s}.{k}: {old[s].get(k)!r} -> {new[s].get(k)!r}"
        for s in ("model", "data")
        for k in sorted(set(old[s]) | set(new[s]))
        if old[s].get(k) != new[s].get(k)
    ]
    if changed:
        raise CheckpointError(
            f"{path}: cannot resume this run with another method or model ({'; '.join(changed)}); "
            f"nothing was changed: use a new out= directory, or the run's own config.yaml"
        )
    lacking = [k for k in TRAINING_STATE if k not in ckpt]
    if lacking:
        raise CheckpointError(
            f"{path}: holds weights but not the training state {lacking} a resume needs; use it as a "
            "teacher or export it, and train in a new out= directory"
        )
    return ckpt


def find_checkpoint(run_dir: str | Path, which: str = "last") -> Path:
    p = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if not p.is_file():
        raise CheckpointError(f"{p}: no '{which}' checkpoint in run directory {run_dir}")
    return p
