"""Is the validation loss a model-selection signal? Spearman correlation, over the checkpoints of one run, between
the validation loss and the training monitor's probe validation macro-F1: for a SALT student from a pretrained
V-Pixel teacher, and for EMA I-JEPA trained the same way (same data, steps, batch, lr and monitor).

Each student validates and checkpoints every k steps (an epoch of k steps) and the monitor probes at every
validation, so each checkpoint has a validation loss and a probe score. The SALT paper reports that SALT's loss
predicts downstream accuracy and EMA-JEPA losses do not; a strongly negative rho (lower loss, higher F1) is what a
useful selection signal shows. Nothing here reads a test split.

    nice -n 10 python benchmarks/loss_vs_probe.py --out runs/loss_vs_probe     # simulate, train, correlate
    python benchmarks/loss_vs_probe.py --runs RUN [RUN ...]                    # correlate finished runs
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from usjepa.config import load_config
from usjepa.demo import SCALES
from usjepa.synthus import CORPUS, write_suite
from usjepa.train import train


def checkpoints(run: Path) -> dict[str, np.ndarray]:
    """Per validation step of ``run``: val loss and the monitor's rank and mean (over tasks) kNN and linear F1."""
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    loss = {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]}
    monitor = {int(r["step"]): r for r in rows if r.get("rank")}
    steps = [s for s in sorted(loss) if s in monitor]
    out = {
        "step": np.array(steps),
        "val_loss": np.array([loss[s] for s in steps]),
        "rank": np.array([float(monitor[s]["rank"]) for s in steps]),
    }
    for probe in ("linear", "knn"):
        cols = [k for k in rows[0] if k.startswith(f"{probe}_")]
        if cols:
            out[probe] = np.array([np.mean([float(monitor[s][c]) for c in cols]) for s in steps])
    return out


def correlate(run: Path) -> dict:
    pts = checkpoints(run)
    out = {
        "run": str(run),
        "checkpoints": len(pts["step"]),
        "steps": pts["step"].tolist(),
        "val_loss": pts["val_loss"].tolist(),
    }
    for key in ("linear", "knn", "rank"):
        if key in pts and len(pts["step"]) >= 3:
            rho, p = spearmanr(pts["val_loss"], pts[key])
            out[key] = {"values": pts[key].tolist(), "spearman": float(rho), "p": float(p)}
    return out


def train_pair(out: Path, args: argparse.Namespace) -> dict[str, Path]:
    """SynthUS (one labelled task for the monitor), a V-Pixel teacher, then SALT and I-JEPA students."""
    task = f"synthus_{args.task}"
    root = args.synthus or out / "synthus"
    folders = {t: root / t for t in (task, CORPUS)}
    if not all((f / "test.json").is_file() for f in folders.values()):
        folders = write_suite(root, args.img_size, args.n_per_task, args.corpus, seed=0, tasks=[task])
    base = [
        *SCALES["tiny"].overrides,
        f"data.sources=[{folders[CORPUS]}]",
        f"data.img_size={args.img_size}",
        f"monitor.tasks=[{folders[task]}]",
        "monitor.every=0",
        "seed=0",
    ]
    teacher = args.teacher or out / "vpixel"
    if not (teacher / "export" / "card.json").is_file():
        train(
            load_config(
                "tiny",
                [
                    *base,
                    "method=vpixel",
                    f"out={teacher}",
                    "data.steps_per_epoch=40",
                    f"optim.epochs={args.teacher_steps // 40}",
                ],
            )
        )
    runs = {}
    for method in ("salt", "ijepa"):
        runs[method] = out / method
        extra = [f"teacher.source={teacher / 'export'}"] if method == "salt" else []
        if not (runs[method] / "export" / "card.json").is_file():
            train(
                load_config(
                    "tiny",
                    [
                        *base,
                        f"method={method}",
                        f"out={runs[method]}",
                        *extra,
                        f"data.steps_per_epoch={args.every}",
                        f"optim.epochs={args.checkpoints}",
                        "optim.warmup_epochs=1",
                    ],
                )
            )
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/loss_vs_probe", help="output folder (re-running resumes)")
    p.add_argument("--runs", nargs="+", type=Path, help="correlate these finished runs instead of training")
    p.add_argument("--checkpoints", type=int, default=10, help="validation points (checkpoints) per student")
    p.add_argument("--every", type=int, default=20, help="steps between checkpoints (k)")
    p.add_argument("--teacher-steps", type=int, default=80)
    p.add_argument("--task", default="organ", help="SynthUS task the monitor probes")
    p.add_argument("--synthus", type=Path, help="an existing SynthUS root to reuse (e.g. runs/demo/synthus)")
    p.add_argument(
        "--teacher", type=Path, help="an existing V-Pixel run to reuse as the teacher (e.g. runs/demo/vpixel)"
    )
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--n-per-task", type=int, default=400)
    p.add_argument("--corpus", type=int, default=3000)
    args = p.parse_args()
    if args.runs:
        runs = {r.name: r for r in args.runs}
        setup = "finished runs"
    else:
        runs = train_pair(Path(args.out), args)
        setup = (
            f"tiny demo recipe (ViT-Tiny/8, 6 blocks, {args.img_size} px, batch 32, lr 1e-4) on a "
            f"{args.corpus}-image SynthUS corpus; students {args.checkpoints} checkpoints x {args.every} steps; "
            f"SALT from the V-Pixel teacher {args.teacher or f'of {args.teacher_steps} steps'}; "
            f"monitor probe on synthus_{args.task} "
            "(train / val)"
        )
    results = {"setup": setup, "runs": {name: correlate(run) for name, run in runs.items()}}
    print(f"setup: {setup}")
    print("run    | checkpoints | Spearman(val loss, linear F1) | (val loss, kNN F1) | (val loss, rank)")
    for name, r in results["runs"].items():
        cells = [f"{r[k]['spearman']:+.2f} (p={r[k]['p']:.2g})" if k in r else "-" for k in ("linear", "knn", "rank")]
        print(f"{name:6s} | {r['checkpoints']:11d} | " + " | ".join(cells))
    if not args.runs:
        (Path(args.out) / "loss_vs_probe.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
