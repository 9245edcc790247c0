"""Batched multi-head probe sweep vs the same probes trained one after another.

The paper's few-shot grid (5 seeds x label fractions 1, 5, 10, 50, 100 %) on fixed features: once as one
``probe.fit`` call with 25 heads, once as 25 ``probe.fit`` calls with one head each -- the same code and
features. Both end in the same weights and epochs (checked). Times are the best of --repeats, interleaved.

  python benchmarks/probe_grid.py [--n-train 600] [--dim 192] [--classes 3] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import torch

from usjepa.bench.probe import Head, fit

FRACTIONS = (0.01, 0.05, 0.1, 0.5, 1.0)


def features(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes: a probe needs tens of epochs, as on real frozen features."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)) * 0.25
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=600)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    xtr, ytr = features(a.n_train, a.dim, a.classes, 1)
    xva, yva = features(max(60, a.n_train // 10), a.dim, a.classes, 2)
    heads = [Head(seed, f) for seed in range(5) for f in FRACTIONS]
    batched_s, sequential_s = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        together = fit(xtr, ytr, xva, yva, a.classes, heads)
        batched_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        alone = [fit(xtr, ytr, xva, yva, a.classes, [h]) for h in heads]
        sequential_s.append(time.perf_counter() - t)
    same = all(p.best_epoch[0] == together.best_epoch[i] and torch.allclose(p.weight[0], together.weight[i], atol=1e-5)
               for i, p in enumerate(alone))
    epochs = together.epochs_run
    print(f"features: {a.n_train} train x {a.dim} dims, {a.classes} classes; {len(heads)} heads "
          f"(5 seeds x fractions {FRACTIONS}); epochs run per head {min(epochs)}-{max(epochs)} "
          f"(sum {sum(epochs)}, max {max(epochs)})")
    print(f"batched (1 fit, 25 heads):    {min(batched_s):.2f} s")
    print(f"sequential (25 fits, 1 head): {min(sequential_s):.2f} s")
    print(f"speed-up: {min(sequential_s) / min(batched_s):.1f}x; identical results: {same}")


if __name__ == "__main__":
    main()
