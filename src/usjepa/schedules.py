"""Schedules as pure functions of the optimizer step, so that a resume replays them exactly."""

from __future__ import annotations

import math

from usjepa.config import OptimConfig


def cosine(start: float, end: float, t: float) -> float:
    """Cosine from ``start`` (t = 0) to ``end`` (t = 1)."""
    t = min(max(t, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def learning_rate(o: OptimConfig, step: int, total: int, warmup: int) -> float:
    """Linear warm-up from start_lr to lr, then cosine to final_lr."""
    if step < warmup:
        return o.start_lr + (o.lr - o.start_lr) * step / warmup
    return cosine(o.lr, o.final_lr, (step - warmup) / max(1, total - warmup))


def weight_decay(o: OptimConfig, step: int, total: int) -> float:
    return cosine(o.weight_decay, o.final_weight_decay, step / max(1, total))
