"""The UltraBench reader: a folder written by the PyPI `ultrabench` CLI, the GitHub-main layout, and the quirks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from usjepa.data.ultrabench import dataset_version, find_dataset, load_ultrabench, read_record
from usjepa.errors import DataError

BUTTERFLY_CLASSES = ["carotid", "2ch", "lungs", "ivc", "4ch", "bladder", "thyroid", "plax", "morisons_pouch"]


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _fan(rng: np.random.Generator, size: int = 24) -> np.ndarray:
    img = rng.integers(1, 255, (size, size), dtype=np.uint8)
    img[:, :4] = 0  # black border outside the scan region
    return img


@pytest.fixture(scope="module")
def butterfly(tmp_path_factory) -> Path:
    """A raw Butterfly tree `<subset>/<patient:int>/<class>/<f>.png`, processed by the release's own CLI."""
    root = tmp_path_factory.mktemp("butterfly")
    rng = np.random.default_rng(0)
    for subset, patients in (("training_data", range(1, 6)), ("test_data", range(10, 12))):
        for p in patients:
            for c in BUTTERFLY_CLASSES[:3]:
                _png(root / "raw" / subset / str(p) / c / "000.png", _fan(rng))
    (root / "out").mkdir()
    cli = Path(sys.executable).with_name("ultrabench")
    subprocess.run([str(cli), "butterfly", str(root / "raw"), str(root / "out")], check=True, capture_output=True)
    return find_dataset(root / "out", "butterfly")


def test_reads_the_release_cli_output_without_conversion(butterfly):
    assert butterfly.name.startswith("butterfly_v")
    splits = load_ultrabench(butterfly)
    assert set(splits) == {"train", "validation", "test"}
    assert sum(map(len, splits.values())) == 7 * 3
    assert len(splits["test"]) == 2 * 3
    rec = splits["test"][0]
    assert rec.group in {"patient:10", "patient:11"}
    assert rec.label == BUTTERFLY_CLASSES.index(rec.meta["class"])
    train_groups = {r.group for r in splits["train"]}
    assert train_groups.isdisjoint(r.group for r in splits["validation"])  # grouped by patient
    s = read_record(rec)
    assert s.image.dtype == np.uint8 and s.image.ndim == 2 and s.scan_mask.dtype == bool
    assert not s.scan_mask[:, :4].any() and s.scan_mask[:, 4:].all()
    assert dataset_version(butterfly) == "1.0.1"


def _write_main_layout(folder: Path, n: int = 4) -> None:
    """GitHub-main layout with POCUS-style `source` groups, an RGB image, a null mask and a GBCU 3-channel JPEG mask."""
    rng = np.random.default_rng(1)
    entries = []
    for i in range(n):
        _png(folder / "images" / f"{i}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        entries.append({"source": f"vid{i // 2}", "image": f"images/{i}.png", "label": i % 2, "pathology": "x"})
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[8:] = 1  # GBCU: {0, 1} scan masks saved as 3-channel JPEG
    Image.fromarray(mask).save(folder / "masks.jpg", quality=95)
    entries[0]["scan_mask"] = "masks.jpg"
    entries[1]["scan_mask"] = None
    (folder / "train_val.json").write_text(json.dumps(entries[:3]))
    (folder / "test.json").write_text(json.dumps(entries[3:]))


def test_main_layout_groups_rgb_null_and_jpeg_masks(tmp_path):
    _write_main_layout(tmp_path)
    splits = load_ultrabench(tmp_path)
    assert set(splits) == {"train_val", "test"} and len(splits["train_val"]) == 3
    first, second = splits["train_val"][:2]
    assert first.group == "source:vid0" and first.meta["pathology"] == "x"
    assert second.scan_mask is None and read_record(second).scan_mask.all()
    s = read_record(first)
    assert s.image.ndim == 2 and s.scan_mask[:4].sum() == 0 and s.scan_mask[10:].all()
    assert read_record(first, gray=False).image.shape == (16, 16, 3)
    assert dataset_version(tmp_path) is None


def test_segmentation_only_datasets_have_no_labels(tmp_path):
    _png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    for s in ("train", "validation", "test"):
        (tmp_path / f"{s}.json").write_text(json.dumps([{"image": "a.png", "capsule_mask": "a.png"}]))
    splits = load_ultrabench(tmp_path)
    assert splits["train"][0].label is None and splits["train"][0].group is None
    assert read_record(splits["test"][0]).label == -1


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image": "a.png", "label": 0', "test.json: malformed JSON"),
        ('{"image": "a.png"}', "test.json: expected a JSON array"),
        ('[{"label": 0}]', "test.json: entry 0: missing 'image'"),
        ('[{"image": "a.png", "label": -1}]', "test.json: entry 0: 'label' must be a non-negative integer"),
        ('[{"image": "a.png", "label": "2"}]', "test.json: entry 0: 'label' must be a non-negative integer"),
        ('[{"image": "nope.png", "label": 0}]', "nope.png not found"),
        ('[{"image": "../a.png", "label": 0}]', "must be a path relative to"),
        ('[{"image": "a.png", "label": 0}, {"image": "a.png"}]', "test.json: entry 1 has no 'label'"),
    ],
)
def test_schema_errors_name_file_and_entry(tmp_path, content, message):
    _png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "train_val.json").write_text(json.dumps([{"image": "a.png", "label": 0}]))
    (tmp_path / "test.json").write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_ultrabench(tmp_path)


def test_missing_folder_and_layout_and_mask_mismatch(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_ultrabench(tmp_path / "absent")
    with pytest.raises(DataError, match="not an UltraBench dataset folder"):
        load_ultrabench(tmp_path)
    with pytest.raises(DataError, match="task 'aul': no folder"):
        find_dataset(tmp_path, "aul")
    _png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "m.png", np.zeros((9, 8), np.uint8))
    for s in ("train_val", "test"):
        (tmp_path / f"{s}.json").write_text(json.dumps([{"image": "a.png", "scan_mask": "m.png", "label": 0}]))
    with pytest.raises(DataError, match="m.png: scan mask is 8x9 but its image"):
        read_record(load_ultrabench(tmp_path)["test"][0])


def test_find_dataset_prefers_newest_version(tmp_path):
    for v in ("1.0.1", "1.10.0", "1.2.0"):
        (tmp_path / f"aul_v{v}").mkdir()
    assert find_dataset(tmp_path, "aul").name == "aul_v1.10.0"
    shutil.rmtree(tmp_path / "aul_v1.10.0")
    (tmp_path / "aul").mkdir()
    assert find_dataset(tmp_path, "aul").name == "aul"
