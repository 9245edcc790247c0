"""The probe grid, as DINOv2's linear evaluation does it: learning rates x poolings, chosen per seed on validation.

Two presets:
- ``paper``: the paper's protocol, one learning rate (1e-3) on the encoder's own pooling.
- ``grid`` (the default): learning rates {1e-3, 1e-2} x L2 strengths C in {1e-3, 1e-2, 0.1, 1, 10} (as
  sklearn's LogisticRegression) x every pooling of ``GRID_POOLINGS`` that the encoder offers (its own pooling
  when it offers none of them): cls, cls+mean and last4 are DINOv2's (n_last_blocks 1 or 4, with or without the
  patch average), mean the pooling of mean-pooled models. Every head trains the full 150 epochs (cosine
  schedule) and keeps its last weights: no early stopping. For each (seed, label fraction) the head with the best
  validation macro-F1 is kept, ties going to the lower validation cross-entropy; test features meet only the
  kept heads. Why these choices: ``benchmarks/probe_reference.py`` (the paper preset falls up to 17 points short
  of sklearn on the tiny demo's features; it keeps an early epoch that a 35-image validation split happened to
  score well, and it has no L2 penalty to choose).

The heads of one pooling train in one batched ``probe.fit`` (features of one width); each pooling is one such fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from usjepa.bench.probe import (
    GRID_LRS,
    PAPER_LRS,
    Head,
    ProbeConfig,
    Probes,
    best_per_key,
    fewshot_subset,
    fit,
)
from usjepa.errors import ConfigError

GRID_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
GRID_POOLINGS = ("cls", "cls+mean", "mean", "last4")


@dataclass(frozen=True)
class ProbeGrid:
    lrs: tuple[float, ...] = GRID_LRS
    cs: tuple[float, ...] = GRID_CS  # inverse L2 strengths, as sklearn's C; (): no penalty
    poolings: tuple[str, ...] = GRID_POOLINGS  # those the encoder offers; () or none offered: its own pooling
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(early_stopping=False))

    def __post_init__(self) -> None:
        if not self.lrs or any(not (math.isfinite(lr) and lr > 0) for lr in self.lrs):
            raise ConfigError(f"--lrs: probe learning rates must be finite and > 0, got {list(self.lrs)}")
        if any(c <= 0 for c in self.cs):
            raise ConfigError(f"grid.cs: inverse L2 strengths must be > 0 (or none: no penalty), got {list(self.cs)}")

    def poolings_for(self, offered: tuple[str, ...], own: str) -> list[str]:
        """The grid's poolings that an encoder offers, or its own pooling."""
        return [p for p in self.poolings if p in offered] or [own]


PRESETS = {"grid": ProbeGrid(), "paper": ProbeGrid(lrs=PAPER_LRS, cs=(), poolings=(), probe=ProbeConfig())}


@dataclass
class GridProbes:
    """Every head of the grid: one batched Probes per pooling, heads listed pooling by pooling."""

    poolings: list[str]
    fits: list[Probes]

    @property
    def heads(self) -> list[tuple[str, Head]]:
        return [(pool, h) for pool, probes in zip(self.poolings, self.fits) for h in probes.heads]

    @property
    def val_f1(self) -> list[float]:
        return [v for probes in self.fits for v in probes.val_f1]

    @property
    def best_epoch(self) -> list[int]:
        return [e for probes in self.fits for e in probes.best_epoch]

    def proba(self, x: dict[str, torch.Tensor], chosen: list[int]) -> torch.Tensor:
        """Class probabilities [len(chosen), N, C] of the chosen heads on features ``x`` (pooling -> [N, D])."""
        out, start = {}, 0
        for pool, probes in zip(self.poolings, self.fits):
            mine = [i - start for i in chosen if start <= i < start + len(probes.heads)]
            if mine:
                p = probes.proba(x[pool])[mine]
                out |= {start + i: row for i, row in zip(mine, p)}
            start += len(probes.heads)
        return torch.stack([out[i] for i in chosen])


def fit_grid(
    x_train: dict[str, torch.Tensor],
    y_train: torch.Tensor,
    x_val: dict[str, torch.Tensor],
    y_val: torch.Tensor,
    n_classes: int,
    heads: list[Head],
    grid: ProbeGrid,
    device: torch.device | str = "cpu",
) -> GridProbes:
    """Train ``heads`` (seeds x fractions; lr and C come from the grid) on every pooling of ``x_train``.

    C becomes the L2 strength 1 / (C n) on the mean cross-entropy, n the head's training subset: the objective of
    sklearn's LogisticRegression(C), whose loss is summed over the n examples."""
    keys = list(dict.fromkeys((h.seed, h.fraction) for h in heads))
    y = y_train.cpu().numpy()
    grid_heads = [
        Head(seed, f, lr, 1 / (c * len(fewshot_subset(y, f, seed))) if c else 0.0)
        for seed, f in keys
        for lr in grid.lrs
        for c in (grid.cs or (0.0,))
    ]
    pools = list(x_train)
    return GridProbes(
        pools, [fit(x_train[p], y_train, x_val[p], y_val, n_classes, grid_heads, grid.probe, device) for p in pools]
    )


def select(probes: GridProbes) -> list[int]:
    """For each (seed, fraction), the best head over poolings x grid points (probe.select's ranking)."""
    return best_per_key(
        [(h.seed, h.fraction) for _, h in probes.heads], probes.val_f1, [v for p in probes.fits for v in p.val_loss]
    )
