"""Validation-only linear probe for choosing the demo's recipe (never touches a task's test split).

Each task's train split is cut again (10 %, seed 1) into probe-train and probe-val (early stopping); the probe is
scored on the task's own validation split, clean and under speckle at eps=3 (5 seeds, mean over tasks);
the effective rank is of the probe-train features, as in the bench.

The sweep behind configs/demo_salt.yaml (one point; vary one override at a time: optim.epochs 3/6/10 of 100
steps, optim.lr 1e-4/3e-4, teacher.layer 2/3, optim.warmup_epochs, model.pred_dim, data.img_size with
model.patch_size 48/6 or 64/8, model.depth):

    usjepa simulate --out runs/recipe/synthus --img-size 48 --n-per-task 400 --corpus 3000
    for m in salt ijepa mae; do usjepa pretrain --config demo_salt method=$m out=runs/recipe/$m \
        data.sources=[runs/recipe/synthus/synthus_corpus] data.steps_per_epoch=100 optim.epochs=6; done
    python benchmarks/demo_recipe.py --tasks runs/recipe/synthus --encoders usjepa:runs/recipe/salt/export,\
usjepa:runs/recipe/ijepa/export,usjepa:runs/recipe/mae/export,random:runs/recipe/salt/export,effnet-lite0:112

`--poolings all` scores every pooling an encoder offers (the bench's grid chooses among them on validation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from usjepa.bench.features import effective_rank, extract
from usjepa.bench.probe import Head, fit, scores
from usjepa.bench.tasks import load_task, val_split
from usjepa.encoders import FrozenEncoder, registry
from usjepa.synthus import TASKS


def val_scores(enc: FrozenEncoder, root: Path, pooling: str, seeds: int = 5) -> dict:
    out = {}
    for name in TASKS:
        task = load_task(str(root / name))
        train, early = val_split(task.splits["train"], 0.1, 1)
        feats = {
            k: extract(enc, recs, pooling)
            for k, recs in (("train", train), ("early", early), ("val", task.splits["val"]))
        }
        ys = {
            k: torch.tensor([r.label for r in recs])
            for k, recs in (("train", train), ("early", early), ("val", task.splits["val"]))
        }
        probes = fit(
            feats["train"],
            ys["train"],
            feats["early"],
            ys["early"],
            task.n_classes,
            [Head(seed) for seed in range(seeds)],
        )
        clean = [s["macro_f1"] for s in scores(ys["val"].numpy(), probes.proba(feats["val"]).numpy(), task.n_classes)]
        noisy = extract(enc, task.splits["val"], pooling, ("speckle", 3))
        speck = [s["macro_f1"] for s in scores(ys["val"].numpy(), probes.proba(noisy).numpy(), task.n_classes)]
        out[name] = {
            "f1": 100 * float(np.mean(clean)),
            "speckle3": 100 * float(np.mean(speck)),
            "rank": effective_rank(feats["train"]),
        }
    out["mean"] = {k: float(np.mean([out[t][k] for t in TASKS])) for k in ("f1", "speckle3", "rank")}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", required=True, help="a SynthUS suite folder (holding synthus_lesion/ ...)")
    p.add_argument("--encoders", required=True, help="comma-separated encoder specs")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--poolings", choices=("default", "all"), default="default", help="all: a line per pooling the encoder offers"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    for spec in args.encoders.split(","):
        enc = registry.load(spec)
        for pooling in enc.poolings if args.poolings == "all" else (enc.pooling,):
            r = val_scores(enc, Path(args.tasks), pooling, args.seeds)
            per_task = " ".join(f"{t.removeprefix('synthus_')} {r[t]['f1']:.1f}" for t in TASKS)
            m = r["mean"]
            print(
                f"{spec} ({pooling}): val mean {m['f1']:.1f} ({per_task}); speckle3 {m['speckle3']:.1f}; "
                f"rank {m['rank']:.1f}"
            )
            print(json.dumps({"spec": spec, "pooling": pooling, **r}))


if __name__ == "__main__":
    main()
