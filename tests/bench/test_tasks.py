"""Task registry: names, grouped stratified validation split, leak check, label range, split hash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from usjepa.bench.tasks import PAPER_TASKS, SYNTHUS_TASKS, load_task, task_names
from usjepa.errors import DataError

from .conftest import write_task


def test_names():
    assert task_names("all") == list(PAPER_TASKS) and len(PAPER_TASKS) == 8
    assert task_names("synthus") == list(SYNTHUS_TASKS)
    assert task_names("aul, /x/y") == ["aul", "/x/y"]
    assert PAPER_TASKS["butterfly"][0] == 9 and PAPER_TASKS["mmotu"][0] == 8


def test_val_split_is_grouped_stratified_and_seeded(task_root):
    task = load_task("synthus_lesion", task_root)
    assert task.n_classes == 3 and task.version == "1.0.1"
    assert task.sizes() == {"train": 60, "val": 12, "test": 24}  # 12 patients x 6: one fold of 6 holds 2 patients
    groups = {s: {r.group for r in task.splits[s]} for s in ("train", "val")}
    assert groups["train"].isdisjoint(groups["val"])
    assert set(task.labels("val")) == {0, 1, 2}
    again, other = load_task("synthus_lesion", task_root), load_task("synthus_lesion", task_root, val_seed=1)
    assert [r.image for r in again.splits["val"]] == [r.image for r in task.splits["val"]]
    assert again.split_hash == task.split_hash
    assert {r.group for r in other.splits["val"]} != groups["val"] and other.split_hash != task.split_hash


def test_release_layout_keeps_its_validation_split(tmp_path):
    folder = write_task(tmp_path / "t")
    entries = json.loads((folder / "train_val.json").read_text())
    (folder / "train.json").write_text(json.dumps(entries[:50]))
    (folder / "validation.json").write_text(json.dumps(entries[50:]))
    (folder / "train_val.json").unlink()
    task = load_task(str(folder))
    assert task.name == "t" and task.sizes() == {"train": 50, "val": 22, "test": 24}


def test_split_hash_sees_a_label_and_an_image_byte(tmp_path):
    folder = write_task(tmp_path / "t")
    before = load_task(str(folder)).split_hash
    entries = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps(entries))  # reformatting alone changes nothing
    assert load_task(str(folder)).split_hash == before
    entries[3]["label"] = (entries[3]["label"] + 1) % 3
    (folder / "test.json").write_text(json.dumps(entries))
    relabelled = load_task(str(folder)).split_hash
    assert relabelled != before
    img = folder / entries[0]["image"]
    data = bytearray(img.read_bytes())
    data[-5] ^= 1  # inside the PNG's IEND CRC: the file still reads
    img.write_bytes(bytes(data))
    assert load_task(str(folder)).split_hash != relabelled


def test_train_test_leak_is_an_error(tmp_path):
    folder = write_task(tmp_path / "t")
    test = json.loads((folder / "test.json").read_text())
    shutil.copy(folder / "images" / "0_0.png", folder / test[5]["image"])
    with pytest.raises(
        DataError, match=r"train/test leak: test image .*12_5.png has the same bytes as training image .*0_0.png"
    ):
        load_task(str(folder))


def test_label_out_of_range(tmp_path):
    folder = write_task(tmp_path / "aul")
    test = json.loads((folder / "test.json").read_text())
    test[2]["label"] = 3
    (folder / "test.json").write_text(json.dumps(test))
    with pytest.raises(DataError, match=r"task 'aul': test.json entry 2: label 3 out of range \(task has 3 classes"):
        load_task("aul", tmp_path)
    with pytest.raises(DataError, match=r"task 'aul': test.json entry 2: label 3 out of range"):
        load_task(str(folder))  # as a plain folder: classes come from the training labels


def test_missing_and_unlabelled_tasks(tmp_path):
    with pytest.raises(DataError, match="task 'busbra': no folder"):
        load_task("busbra", tmp_path)
    with pytest.raises(DataError, match="not a known task .* and no folder"):
        load_task(str(tmp_path / "nowhere"))
    folder = write_task(tmp_path / "seg")
    for split in ("train_val", "test"):
        entries = [
            {k: v for k, v in e.items() if k != "label"} for e in json.loads((folder / f"{split}.json").read_text())
        ]
        (folder / f"{split}.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match="task 'seg': entries have no 'label'"):
        load_task(str(folder))
    assert np.array_equal(load_task(str(write_task(tmp_path / "ok"))).labels("test")[:3], [0, 1, 2])


def test_probe_kinds_where_every_record_names_one(tmp_path):
    task = load_task(str(write_task(tmp_path / "named", probes=("phased", "linear"))))
    kinds = task.probe_kinds("test")
    named = [r.meta["probe"] for r in task.splits["test"]]
    assert kinds.tolist() == [["linear", "phased"].index(k) for k in named] and set(named) == {"linear", "phased"}
    assert task.probe_kind_names("test") == ("linear", "phased")  # what the indices point into
    assert load_task(str(write_task(tmp_path / "unnamed"))).probe_kinds("test") is None
    assert load_task(str(write_task(tmp_path / "one", probes=("convex",)))).probe_kinds("test") is None
    entries = json.loads((tmp_path / "named" / "test.json").read_text())
    del entries[0]["probe"]  # one record without: no kinds rather than a wrong one
    (tmp_path / "named" / "test.json").write_text(json.dumps(entries))
    assert load_task(str(tmp_path / "named")).probe_kinds("test") is None
