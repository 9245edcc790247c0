"""BUS-BRA (Gómez-Flores et al. 2023; zenodo.org/records/8231412) as the paper's BUSBRA task.

Raw layout, as the authors' own code reads it (github.com/wgomezf/BUS-BRA, BUSBRA-Codes.zip,
Classification/cls_busdataset.m and cls_parameters.m):
  ``bus_data.csv``              one row per image: ``ID`` (``bus_0001-l``), ``Pathology`` (benign | malignant), ...
  ``Images/<ID>.png``           the grayscale B-mode image
  ``Masks/mask_<ID[4:]>.png``   its lesion delineation (``bus_0001-l`` -> ``mask_0001-l.png``)
The patient is the ``Patient`` / ``Case`` column when the CSV has one, else the number in the ID
(``bus_0001-l`` and ``bus_0001-r`` are two views of patient 0001). BUS-BRA holds 1,875 images of 1,064
patients; the paper's 765 / 86 / 213 sum to 1,064, one image per patient, so by default each patient's first
image (in ID order) is kept (``--per-patient all`` keeps all, split by the same patient counts).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from usjepa.data.prepare import Item, grouped_split, write_dataset
from usjepa.errors import DataError

PAPER_SIZES = (765, 86, 213)
CLASSES = ("benign", "malignant")
PATIENT_COLUMNS = ("Patient", "PatientID", "Case")


def read_items(raw: Path) -> list[Item]:
    """Every image listed in ``bus_data.csv``, with label, patient and lesion mask; errors name file and row."""
    table = raw / "bus_data.csv"
    if not table.is_file():
        raise DataError(
            f"{raw}: not a BUS-BRA folder: {table.name} not found (expected bus_data.csv, Images/ and "
            "Masks/ as published at https://zenodo.org/records/8231412)"
        )
    with open(table, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"ID", "Pathology"} <= set(rows[0]):
        raise DataError(
            f"{table}: expected columns 'ID' and 'Pathology' (found {', '.join(rows[0]) if rows else 'none'})"
        )
    patient_col = next((c for c in PATIENT_COLUMNS if c in rows[0]), None)
    items = []
    for n, row in enumerate(rows, start=2):  # line numbers as a spreadsheet shows them (header is line 1)
        image_id, pathology = row["ID"].strip(), row["Pathology"].strip().lower()
        if pathology not in CLASSES:
            raise DataError(
                f"{table}: line {n} ({image_id}): Pathology '{row['Pathology']}' is not benign or malignant"
            )
        patient = row[patient_col].strip() if patient_col else _patient_of(image_id, table, n)
        image = raw / "Images" / f"{image_id}.png"
        if not image.is_file():
            raise DataError(f"{table}: line {n}: image {image} not found")
        mask = raw / "Masks" / f"mask{image_id[3:]}.png"
        items.append(
            Item(
                image,
                image_id,
                CLASSES.index(pathology),
                pathology,
                patient,
                mask if mask.is_file() else None,
                {"birads": row.get("BIRADS")} if row.get("BIRADS") else {},
            )
        )
    return items


def _patient_of(image_id: str, table: Path, line: int) -> str:
    m = re.fullmatch(r"bus_(\d+)(-\w+)?", image_id)
    if not m:
        raise DataError(
            f"{table}: line {line}: ID '{image_id}' is not bus_<patient>-<view>, and the CSV has no "
            f"patient column ({', '.join(PATIENT_COLUMNS)})"
        )
    return m.group(1)


def prepare(raw: Path, out: Path, seed: int, per_patient: str = "first") -> Path:
    items = sorted(read_items(raw), key=lambda it: it.stem)
    if per_patient == "first":
        first: dict[str, Item] = {}
        for it in items:
            first.setdefault(it.group, it)
        items = list(first.values())
    note = f"Processor: usjepa prepare busbra (seed {seed}, per patient: {per_patient})"
    return write_dataset(grouped_split(items, PAPER_SIZES, seed), out, note)
