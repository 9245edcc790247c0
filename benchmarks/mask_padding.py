"""Pad or truncate? How per-image multi-block masks are brought to one length per batch, for the SALT step.

`mask.pad_mode=truncate` (I-JEPA's way) cuts every context to the batch's shortest and every target block
to the batch's shortest block of that index, keeping the first patches in raster order. `pad` keeps every
patch and pads, with an attention mask so padding is never attended to. This script prints
  1. at the paper's masks on the 14 x 14 grid (ViT-B/16 or ViT-T/16 at 224): the share of context and
     target patches that truncation throws away, and the share of slots that padding spends on padding;
  2. SALT step img/s for both modes (setup of step_throughput.py: ViT-T/16, predictor 6 x 192, batch 32,
     fp32, 2 threads), same masks for both modes, and the target patches per second each mode puts in the
     loss; with --ijepa-src, interleaved with the official I-JEPA step (the reference of the throughput goal).

  python benchmarks/mask_padding.py [--steps 10] [--ijepa-src /work/peers/ijepa]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from peers import IJepaStep
from step_throughput import (
    BATCH,
    DEPTH,
    DIM,
    IJEPA,
    bench,
    collated,
    engine_step,
    fabricate_teacher,
    table,
    usjepa_config,
)
from usjepa.config import MaskConfig
from usjepa.masking import MaskCollator
from usjepa.methods import build_method


def token_budget(n_batches: int = 200) -> tuple[dict, dict]:
    """(patches per image, shares lost or wasted), over ``n_batches`` batches of per-image masks."""
    collate, rng = MaskCollator(MaskConfig(), 224, 16), np.random.default_rng(0)
    ctx, tgt, ctx_max, ctx_min, tgt_max, tgt_min = [], [], [], [], [], []
    for _ in range(n_batches):
        masks = [collate.sample(rng) for _ in range(BATCH)]
        c = np.array([len(m[0]) for m in masks])
        blocks = np.array([[len(t) for t in m[1]] for m in masks])  # [B, n_targets]
        ctx.append(c.sum())
        tgt.append(blocks.sum())
        ctx_max.append(c.max() * BATCH)
        ctx_min.append(c.min() * BATCH)
        tgt_max.append(blocks.sum(1).max() * BATCH)
        tgt_min.append(blocks.min(0).sum() * BATCH)
    ctx, tgt = sum(ctx), sum(tgt)
    per_image = {
        "context patches / image": ctx / (n_batches * BATCH),
        "target patches / image": tgt / (n_batches * BATCH),
    }
    return per_image, {
        "truncate: context thrown away": 1 - sum(ctx_min) / ctx,
        "truncate: targets thrown away": 1 - sum(tgt_min) / tgt,
        "pad: student slots on padding": 1 - ctx / sum(ctx_max),
        "pad: predictor slots on padding": 1 - (ctx + tgt) / (sum(ctx_max) + sum(tgt_max)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--ijepa-src", metavar="DIR", help="a checkout of facebookresearch/ijepa (52c1ae9)")
    args = p.parse_args()
    torch.set_num_threads(2)

    print("paper masks (1 context 0.85-1, 4 targets 0.075-0.125, aspect 0.75-1.5), 14 x 14 grid, batch 32")
    per_image, shares = token_budget()
    for k, v in per_image.items():
        print(f"  {k:<34}{v:8.1f}")
    for k, v in shares.items():
        print(f"  {k:<34}{v:8.1%}")

    variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = fabricate_teacher(Path(tmp))
        for mode in ("pad", "truncate"):
            cfg = usjepa_config("salt", teacher, (f"mask.pad_mode={mode}",))
            variants[f"salt, {mode}"] = (engine_step(build_method(cfg)), collated(cfg, "multiblock", args.batches))
        kept = {k: sum(int(b["tgt_keep"].sum()) for b in v[1]) / len(v[1]) / BATCH for k, v in variants.items()}
        if args.ijepa_src:  # the goal is set against it
            ijepa = IJepaStep(args.ijepa_src, cfg.mask, DEPTH, DIM)
            variants[IJEPA] = (ijepa, ijepa.batches(args.batches, BATCH))
        ips = bench(variants, args.steps, args.warmup)
    table(f"SALT step, median of {args.steps} steps after {args.warmup} warm-up, interleaved", ips, "salt, pad")
    print(f"\n{'':<36}{'targets/img':>12}{'targets/s':>12}   (target patches in the loss)")
    for k, n in kept.items():
        print(f"{k:<36}{n:12.1f}{n * ips[k][0]:12.0f}")
    if IJEPA in ips:
        print(
            f"\nsalt / {IJEPA}: pad {ips['salt, pad'][0] / ips[IJEPA][0]:.2f}, "
            f"truncate {ips['salt, truncate'][0] / ips[IJEPA][0]:.2f}   (goal >= 1.75)"
        )


if __name__ == "__main__":
    main()
