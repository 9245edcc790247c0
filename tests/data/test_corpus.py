"""Corpus mixing and the pretraining loader on a tiny PNG folder."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from usjepa.config import load_config
from usjepa.data.corpus import build_pretrain_loader, epoch_plan, source_quota, split_indices
from usjepa.data.sources import open_source
from usjepa.errors import ConfigError


def _folder(root: Path, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        img = np.zeros((48, 60), np.uint8)
        img[6:42, 8:52] = rng.integers(20, 230, (36, 44))
        Image.fromarray(img).save(root / f"{i:03d}.png")
    return str(root)


def _cfg(sources, workers=0, **data):
    return load_config(
        "tiny",
        {"method": "vpixel", "data": {"sources": sources, "num_workers": workers, **data}, "optim": {"batch_size": 8}},
    )


def test_quota_and_organ_weighting():
    assert source_quota([100_000, 300, 50], 50_000) == [50_000, 300, 50]
    q = source_quota([100, 100, 20], 60, ["heart", "heart", "liver"])
    assert q == [35, 35, 70] and sum(q) == 140  # same total, each organ half


def test_epoch_plan_counts_and_reshuffle():
    p0, p1 = epoch_plan([10, 4], [6, 4], seed=0, epoch=0), epoch_plan([10, 4], [6, 4], seed=0, epoch=1)
    assert Counter(p0[:, 0].tolist()) == {0: 6, 1: 4} and len(set(map(tuple, p0.tolist()))) == 10
    assert not np.array_equal(p0, p1)
    up = epoch_plan([3], [7], 0, 0)
    assert sorted(Counter(up[:, 1].tolist()).values()) == [2, 2, 3]  # up-sampling cycles permutations


def test_val_split_by_group(tmp_path):
    src = open_source(_folder(tmp_path / "a", 20, 0))
    for it in src.items:
        it.group = f"patient{int(it.path.stem) // 4}"
    tr, va = split_indices(src, 0.2)
    assert len(va) == 4 and len(tr) == 16
    assert {src.group(i) for i in va}.isdisjoint({src.group(i) for i in tr})


def test_loader_batches_shapes_and_cap(tmp_path):
    a, b = _folder(tmp_path / "a", 30, 0), _folder(tmp_path / "b", 10, 1)
    loader = build_pretrain_loader(_cfg([a, b], cap_per_source=12, val_fraction=0.1), "train")
    assert len(loader) == (12 + 9) // 8  # a: 27 train capped at 12, b: 9 train; drop_last
    loader.set_epoch(0)
    batch = next(iter(loader))
    assert batch["image"].shape == (8, 1, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["scan_mask"].shape == (8, 64, 64) and batch["scan_mask"].dtype == torch.bool
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1 and batch["index"].tolist() == list(range(8))
    val = build_pretrain_loader(_cfg([a, b], cap_per_source=12, val_fraction=0.1), "val")
    assert len(val) == 1 and next(iter(val))["image"].shape[0] == 4  # 3 + 1 held out, not dropped


def test_workers_and_resume_give_identical_batches(tmp_path):
    a = _folder(tmp_path / "a", 26, 0)
    l0 = build_pretrain_loader(_cfg([a], workers=0), "train")
    l2 = build_pretrain_loader(_cfg([a], workers=2), "train")
    l0.set_epoch(3)
    l2.set_epoch(3, start_batch=1)
    full, resumed = list(l0), list(l2)
    assert len(full) == 2 and len(resumed) == 1
    for k in ("image", "scan_mask", "seed", "index"):
        assert torch.equal(full[1][k], resumed[0][k])
    l0.set_epoch(4)
    assert not torch.equal(next(iter(l0))["image"], full[0]["image"])


def test_ranks_are_disjoint(tmp_path):
    a = _folder(tmp_path / "a", 40, 0)
    seen = []
    for rank in range(2):
        loader = build_pretrain_loader(_cfg([a]), "train", rank=rank, world=2)
        loader.set_epoch(0)
        seen.append({i for batch in loader for i in batch["index"].tolist()})
        assert len(loader) == 4  # 36 train -> 18 per rank -> 4 batches of 8 // 2
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 32


def test_empty_sources_fail_fast(tmp_path):
    with pytest.raises(ConfigError, match="data.sources: is empty"):
        build_pretrain_loader(_cfg([]), "train")
