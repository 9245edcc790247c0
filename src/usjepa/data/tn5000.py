"""TN5000 (thyroid nodules, 5,000 images, benign / malignant) as the paper's TN5000 task.

Raw layout: PASCAL VOC, as the dataset is published:
  ``Annotations/<id>.xml``        ``<filename>`` and one ``<object>`` per nodule: ``<name>`` 0 (benign) or 1
                                  (malignant; ``benign`` / ``malignant`` are read too) and its ``<bndbox>``
  ``JPEGImages/<filename>``       the image
  ``ImageSets/Main/{train,val,test}.txt``  the dataset's own split (3,500 / 500 / 1,000), one id per line
An image is malignant when any of its nodules is. The dataset's own split is used when all three lists exist;
otherwise a seeded stratified split of the paper's sizes (TN5000 has no patient ids, so images are not grouped).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from usjepa.data.prepare import Item, grouped_split, write_dataset
from usjepa.errors import DataError

PAPER_SIZES = (3500, 500, 1000)
CLASSES = ("benign", "malignant")
NAMES = {"0": 0, "1": 1, "benign": 0, "malignant": 1}
LISTS = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}


def read_item(xml: Path, images: Path) -> Item:
    """One annotation file -> its image, label (the worst nodule) and nodule boxes; errors name the file."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise DataError(f"{xml}: malformed VOC annotation ({e})") from None
    objects = root.findall("object")
    if not objects:
        raise DataError(f"{xml}: no <object>; expected one per nodule with <name> 0 (benign) or 1 (malignant)")
    labels, boxes = [], []
    for obj in objects:
        name = (obj.findtext("name") or "").strip().lower()
        if name not in NAMES:
            raise DataError(f"{xml}: nodule <name> '{name}' is not 0 / 1 / benign / malignant")
        labels.append(NAMES[name])
        box = obj.find("bndbox")
        if box is not None:
            try:
                boxes.append([round(float(box.findtext(k, ""))) for k in ("xmin", "ymin", "xmax", "ymax")])
            except ValueError:
                raise DataError(f"{xml}: <bndbox> needs numeric xmin, ymin, xmax and ymax") from None
    filename = (root.findtext("filename") or "").strip() or f"{xml.stem}.jpg"
    image = images / filename
    if not image.is_file():
        raise DataError(f"{xml}: its image {image} not found")
    label = max(labels)
    return Item(image, xml.stem, label, CLASSES[label], extra={"boxes": boxes})


def read_items(raw: Path) -> list[Item]:
    annotations = raw / "Annotations"
    if not annotations.is_dir():
        raise DataError(
            f"{raw}: not a TN5000 folder: Annotations/ not found (expected the VOC layout: "
            "Annotations/*.xml, JPEGImages/, ImageSets/Main/)"
        )
    return [read_item(x, raw / "JPEGImages") for x in sorted(annotations.glob("*.xml"))]


def own_split(raw: Path, items: list[Item]) -> dict[str, list[Item]] | None:
    """The dataset's ImageSets/Main lists, when all three exist; every listed id must have an annotation."""
    folder = raw / "ImageSets" / "Main"
    if not all((folder / f).is_file() for f in LISTS.values()):
        return None
    by_id = {it.stem: it for it in items}
    out = {}
    for split, name in LISTS.items():
        ids = [line.strip() for line in (folder / name).read_text().splitlines() if line.strip()]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DataError(f"{folder / name}: {len(missing)} id(s) without an annotation, e.g. '{missing[0]}'")
        out[split] = [by_id[i] for i in ids]
    return out


def prepare(raw: Path, out: Path, seed: int) -> Path:
    items = read_items(raw)
    splits = own_split(raw, items)
    note = "Processor: usjepa prepare tn5000 (" + ("the dataset's own split" if splits else f"seed {seed}") + ")"
    return write_dataset(splits or grouped_split(items, PAPER_SIZES, seed), out, note)
