"""Feature extraction and its cache: keys cover weights, split, preprocessing, pooling and corruption."""

from __future__ import annotations

import torch

from usjepa.bench.cache import Cache
from usjepa.bench.features import effective_rank, extract, feature_key, task_features
from usjepa.bench.knn import knn_proba
from usjepa.bench.tasks import load_task
from usjepa.encoders import registry


def test_cached_features_are_reused_and_keys_separate_inputs(export_dir, task_root, tmp_path):
    enc = registry.load(f"usjepa:{export_dir}")
    task = load_task("synthus_lesion", task_root)
    cache = Cache(tmp_path)
    first = task_features(cache, enc, task, "test", "mean")
    assert first.shape == (24, 192) and (cache.hits, cache.misses) == (0, 1)
    assert torch.equal(task_features(cache, enc, task, "test", "mean"), first) and cache.hits == 1
    torch.testing.assert_close(first, extract(enc, task.splits["test"], "mean", batch_size=5))  # batching-independent
    keys = {
        str(feature_key(enc, task, "test", "mean", None)),
        str(feature_key(enc, task, "val", "mean", None)),
        str(feature_key(enc, task, "test", "cls", None)),
        str(feature_key(enc, task, "test", "mean", ("blur", 1))),
        str(feature_key(registry.load(f"random:{export_dir}"), task, "test", "mean", None)),
    }
    assert len(keys) == 5


def test_knn_cosine_votes():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]).numpy()
    y = torch.tensor([0, 0, 2, 2]).numpy()
    proba = knn_proba(x, y, x * 5, n_classes=3, k=2)  # cosine: scale does not matter
    assert proba.shape == (4, 3) and (proba.argmax(1) == y).all() and (proba[:, 1] == 0).all()


def test_effective_rank_counts_the_directions_features_use():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(4000, 16, generator=g)
    assert 15.0 < effective_rank(iso) <= 16.0
    scaled = iso * torch.logspace(-3, 3, 16)  # the probe standardises, so per-dimension scale does not count
    assert abs(effective_rank(scaled) - effective_rank(iso)) < 1e-6
    four = torch.randn(4000, 4, generator=g) @ torch.randn(4, 16, generator=g)  # 16 dims spanning a 4-d subspace
    assert 2.0 < effective_rank(four) <= 4.0 + 1e-3
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 16, generator=g)  # collapsed onto one direction
    assert effective_rank(line) < 1.01
