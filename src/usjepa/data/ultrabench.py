"""The one reader of the UltraBench processed layout (both the PyPI release and GitHub main).

Release 1.0.1 writes ``train.json``, ``validation.json``, ``test.json``; GitHub main writes ``train_val.json``
and ``test.json``. Each JSON is an array of flat objects with paths relative to the dataset folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from usjepa.data.decode import read_image, read_mask, to_gray
from usjepa.data.sample import Sample
from usjepa.errors import DataError

LAYOUTS = {"release": ("train", "validation", "test"), "main": ("train_val", "test")}
GROUP_KEYS = ("patient", "source")  # the grouping key differs by dataset: patient ids, or POCUS source videos
PATH_KEYS = ("image", "scan_mask")


@dataclass
class Record:
    """One entry of a split file, with paths resolved against the dataset folder."""

    image: Path
    scan_mask: Path | None
    label: int | None
    group: str | None
    meta: dict = field(default_factory=dict)


def layout_of(folder: Path) -> str:
    """'release' or 'main', from which split files exist; a DataError names the folder otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: UltraBench dataset folder not found")
    for name, splits in LAYOUTS.items():
        if all((folder / f"{s}.json").is_file() for s in splits):
            return name
    raise DataError(
        f"{folder}: not an UltraBench dataset folder: expected train.json, validation.json and test.json "
        f"(release layout) or train_val.json and test.json (GitHub main layout)"
    )


def load_ultrabench(folder: str | Path) -> dict[str, list[Record]]:
    """Every split of an UltraBench-processed folder: {"train", "validation", "test"} or {"train_val", "test"}.

    Labels are all present or all absent (segmentation-only datasets) across the folder's files.
    """
    folder = Path(folder)
    splits = {s: read_split(folder / f"{s}.json") for s in LAYOUTS[layout_of(folder)]}
    labelled = {s: [r.label is not None for r in recs] for s, recs in splits.items()}
    if any(map(any, labelled.values())) and not all(map(all, labelled.values())):
        split, i = next((s, flags.index(False)) for s, flags in labelled.items() if not all(flags))
        raise DataError(
            f"{folder / f'{split}.json'}: entry {i} has no 'label' while other entries of the dataset have one"
        )
    return splits


def read_split(path: Path) -> list[Record]:
    """Records of one split file, with schema checks whose errors name the file and the entry."""
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read split file ({e})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {type(entries).__name__}")
    return [_record(e, path, i) for i, e in enumerate(entries)]


def _record(entry: object, path: Path, i: int) -> Record:
    where = f"{path}: entry {i}"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    if not isinstance(entry.get("image"), str):
        raise DataError(f"{where}: missing 'image' path (a string relative to {path.parent})")
    label = entry.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int) or label < 0):
        raise DataError(f"{where}: 'label' must be a non-negative integer, got {label!r}")
    group_key = next((k for k in GROUP_KEYS if entry.get(k) is not None), None)
    mask = entry.get("scan_mask")
    return Record(
        image=_resolve(path.parent, entry["image"], f"{where}: 'image'"),
        scan_mask=None if mask is None else _resolve(path.parent, mask, f"{where}: 'scan_mask'"),
        label=label,
        group=None if group_key is None else f"{group_key}:{entry[group_key]}",
        meta={k: v for k, v in entry.items() if k not in (*PATH_KEYS, "label")} | {"file": path.name, "index": i},
    )


def _resolve(folder: Path, rel: object, where: str) -> Path:
    if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DataError(f"{where} must be a path relative to {folder}, got {rel!r}")
    p = folder / rel
    if not p.is_file():
        raise DataError(f"{where}: file {p} not found")
    return p


def read_record(rec: Record, gray: bool = True) -> Sample:
    """Decode one record: the image (grayscale unless gray=False) and its scan mask (all True when null)."""
    img = read_image(rec.image)
    img = to_gray(img) if gray else img
    mask = read_mask(rec.scan_mask) if rec.scan_mask is not None else np.ones(img.shape[:2], bool)
    if mask.shape != img.shape[:2]:
        raise DataError(
            f"{rec.scan_mask}: scan mask is {mask.shape[1]}x{mask.shape[0]} but its image {rec.image} "
            f"is {img.shape[1]}x{img.shape[0]}"
        )
    meta = rec.meta | {"path": str(rec.image), "group": rec.group}
    return Sample(image=img, scan_mask=mask, label=-1 if rec.label is None else rec.label, meta=meta)


def dataset_version(folder: str | Path) -> str | None:
    """The UltraBench version from ``version.txt`` ("UltraBench Version: 1.0.1"), or None when absent."""
    p = Path(folder) / "version.txt"
    if not p.is_file():
        return None
    m = re.search(r"UltraBench Version:\s*(\S+)", p.read_text(errors="replace"))
    return m.group(1) if m else None


def find_dataset(root: str | Path, name: str) -> Path:
    """The folder of dataset ``name`` under ``root``: ``root/name`` or the newest ``root/name_v<version>``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found")
    if (root / name).is_dir():
        return root / name
    versioned = sorted(root.glob(f"{name}_v*"), key=lambda p: _version_key(p.name[len(name) + 2 :]))
    if not versioned:
        make = f"usjepa prepare {name} RAW {root}" if name in ("busbra", "tn5000") else f"ultrabench {name} RAW {root}"
        raise DataError(f"task '{name}': no folder {root / name} or {root / name}_v<version> (run `{make}`)")
    return versioned[-1]


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))
