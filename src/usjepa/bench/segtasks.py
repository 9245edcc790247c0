"""Segmentation tasks: SynthUS's ``synthus_segment`` or any UltraBench-layout folder whose records carry a
``<kind>_mask`` field (class-index PNGs under ``masks/<kind>/``; null where an image has none: counted, skipped).

Classes come from the folder's ``classes.json`` ({"mask": kind, "classes": [names]}, as SynthUS writes it);
without one a mask is binary (0 background, 1 the kind; 255 read as 1, as for scan masks). Every mask is
checked against its image (same size) and its class indices (in range); errors name the file. The validation
split is the release's own or a seeded patient-grouped fraction of ``train_val``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from usjepa.data.decode import read_image
from usjepa.data.ultrabench import Record, find_dataset, load_ultrabench
from usjepa.errors import ConfigError, DataError
from usjepa.synthus.tasks import SEGMENTATION
from usjepa.weights import file_sha256

SPLITS = ("train", "val", "test")


@dataclass
class SegTask:
    name: str
    folder: Path
    kind: str  # the mask field is f"{kind}_mask"
    class_names: list[str]  # index 0 is the background
    splits: dict[str, list[Record]]  # records with a mask; meta["mask"] is its path
    nulls: dict[str, int]  # records per split without a mask (skipped)
    split_hash: str  # every kept record's image, scan-mask and mask bytes

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {s: len(r) for s, r in self.splits.items()}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'NAME_OR_FOLDER' or 'NAME_OR_FOLDER@KIND' (which ``<kind>_mask`` field, when records carry several)."""
    name, _, kind = spec.partition("@")
    return name, kind or None


def load_seg_task(
    spec: str, data_root: str | Path | None = None, val_seed: int = 0, val_fraction: float = 0.1
) -> SegTask:
    name, kind = parse_spec(spec)
    if name in SEGMENTATION:
        if data_root is None:
            raise ConfigError(f"task '{name}' needs --data-root (the folder holding {name}/)")
        folder = find_dataset(data_root, name)
    else:
        folder = Path(name)
        if not folder.is_dir():
            raise DataError(
                f"segmentation task '{name}': not a known task ({', '.join(SEGMENTATION)}) and no "
                f"folder {folder.resolve()}"
            )
    raw = load_ultrabench(folder)
    kind = kind or _kind(folder, raw)
    names = _class_names(folder, kind)
    field = f"{kind}_mask"
    kept, nulls = {}, {}
    for split, recs in raw.items():
        kept[split] = [_with_mask(r, folder, field) for r in recs if r.meta.get(field) is not None]
        nulls[split] = len(recs) - len(kept[split])
    if "validation" in kept:
        splits = {"train": kept["train"], "val": kept["validation"], "test": kept["test"]}
        nulls = {"train": nulls["train"], "val": nulls["validation"], "test": nulls["test"]}
    else:
        splits = dict(zip(("train", "val"), group_split(kept["train_val"], val_fraction, val_seed)), test=kept["test"])
        nulls = {"train_val": nulls["train_val"], "test": nulls["test"]}
    if not splits["train"] or not splits["test"]:
        raise DataError(f"{folder}: no training or no test images with a '{field}'")
    for recs in splits.values():
        for r in recs:
            check_mask(r, len(names))
    label = name if name in SEGMENTATION else folder.name
    return SegTask(label, folder, kind, names, splits, nulls, _split_hash(folder, splits))


def _kind(folder: Path, raw: dict[str, list[Record]]) -> str:
    declared = folder / "classes.json"
    if declared.is_file():
        return _classes_json(declared)["mask"]
    kinds = sorted({k[: -len("_mask")] for recs in raw.values() for r in recs for k in r.meta if k.endswith("_mask")})
    if not kinds:
        raise DataError(f"{folder}: no '<kind>_mask' field in its split files, so no segmentation masks")
    if len(kinds) > 1:
        raise ConfigError(f"{folder}: records carry several masks ({', '.join(kinds)}); name one as FOLDER@KIND")
    return kinds[0]


def _class_names(folder: Path, kind: str) -> list[str]:
    declared = folder / "classes.json"
    if not declared.is_file():
        return ["background", kind]
    spec = _classes_json(declared)
    if spec["mask"] != kind:
        return ["background", kind]  # classes.json describes another mask of the folder
    return list(spec["classes"])


def _classes_json(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    ok = isinstance(spec, dict) and isinstance(spec.get("mask"), str) and isinstance(spec.get("classes"), list)
    if not ok or len(spec["classes"]) < 2:
        raise DataError(f'{path}: expected {{"mask": KIND, "classes": [background, ...]}} with at least 2 classes')
    return spec


def _with_mask(r: Record, folder: Path, field: str) -> Record:
    rel = r.meta[field]
    where = f"{folder / r.meta['file']}: entry {r.meta['index']}: '{field}'"
    if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DataError(f"{where} must be a path relative to {folder}, got {rel!r}")
    if not (folder / rel).is_file():
        raise DataError(f"{where}: file {folder / rel} not found")
    return Record(r.image, r.scan_mask, r.label, r.group, r.meta | {"mask": str(folder / rel)})


def group_split(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Seeded (train, val) split of train_val, each patient / video on one side."""
    groups = sorted({r.group if r.group is not None else f"#{i}" for i, r in enumerate(records)})
    if len(groups) < 2:
        raise DataError(
            f"{records[0].meta.get('file', 'train_val.json')}: too few groups ({len(groups)}) to hold out "
            f"a validation split"
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    val = {groups[i] for i in order[: max(1, round(fraction * len(groups)))]}
    is_val = [(r.group if r.group is not None else f"#{i}") in val for i, r in enumerate(records)]
    return [r for r, v in zip(records, is_val) if not v], [r for r, v in zip(records, is_val) if v]


@lru_cache(maxsize=4096)
def read_class_mask(path: str, n_classes: int) -> np.ndarray:
    """HxW uint8 class indices of a mask PNG; a binary task reads 255 as 1."""
    a = read_image(path)
    if a.ndim == 3:
        a = a.max(axis=2)
    if n_classes == 2:
        a = np.where(a == 255, 1, a)
    return a.astype(np.uint8)


def check_mask(r: Record, n_classes: int) -> None:
    m = read_class_mask(r.meta["mask"], n_classes)
    img = read_image(r.image)
    if m.shape != img.shape[:2]:
        raise DataError(
            f"{r.meta['mask']}: mask is {m.shape[1]}x{m.shape[0]} but its image {r.image} is "
            f"{img.shape[1]}x{img.shape[0]}"
        )
    if m.max() >= n_classes:
        bad = sorted(int(v) for v in np.unique(m) if v >= n_classes)
        raise DataError(
            f"{r.meta['mask']}: class index {bad[0]} out of range (the task has {n_classes} classes, "
            f"indices 0..{n_classes - 1}; found {bad})"
        )


def _split_hash(folder: Path, splits: dict[str, list[Record]]) -> str:
    content = {
        s: [
            [
                str(r.image.relative_to(folder)),
                file_sha256(r.image),
                r.group,
                file_sha256(r.meta["mask"]),
                None if r.scan_mask is None else file_sha256(r.scan_mask),
            ]
            for r in recs
        ]
        for s, recs in splits.items()
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
