import json

import numpy as np
import pytest
from PIL import Image

from usjepa.bench.segtasks import load_seg_task
from usjepa.errors import DataError


def seg_folder(root, bad: str | None = None, size_mismatch: bool = False):
    """UltraBench-style: 12 train_val, 4 test images; liver masks, every third null (4 in train_val, 2 in test)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks/liver"):
        (root / sub).mkdir(parents=True)
    splits = {"train_val": [], "test": []}
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / f"images/{i}.png")
        rec = {"image": f"images/{i}.png", "patient": i, "liver_mask": None}
        if i % 3:
            m = np.zeros((16 if not (size_mismatch and i == 1) else 12, 16), np.uint8)
            m[4:10, 3:12] = 3 if f"{i}" == bad else 1
            Image.fromarray(m).save(root / f"masks/liver/{i}.png")
            rec["liver_mask"] = f"masks/liver/{i}.png"
        splits["train_val" if i < 12 else "test"].append(rec)
    for s, recs in splits.items():
        (root / f"{s}.json").write_text(json.dumps(recs))
    return root


def test_ultrabench_folder_reads_and_counts_null_masks(tmp_path):
    task = load_seg_task(str(seg_folder(tmp_path / "aul_like")))
    assert task.kind == "liver" and task.class_names == ["background", "liver"]
    assert task.nulls == {"train_val": 4, "test": 2}
    assert sum(task.sizes().values()) == 10 and task.sizes()["test"] == 2
    groups = {s: {r.group for r in recs} for s, recs in task.splits.items()}
    assert not groups["train"] & groups["val"]


def test_out_of_range_class_index_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"masks/liver/5\.png: class index 3 out of range.*indices 0\.\.1"):
        load_seg_task(str(seg_folder(tmp_path / "bad", bad="5")))


def test_mask_size_mismatch_names_both_files(tmp_path):
    with pytest.raises(DataError, match=r"masks/liver/1\.png: mask is 16x12 but its image .*images/1\.png is 16x16"):
        load_seg_task(str(seg_folder(tmp_path / "bad", size_mismatch=True)))


def test_classes_json_declares_multiclass_masks(tmp_path):
    root = seg_folder(tmp_path / "multi", bad="5")
    (root / "classes.json").write_text(json.dumps({"mask": "liver", "classes": ["bg", "liver", "vessel", "mass"]}))
    assert load_seg_task(f"{root}@liver").n_classes == 4
