"""Training checkpoints, written atomically (usjepa.atomic: temp file, fsync, rename, fsync of the folder)."""
from __future__ import annotations

import errno
from pathlib import Path

import torch

from usjepa.atomic import atomic_write
from usjepa.errors import CheckpointError
from usjepa.weights import load_weights

FORMAT = "usjepa-checkpoint/1"


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
    return ckpt


def find_checkpoint(run_dir: str | Path, which: str = "last") -> Path:
    p = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if not p.is_file():
        raise CheckpointError(f"{p}: no '{which}' checkpoint in run directory {run_dir}")
    return p
