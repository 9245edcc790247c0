"""The probe against scikit-learn's LogisticRegression on the same fixed features and splits.

For each feature set x task: test macro-F1 of the harness's probe presets (5 seeds, selection on validation only)
and of LogisticRegression on standardised features with C in {1e-3, 1e-2, 0.1, 1, 10} chosen on the same
validation split (lbfgs, max_iter 5000). --ablate adds the paper preset with one change at a time, to find where
it falls short. Feature sets: encoders on the SynthUS tasks of --data-root (make them with
`usjepa simulate --out DIR --img-size 64 --n-per-task 400 --corpus 0`), and Gaussian classes.

  python benchmarks/probe_reference.py --data-root DIR [--encoders pixels:8,effnet-lite0:112,random-vit] [--ablate]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from usjepa import encoders
from usjepa.bench.cache import Cache
from usjepa.bench.features import task_features
from usjepa.bench.grid import PRESETS, ProbeGrid, fit_grid, select
from usjepa.bench.probe import Head, scores
from usjepa.bench.tasks import SYNTHUS_TASKS, load_task

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _probe(g: ProbeGrid, **changes) -> ProbeGrid:
    return dataclasses.replace(g, probe=dataclasses.replace(g.probe, **changes))


ABLATIONS = {  # the paper preset with one change each, then the grid's two changes together
    "no early stop (best val epoch kept)": lambda g: _probe(g, patience=g.probe.max_epochs),
    "last epoch kept": lambda g: _probe(g, early_stopping=False),
    "500 epochs": lambda g: _probe(g, max_epochs=500),
    "wd 1e-2": lambda g: _probe(g, weight_decay=1e-2),
    "lr 1e-2": lambda g: dataclasses.replace(g, lrs=(1e-2,)),
    "lr grid": lambda g: dataclasses.replace(g, lrs=PRESETS["grid"].lrs),
    "C grid": lambda g: dataclasses.replace(g, cs=PRESETS["grid"].cs),
    "lr x C grid": lambda g: dataclasses.replace(g, lrs=PRESETS["grid"].lrs, cs=PRESETS["grid"].cs),
    "C grid, last epoch": lambda g: _probe(dataclasses.replace(g, cs=PRESETS["grid"].cs), early_stopping=False),
}


def sklearn_reference(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> tuple[float, float]:
    """(test macro-F1, chosen C) of LogisticRegression on standardised features, C chosen on validation."""
    scaler = StandardScaler().fit(x["train"])
    xs = {k: scaler.transform(v) for k, v in x.items()}
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=5000).fit(xs["train"], y["train"])
        val = f1_score(y["val"], clf.predict(xs["val"]), average="macro")
        if best is None or val > best[0]:
            best = (val, c, f1_score(y["test"], clf.predict(xs["test"]), average="macro"))
    return best[2], best[1]


def probe_score(
    x: dict[str, dict[str, torch.Tensor]], y: dict[str, np.ndarray], n_classes: int, grid: ProbeGrid, seeds: int = 5
) -> float:
    """Mean test macro-F1 over seeds of the grid's validation-selected heads; x: pooling -> split -> features."""
    pools = grid.poolings_for(tuple(x), next(iter(x)))
    probes = fit_grid(
        {p: x[p]["train"] for p in pools},
        torch.from_numpy(y["train"]),
        {p: x[p]["val"] for p in pools},
        torch.from_numpy(y["val"]),
        n_classes,
        [Head(s) for s in range(seeds)],
        grid,
    )
    proba = probes.proba({p: x[p]["test"] for p in pools}, select(probes))
    return float(np.mean([s["macro_f1"] for s in scores(y["test"], proba.numpy(), n_classes)]))


def random_vit(folder: Path) -> str:
    """The tiny demo's student architecture (6-block ViT-Tiny, 8-px patches, 64 px, 1 channel), randomly initialised."""
    kwargs = {"img_size": 64, "patch_size": 8, "in_chans": 1, "num_classes": 0, "depth": 6}
    model = timm.create_model("vit_tiny_patch16_224", **kwargs)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    card = {
        "arch": "vit_tiny_patch16_224",
        "timm_kwargs": kwargs,
        "img_size": 64,
        "patch_size": 8,
        "in_chans": 1,
        "mean": [0.5],
        "std": [0.5],
        "method": "random",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return f"random:{folder}"


def encoder_features(spec: str, data_root: str, cache: Cache, poolings: tuple[str, ...]):
    enc = encoders.load(spec)
    for name in SYNTHUS_TASKS:
        task = load_task(name, data_root)
        pools = list(dict.fromkeys([enc.pooling, *(p for p in poolings if p in enc.poolings)]))  # its own first
        x = {p: {s: task_features(cache, enc, task, s, p) for s in ("train", "val", "test")} for p in pools}
        yield name, x, {s: task.labels(s) for s in ("train", "val", "test")}, task.n_classes


def gaussian_features(n: int, dim: int, classes: int, sep: float, seed: int):
    """Overlapping Gaussian classes, a few informative directions among noise ones."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * sep * (torch.rand(dim, generator=g) < 0.2)
    x, y = {}, {}
    for split, size in (("train", n), ("val", max(30, n // 8)), ("test", n)):
        y[split] = torch.randint(0, classes, (size,), generator=g).numpy()
        x[split] = centres[y[split]] + torch.randn(size, dim, generator=g)
    return {"gauss": x}, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", help="folder with the synthus_* task folders")
    p.add_argument("--encoders", default="pixels:8,effnet-lite0:112,random-vit")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "usjepa_probe_reference"))
    p.add_argument("--ablate", action="store_true", help="also the paper preset with one change at a time")
    p.add_argument(
        "--poolings",
        action="store_true",
        help="let the grid choose poolings too (the reference check "
        "compares on one fixed feature set: the first pooling)",
    )
    a = p.parse_args()
    cache = Cache(a.cache)
    presets = {"paper": PRESETS["paper"], "grid": PRESETS["grid"]}
    if a.ablate:
        presets |= {f"paper, {k}": f(PRESETS["paper"]) for k, f in ABLATIONS.items()}
    sets = []
    for spec in a.encoders.split(",") if a.data_root else []:
        if spec == "random-vit":
            folder = Path(a.cache) / "random_vit"
            folder.mkdir(parents=True, exist_ok=True)
            spec = random_vit(folder)
        for name, x, y, c in encoder_features(spec, a.data_root, cache, PRESETS["grid"].poolings if a.poolings else ()):
            sets.append((f"{spec.split(':')[0] if 'random' in spec else spec} / {name}", x, y, c))
    for i, (n, dim, classes, sep) in enumerate(((300, 64, 3, 0.6), (600, 192, 4, 0.4), (200, 32, 2, 0.5))):
        x, y = gaussian_features(n, dim, classes, sep, i)
        sets.append((f"gaussian {n}x{dim}, {classes} classes", x, y, classes))
    print("| features / task | sklearn LR (C) | " + " | ".join(presets) + " |")
    print("|---" * (2 + len(presets)) + "|")
    for label, x, y, c in sets:
        default = next(iter(x))  # the first pooling: the encoder's own or the grid's first
        ref, best_c = sklearn_reference({s: x[default][s].numpy() for s in x[default]}, y)
        cells = [
            100 * probe_score(x, y, c, g if a.poolings else dataclasses.replace(g, poolings=()))
            for g in presets.values()
        ]
        print(
            f"| {label} | {100 * ref:.1f} ({best_c:g}) | "
            + " | ".join(f"{v:.1f} ({v - 100 * ref:+.1f})" for v in cells)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
