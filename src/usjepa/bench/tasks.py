"""Classification tasks: the paper's 8 UltraBench tasks, the SynthUS tasks, or any folder in the same layout.

Each task resolves to train / val / test record lists. The validation split is the release's own
``validation.json`` or, for the newer layout, a seeded stratified split of ``train_val`` grouped by
patient or video. An image in both training and test (same bytes) is an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from usjepa.data.ultrabench import Record, dataset_version, find_dataset, load_ultrabench
from usjepa.errors import ConfigError, DataError
from usjepa.weights import file_sha256

# name -> (classes, train / val / test sizes in the paper)
PAPER_TASKS = {
    "aul": (3, (529, 59, 147)),
    "busbra": (2, (765, 86, 213)),
    "butterfly": (9, (28053, 6272, 6751)),
    "fatty_liver": (2, (390, 50, 110)),
    "gbcu": (3, (1019, 114, 122)),
    "mmotu": (8, (800, 200, 469)),
    "pocus": (3, (1444, 177, 443)),
    "tn5000": (2, (3500, 500, 1000)),
}
SYNTHUS_TASKS = ("synthus_lesion", "synthus_organ", "synthus_fatty", "synthus_lung", "synthus_texture")
SPLITS = ("train", "val", "test")


@dataclass
class Task:
    name: str
    folder: Path
    n_classes: int
    splits: dict[str, list[Record]]  # "train", "val", "test"
    split_hash: str  # covers every record (paths, labels, groups) and the bytes of every image and mask
    version: str | None
    warning: str | None = None  # why its scores may mislead (a split lacks a class), when allowed to go on

    def labels(self, split: str) -> np.ndarray:
        return np.array([r.label for r in self.splits[split]], dtype=np.int64)

    def probe_kinds(self, split: str) -> np.ndarray | None:
        """Each record's probe kind as an index into the sorted kinds, where every record names one and they
        differ (SynthUS's records do); else None."""
        kinds = [r.meta.get("probe") for r in self.splits[split]]
        names = self.probe_kind_names(split)
        if None in kinds or len(names) < 2:
            return None
        return np.array([names.index(str(k)) for k in kinds], dtype=np.int64)

    def probe_kind_names(self, split: str) -> tuple[str, ...]:
        """The probe kinds that a split's records name, sorted: what probe_kinds' indices point into."""
        return tuple(sorted({str(r.meta["probe"]) for r in self.splits[split] if r.meta.get("probe") is not None}))

    def sizes(self) -> dict[str, int]:
        return {s: len(r) for s, r in self.splits.items()}


def task_names(spec: str) -> list[str]:
    """'all' (the paper's 8), 'synthus' (the 5 labelled SynthUS tasks), or a comma list of names and folder paths."""
    if spec == "all":
        return list(PAPER_TASKS)
    if spec == "synthus":
        return list(SYNTHUS_TASKS)
    return [t.strip() for t in spec.split(",") if t.strip()]


def task_folder(name: str, data_root: str | Path | None) -> Path:
    """A known task under data_root (``name`` or ``name_v<version>``), else ``name`` taken as a folder path."""
    if name in PAPER_TASKS or name in SYNTHUS_TASKS:
        if data_root is None:
            raise ConfigError(f"task '{name}' needs --data-root (the folder holding {name}/ or {name}_v<version>/)")
        return find_dataset(data_root, name)
    p = Path(name)
    if not p.is_dir():
        known = ", ".join([*PAPER_TASKS, *SYNTHUS_TASKS])
        raise DataError(f"task '{name}': not a known task ({known}) and no folder {p.resolve()}")
    return p


ALLOW_FLAG = "--allow-incomplete-tasks"


def load_task(
    name: str,
    data_root: str | Path | None = None,
    val_seed: int = 0,
    val_fraction: float = 0.1,
    allow_incomplete: bool = False,
) -> Task:
    """A task's splits, checked: labels in range, no train/test leak, and every class in every split (a probe
    cannot learn, be selected on or be scored on a class a split lacks). ``allow_incomplete`` turns a missing
    class into ``Task.warning`` instead of an error."""
    folder = task_folder(name, data_root)
    raw = load_ultrabench(folder)
    label = name if name in PAPER_TASKS or name in SYNTHUS_TASKS else folder.name
    empty = [f"{s}.json" for s, recs in raw.items() if not recs]
    if empty:
        raise DataError(f"task '{label}': {', '.join(empty)} in {folder} hold(s) no entries")
    n_classes = _check_labels(label, raw)
    try:
        splits = (
            {"train": raw["train"], "val": raw["validation"], "test": raw["test"]}
            if "validation" in raw
            else dict(zip(("train", "val"), val_split(raw["train_val"], val_fraction, val_seed)), test=raw["test"])
        )
    except DataError as e:
        raise DataError(f"task '{label}': {e}") from None
    hashes = {s: [file_sha256(r.image) for r in recs] for s, recs in splits.items()}
    _check_leak(label, splits, hashes)
    warning = _check_classes(label, splits, n_classes)
    if warning and not allow_incomplete:
        raise DataError(
            f"{warning}; its macro-F1 would mislead. Give it more images per class (a SynthUS task: "
            f"usjepa simulate --n-per-task 200 or more), or pass {ALLOW_FLAG} to score it anyway, "
            "marked in the report"
        )
    return Task(label, folder, n_classes, splits, _split_hash(folder, splits, hashes), dataset_version(folder), warning)


def _check_classes(name: str, splits: dict[str, list[Record]], n_classes: int) -> str | None:
    """None when every split holds every class; else what is missing, with the images per class of each split."""
    counts = {s: np.bincount([r.label for r in recs], minlength=n_classes).tolist() for s, recs in splits.items()}
    if n_classes < 2:
        raise DataError(
            f"task '{name}': only one class (label 0) in its training split; a classification task needs "
            f"at least 2 (images per class: {counts})"
        )
    missing = {s: [k for k, n in enumerate(c) if n == 0] for s, c in counts.items()}
    lacking = [f"the {s} split lacks class(es) {m}" for s, m in missing.items() if m]
    return f"task '{name}': {'; '.join(lacking)} (images per class: {counts})" if lacking else None


def val_split(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Seeded stratified split of train_val into (train, val), keeping each patient / video on one side."""
    y = np.array([r.label for r in records])
    groups = np.array([r.group if r.group is not None else f"#{i}" for i, r in enumerate(records)])
    n_splits = min(round(1 / fraction), len(set(groups)))
    if n_splits < 2:
        raise DataError(
            f"{records[0].meta.get('file', 'train_val.json')}: too few groups ({len(set(groups))}) to hold out a "
            "validation split"
        )
    fold = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    tr, va = next(fold.split(np.zeros(len(y)), y, groups))
    return [records[i] for i in tr], [records[i] for i in va]


def _check_labels(name: str, splits: dict[str, list[Record]]) -> int:
    if any(r.label is None for recs in splits.values() for r in recs):
        raise DataError(f"task '{name}': entries have no 'label'; a classification task needs one per image")
    training = splits.get("train_val", splits.get("train"))
    n_classes = PAPER_TASKS[name][0] if name in PAPER_TASKS else 1 + max(r.label for r in training)
    for recs in splits.values():
        for r in recs:
            if r.label >= n_classes:
                raise DataError(
                    f"task '{name}': {r.meta['file']} entry {r.meta['index']}: label {r.label} out of range "
                    f"(task has {n_classes} classes, labels 0..{n_classes - 1})"
                )
    return n_classes


def _check_leak(name: str, splits: dict[str, list[Record]], hashes: dict[str, list[str]]) -> None:
    seen = {h: r for s in ("train", "val") for h, r in zip(hashes[s], splits[s])}
    for h, r in zip(hashes["test"], splits["test"]):
        if h in seen:
            raise DataError(
                f"task '{name}': train/test leak: test image {r.image} has the same bytes as "
                f"training image {seen[h].image}"
            )


def _split_hash(folder: Path, splits: dict[str, list[Record]], hashes: dict[str, list[str]]) -> str:
    content = {
        s: [
            [
                str(r.image.relative_to(folder)),
                h,
                r.label,
                r.group,
                None if r.scan_mask is None else file_sha256(r.scan_mask),
            ]
            for r, h in zip(splits[s], hashes[s])
        ]
        for s in SPLITS
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
