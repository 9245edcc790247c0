"""`usjepa prepare busbra|tn5000` on raw trees fabricated in the datasets' published layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from usjepa.bench.tasks import PAPER_TASKS, load_task, task_names
from usjepa.cli import main
from usjepa.data import busbra, tn5000
from usjepa.data.prepare import Item, grouped_split, split_sizes
from usjepa.errors import DataError


def _png(path: Path, rng: np.random.Generator, size: int = 24, jpeg: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((size, size), np.uint8)
    img[3:-3, 3:-3] = rng.integers(40, 200, (size - 6, size - 6))
    Image.fromarray(img).save(path, format="JPEG" if jpeg else "PNG")


def write_busbra(raw: Path, n_patients: int = 30, seed: int = 0, size: int = 24) -> Path:
    """bus_data.csv + Images/ + Masks/; every third patient has a second (-r) view; ~40 % malignant."""
    rng = np.random.default_rng(seed)
    lines = ["ID,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX"]
    for p in range(1, n_patients + 1):
        pathology = "malignant" if p % 5 in (1, 3) else "benign"
        for view in ("l", "r") if p % 3 == 0 else ("l",):
            image_id = f"bus_{p:04d}-{view}"
            lines.append(
                f'{image_id},x,{pathology},{4 if pathology == "malignant" else 2},d,{size},{size},left,"[1 1 5 5]"'
            )
            _png(raw / "Images" / f"{image_id}.png", rng, size)
            mask = np.zeros((size, size), np.uint8)
            mask[8:14, 8:14] = 255
            (raw / "Masks").mkdir(exist_ok=True)
            Image.fromarray(mask).save(raw / "Masks" / f"mask_{p:04d}-{view}.png")
    (raw / "bus_data.csv").write_text("\n".join(lines) + "\n")
    return raw


def write_tn5000(raw: Path, n: int = 40, own_split: bool = True, seed: int = 0, size: int = 24) -> Path:
    """VOC layout: Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val,test}.txt (28 / 4 / 8)."""
    rng = np.random.default_rng(seed)
    (raw / "Annotations").mkdir(parents=True)
    ids = [f"{i:04d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        _png(raw / "JPEGImages" / f"{image_id}.jpg", rng, size, jpeg=True)
        names = ["1"] if i % 3 == 0 else ["0", "1"] if i % 7 == 1 else ["0"]  # some images hold two nodules
        objects = "".join(
            f"<object><name>{nm}</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>9</xmax>"
            f"<ymax>12</ymax></bndbox></object>"
            for nm in names
        )
        (raw / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{size}</width><height>{size}</height>"
            f"<depth>3</depth></size>{objects}</annotation>"
        )
    if own_split:
        (raw / "ImageSets" / "Main").mkdir(parents=True)
        cut = [0, round(0.7 * n), round(0.8 * n), n]
        for name, a, b in zip(("train", "val", "test"), cut, cut[1:]):
            (raw / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids[a:b]) + "\n")
    return raw


def _splits(folder: Path) -> dict[str, list[dict]]:
    return {s: json.loads((folder / f"{s}.json").read_text()) for s in ("train", "validation", "test")}


def test_paper_sizes_exact_at_full_scale_and_scaled_below():
    assert split_sizes(1064, busbra.PAPER_SIZES) == (765, 86, 213)
    assert split_sizes(5000, tn5000.PAPER_SIZES) == (3500, 500, 1000)
    assert split_sizes(30, busbra.PAPER_SIZES) == (22, 2, 6)
    # BUS-BRA at full scale: 1,875 images of 1,064 patients, split by patient; 5,000 ungrouped TN5000 images
    rng = np.random.default_rng(0)
    items = [
        Item(Path(f"{p}-{v}"), f"{p:04d}-{v}", int(p % 3 == 0), "c", str(p))
        for p in range(1064)
        for v in range(1 + int(p < 811))
    ]
    assert len(items) == 1875  # 811 patients with two views
    split = grouped_split(items, busbra.PAPER_SIZES, seed=42)
    patients = {s: {it.group for it in v} for s, v in split.items()}
    assert [len(patients[s]) for s in ("train", "validation", "test")] == [765, 86, 213]
    assert not (patients["train"] & patients["test"]) and not (patients["validation"] & patients["test"])
    ungrouped = [Item(Path(str(i)), f"{i:04d}", int(rng.random() < 0.4), "c") for i in range(5000)]
    split = grouped_split(ungrouped, tn5000.PAPER_SIZES, seed=42)
    assert [len(split[s]) for s in ("train", "validation", "test")] == [3500, 500, 1000]
    rate = {s: np.mean([it.label for it in v]) for s, v in split.items()}
    assert max(rate.values()) - min(rate.values()) < 0.01  # stratified by class


def test_busbra_writes_the_ultrabench_layout_patient_grouped_and_seeded(tmp_path):
    raw = write_busbra(tmp_path / "BUSBRA")
    assert main(["prepare", "busbra", str(raw), str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "busbra_v1.0.1"
    splits = _splits(folder)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [22, 2, 6]  # one image per patient
    patients = [r["patient"] for recs in splits.values() for r in recs]
    assert len(patients) == len(set(patients)) == 30
    rec = next(r for r in splits["test"])
    assert rec["image"] == f"images/bus_{rec['patient']}-l.png" and rec["lesion_mask"].startswith("masks/lesion/")
    p = int(rec["patient"])
    assert rec["label"] == int(p % 5 in (1, 3)) and rec["class"] == ("malignant" if rec["label"] else "benign")
    img = np.asarray(Image.open(folder / rec["image"]))
    assert img.dtype == np.uint8 and img.ndim == 2
    assert set(np.unique(np.asarray(Image.open(folder / rec["scan_mask"])))) <= {0, 1}
    assert np.asarray(Image.open(folder / rec["lesion_mask"])).max() == 1
    assert (folder / "version.txt").read_text().startswith("UltraBench Version: 1.0.1")
    task = load_task("busbra", tmp_path / "out")
    assert task.n_classes == 2 and task.sizes() == {"train": 22, "val": 2, "test": 6}
    # seeded: the same seed gives the same split, another seed another one
    busbra.prepare(raw, tmp_path / "again", seed=42)
    assert _splits(tmp_path / "again") == splits
    busbra.prepare(raw, tmp_path / "other", seed=7)
    assert _splits(tmp_path / "other")["test"] != splits["test"]


def test_busbra_all_views_keep_patients_on_one_side(tmp_path):
    raw = write_busbra(tmp_path / "BUSBRA")
    folder = busbra.prepare(raw, tmp_path / "out", seed=42, per_patient="all")
    splits = _splits(folder)
    assert sum(map(len, splits.values())) == 40  # 30 patients, 10 with two views
    sides = {s: {r["patient"] for r in recs} for s, recs in splits.items()}
    assert [len(sides[s]) for s in ("train", "validation", "test")] == [22, 2, 6]
    assert not sides["train"] & sides["test"] and not sides["validation"] & sides["test"]
    assert not sides["train"] & sides["validation"]


def test_busbra_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="bus_data.csv not found"):
        busbra.prepare(tmp_path, tmp_path / "out", 42)
    raw = write_busbra(tmp_path / "BUSBRA", n_patients=3)
    table = raw / "bus_data.csv"
    table.write_text(table.read_text().replace("benign", "unsure", 1))
    with pytest.raises(DataError, match=r"bus_data.csv: line 3 \(bus_0002-l\): Pathology 'unsure'"):
        busbra.prepare(raw, tmp_path / "out", 42)
    (raw / "Images" / "bus_0001-l.png").unlink()
    table.write_text(table.read_text().replace("unsure", "benign"))
    with pytest.raises(DataError, match=r"line 2: image .*bus_0001-l.png not found"):
        busbra.prepare(raw, tmp_path / "out", 42)


def test_tn5000_uses_its_own_split_or_a_seeded_stratified_one(tmp_path):
    raw = write_tn5000(tmp_path / "TN5000")
    assert main(["prepare", "tn5000", str(raw), str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "tn5000_v1.0.1"
    splits = _splits(folder)
    assert [[r["image"] for r in splits[s]][:1] for s in ("train", "validation", "test")] == [
        ["images/0000.png"],
        ["images/0028.png"],
        ["images/0032.png"],
    ]
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [28, 4, 8]
    by_image = {r["image"]: r for recs in splits.values() for r in recs}
    assert (
        by_image["images/0002.png"]["label"] == 0 and len(by_image["images/0002.png"]["boxes"]) == 1
    )  # one benign nodule
    assert (
        by_image["images/0008.png"]["label"] == 1 and len(by_image["images/0008.png"]["boxes"]) == 2
    )  # benign + malignant
    assert by_image["images/0003.png"]["boxes"] == [[2, 3, 9, 12]]
    assert "patient" not in by_image["images/0003.png"]
    assert load_task("tn5000", tmp_path / "out").sizes() == {"train": 28, "val": 4, "test": 8}

    raw2 = write_tn5000(tmp_path / "TN5000b", own_split=False)
    splits = _splits(tn5000.prepare(raw2, tmp_path / "out2", seed=42))
    assert [len(splits[s]) for s in ("train", "validation", "test")] == list(split_sizes(40, tn5000.PAPER_SIZES))
    assert {r["label"] for r in splits["test"]} == {0, 1}


def test_tn5000_errors_name_the_annotation(tmp_path):
    raw = write_tn5000(tmp_path / "TN5000", n=4, own_split=False)
    xml = raw / "Annotations" / "0002.xml"
    xml.write_text(xml.read_text().replace("<name>0</name>", "<name>suspicious</name>"))
    with pytest.raises(DataError, match=r"0002.xml: nodule <name> 'suspicious'"):
        tn5000.prepare(raw, tmp_path / "out", 42)
    xml.write_text("<annotation><filename>")
    with pytest.raises(DataError, match=r"0002.xml: malformed VOC annotation"):
        tn5000.prepare(raw, tmp_path / "out", 42)
    with pytest.raises(DataError, match="Annotations/ not found"):
        tn5000.prepare(tmp_path, tmp_path / "out", 42)


def _fake_task(folder: Path, n_classes: int, rng: np.random.Generator) -> None:
    """A minimal release-layout folder (3 images per split) standing in for a task ultrabench processes."""
    (folder / "images").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        recs = []
        for i in range(3):
            name = f"images/{split}_{i}.png"
            _png(folder / name, rng, 8)
            recs.append({"patient": f"{split}{i}", "label": i % n_classes, "image": name})
        (folder / f"{split}.json").write_text(json.dumps(recs))


def test_bench_tasks_all_finds_all_eight(tmp_path):
    root = tmp_path / "data"
    busbra.prepare(write_busbra(tmp_path / "BUSBRA"), root / "busbra_v1.0.1", 42)
    tn5000.prepare(write_tn5000(tmp_path / "TN5000"), root / "tn5000_v1.0.1", 42)
    rng = np.random.default_rng(0)
    for name, (n_classes, _) in PAPER_TASKS.items():
        if name not in ("busbra", "tn5000"):
            _fake_task(root / f"{name}_v1.0.1", n_classes, rng)
    with pytest.raises(DataError, match="run `usjepa prepare tn5000 RAW"):
        load_task("tn5000", tmp_path)
    tasks = [load_task(name, root, allow_incomplete=True) for name in task_names("all")]  # tiny fakes
    assert sorted(t.name for t in tasks) == sorted(PAPER_TASKS) and len(tasks) == 8
    found = {t.name: t for t in tasks}
    assert found["busbra"].folder == root / "busbra_v1.0.1" and found["tn5000"].sizes()["test"] == 8
