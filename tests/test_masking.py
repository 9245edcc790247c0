import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from usjepa.config import MaskConfig
from usjepa.masking import MaskCollator, patch_validity, predictor_attn_mask

G = 14  # a 224 / 16 grid


def blocks_of(idx, g=G):
    """Bounding box (h, w) of a target block's indices."""
    r, c = np.divmod(idx, g)
    return r.max() - r.min() + 1, c.max() - c.min() + 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_multiblock_invariants(seed):
    cfg = MaskConfig()
    col = MaskCollator(cfg, 224, 16)
    ctx, targets = col.sample(np.random.default_rng(seed))
    assert len(targets) == cfg.n_targets
    assert len(ctx) >= cfg.min_keep
    all_t = np.concatenate(targets)
    assert not np.intersect1d(ctx, all_t).size, "context overlaps a target"
    n = G * G
    for t in targets:
        h, w = blocks_of(t)
        assert h * w == len(t), "a target is not a full rectangle"
        area = cfg.tgt_scale[1] * n
        assert len(t) <= math.ceil(math.sqrt(area * cfg.tgt_aspect[1]) + 0.5) * math.ceil(
            math.sqrt(area / cfg.tgt_aspect[0]) + 0.5
        )
        lo = cfg.tgt_scale[0] * n
        assert len(t) >= 0.5 * lo
        assert cfg.tgt_aspect[0] / 2 <= h / w <= cfg.tgt_aspect[1] * 2
    ctx_box = np.zeros(n, bool)
    ctx_box[ctx] = True
    assert ctx_box.sum() <= cfg.ctx_scale[1] * n


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), tau=st.sampled_from([0.5, 0.8, 1.0]))
def test_usrc_blocks_respect_scan_mask(seed, tau):
    """A fan-shaped scan mask: every block holds >= tau valid patches when one exists,
    the context only valid patches, and the loss only valid targets."""
    yy, xx = np.mgrid[:224, :224]
    fan = torch.from_numpy((np.hypot(yy, xx - 112) < 220) & (np.abs(xx - 112) < yy * 0.9 + 20))
    cfg = MaskConfig(usrc=True, usrc_tau=tau, max_tries=200)
    col = MaskCollator(cfg, 224, 16)
    valid = patch_validity(fan, 16)
    ctx, targets = col.sample(np.random.default_rng(seed), valid)
    assert valid[ctx].all()
    for t in targets:
        assert valid[t].mean() >= tau
    batch = col([{"image": torch.zeros(1, 224, 224), "scan_mask": fan, "seed": seed}])
    n = (batch["tgt_block"][0] >= 0).sum()
    assert torch.equal(batch["tgt_keep"][0, :n], torch.from_numpy(valid[batch["tgt_idx"][0, :n].numpy()]))


def _items(n, seed0=0, size=64):
    return [
        {"image": torch.rand(1, size, size), "scan_mask": torch.ones(size, size, dtype=torch.bool), "seed": seed0 + i}
        for i in range(n)
    ]


def test_same_seed_same_masks_and_padding():
    col = MaskCollator(MaskConfig(min_keep=4, pad_mode="pad"), 64, 8)
    a, b = col(_items(6)), col(_items(6))
    for k in ("ctx_idx", "ctx_keep", "tgt_idx", "tgt_block", "tgt_keep"):
        assert torch.equal(a[k], b[k])
    c = col(_items(6, seed0=100))
    assert not torch.equal(a["ctx_idx"], c["ctx_idx"])
    lens = a["ctx_keep"].sum(1)
    assert lens.max() == a["ctx_idx"].shape[1] and lens.min() < lens.max()  # padded, nothing thrown away


def test_truncate_keeps_the_shortest():
    items = _items(6)
    pad = MaskCollator(MaskConfig(min_keep=4, pad_mode="pad"), 64, 8)(items)
    trunc = MaskCollator(MaskConfig(min_keep=4, pad_mode="truncate"), 64, 8)(items)
    assert trunc["ctx_idx"].shape[1] == pad["ctx_keep"].sum(1).min()
    assert trunc["ctx_keep"].all() and (trunc["tgt_block"] >= 0).all()


def test_truncation_keeps_a_random_subset_of_each_image_s_tokens():
    items = _items(8)
    pad = MaskCollator(MaskConfig(min_keep=4, pad_mode="pad"), 64, 8)(items)
    trunc = MaskCollator(MaskConfig(min_keep=4, pad_mode="truncate"), 64, 8)(items)
    first_rows = 0
    for i in range(8):
        full = set(pad["ctx_idx"][i][pad["ctx_keep"][i]].tolist())
        kept = trunc["ctx_idx"][i].tolist()
        assert set(kept) <= full and len(set(kept)) == len(kept)
        first_rows += kept and sorted(kept) == sorted(full)[: len(kept)]
    assert first_rows < 8  # not I-JEPA's "first indices", which drops the bottom rows of every block


def test_random_masking_ratio():
    b = MaskCollator(MaskConfig(random_ratio=0.75), 64, 8, kind="random")(_items(4))
    assert b["ctx_idx"].shape == (4, 16) and b["tgt_idx"].shape == (4, 48)
    for i in range(4):
        assert sorted(b["ctx_idx"][i].tolist() + b["tgt_idx"][i].tolist()) == list(range(64))


def test_attention_mask_keeps_blocks_independent():
    ctx_keep = torch.tensor([[True, True, False]])
    tgt_block = torch.tensor([[0, 0, 1, -1]])
    m = predictor_attn_mask(ctx_keep, tgt_block)[0, 0]
    assert m[:3, 3:].sum() == 0  # context never sees targets
    assert m[3, :2].all() and not m[3, 2]  # targets see valid context only
    assert m[3, 4] and not m[3, 5] and not m[5, 3] and m[5, 5]  # same block only
    assert m.any(dim=1).all()  # no empty row (padding rows included)
