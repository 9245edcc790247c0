"""`usjepa prepare DATASET RAW OUT`: the paper's two tasks that the `ultrabench` package has no processor for.

BUSBRA (BUS-BRA, breast) and TN5000 (thyroid) are read from their published raw layouts (see busbra.py and
tn5000.py) and written to ``OUT/<name>_v1.0.1/`` in the UltraBench release layout: ``images/*.png`` (grayscale
uint8), ``masks/scan/*.png`` ({0,1}, estimated as for every ingested frame), ``train.json``, ``validation.json``,
``test.json`` and ``version.txt``. Splits have the paper's sizes, scaled to the number of patients (or images
where a dataset has no patient ids), are stratified by class, keep each patient on one side, and are seeded.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

from usjepa.data.decode import read_image, read_mask, to_gray
from usjepa.data.preprocess import estimate_scan_mask
from usjepa.errors import DataError

DATASETS = {"busbra": "usjepa.data.busbra", "tn5000": "usjepa.data.tn5000"}
SPLITS = ("train", "validation", "test")
VERSION = "1.0.1"


@dataclass
class Item:
    """One labelled image of a raw dataset."""

    image: Path
    stem: str  # output file name without extension
    label: int
    cls: str
    group: str | None = None  # patient id, when the dataset has one
    lesion_mask: Path | None = None
    extra: dict = field(default_factory=dict)  # more fields for the record (e.g. a bounding box)


def apportion(total: int, weights: list[float]) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total`` (largest remainder; ties to the first)."""
    quota = np.asarray(weights, float) * total / max(sum(weights), 1e-12)
    n = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - n), kind="stable")[: total - n.sum()]:
        n[i] += 1
    return n.tolist()


def split_sizes(n: int, paper: tuple[int, int, int]) -> tuple[int, int, int]:
    """The paper's train / val / test sizes, scaled to ``n`` units (exactly the paper's when n is their sum)."""
    return tuple(apportion(n, list(paper)))


def grouped_split(items: list[Item], paper: tuple[int, int, int], seed: int) -> dict[str, list[Item]]:
    """Seeded split of patients (or of images without ids) in the paper's proportions, stratified by class.

    A patient's class is its first image's. Each class's patients are shuffled and dealt out so every split's
    per-class count is the class's share of the split's size (largest remainder, so the sizes are exact).
    """
    groups: dict[str, list[Item]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.group if it.group is not None else f"#{i}", []).append(it)
    by_class: dict[int, list[str]] = {}
    for g, members in groups.items():
        by_class.setdefault(members[0].label, []).append(g)
    classes = sorted(by_class)
    sizes = split_sizes(len(groups), paper)
    per_class = [apportion(s, [len(by_class[c]) for c in classes]) for s in sizes[1:]]  # val, test
    rng = np.random.default_rng(seed)
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for j, c in enumerate(classes):
        order = [by_class[c][k] for k in rng.permutation(len(by_class[c]))]
        n_val, n_test = per_class[0][j], per_class[1][j]
        for split, part in (
            ("test", order[:n_test]),
            ("validation", order[n_test : n_test + n_val]),
            ("train", order[n_test + n_val :]),
        ):
            out[split] += [it for g in part for it in groups[g]]
    return {s: sorted(v, key=lambda it: it.stem) for s, v in out.items()}


def write_dataset(splits: dict[str, list[Item]], out: Path, note: str) -> Path:
    """Write images, scan masks (and lesion masks) and the three split files; returns the dataset folder."""
    for sub in ("images", "masks/scan", "masks/lesion"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for split, items in splits.items():
        records = []
        for it in items:
            if it.stem in seen:
                raise DataError(f"{it.image}: a second image named '{it.stem}'; names must be unique")
            seen.add(it.stem)
            records.append(_write_item(it, out))
        (out / f"{split}.json").write_text(json.dumps(records, indent=1))
    (out / "version.txt").write_text(f"UltraBench Version: {VERSION}\nCreated: {date.today()}\n{note}\n")
    return out


def _write_item(it: Item, out: Path) -> dict:
    gray = to_gray(read_image(it.image))
    rec: dict = {} if it.group is None else {"patient": it.group}
    rec |= {
        "class": it.cls,
        "label": it.label,
        "image": f"images/{it.stem}.png",
        "scan_mask": f"masks/scan/{it.stem}.png",
    }
    Image.fromarray(gray).save(out / rec["image"])
    Image.fromarray(estimate_scan_mask(gray).astype(np.uint8)).save(out / rec["scan_mask"])
    if it.lesion_mask is not None:
        lesion = read_mask(it.lesion_mask)
        if lesion.shape != gray.shape:
            raise DataError(
                f"{it.lesion_mask}: mask is {lesion.shape[1]}x{lesion.shape[0]} but its image {it.image} "
                f"is {gray.shape[1]}x{gray.shape[0]}"
            )
        rec["lesion_mask"] = f"masks/lesion/{it.stem}.png"
        Image.fromarray(lesion.astype(np.uint8)).save(out / rec["lesion_mask"])
    return rec | it.extra


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=sorted(DATASETS), help="which raw dataset RAW holds")
    p.add_argument("raw", metavar="RAW", help="the dataset's folder as published (see `usjepa.data.<dataset>`)")
    p.add_argument("out", metavar="OUT", help="output root; the dataset is written to OUT/<dataset>_v1.0.1/")
    p.add_argument("--seed", type=int, default=42, help="split seed (UltraBench's default, 42)")
    p.add_argument(
        "--per-patient",
        choices=("first", "all"),
        default="first",
        help="busbra: keep each patient's first image (the paper's 1,064) or all 1,875",
    )


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(DATASETS[args.dataset])
    options = {"per_patient": args.per_patient} if args.dataset == "busbra" else {}
    folder = module.prepare(Path(args.raw), Path(args.out) / f"{args.dataset}_v{VERSION}", args.seed, **options)
    sizes = {s: len(json.loads((folder / f"{s}.json").read_text())) for s in SPLITS}
    print(
        f"{args.dataset}: wrote {folder} (train / validation / test = "
        f"{sizes['train']} / {sizes['validation']} / {sizes['test']} images)"
    )
    return 0
