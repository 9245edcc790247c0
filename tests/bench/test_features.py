"""Feature extraction and its cache: keys cover weights, split, preprocessing, pooling and corruption."""
from __future__ import annotations

import torch

from usjepa.bench import zoo
from usjepa.bench.cache import Cache
from usjepa.bench.features import extract, feature_key, task_features
from usjepa.bench.knn import knn_proba
from usjepa.bench.tasks import load_task


def test_cached_features_are_reused_and_keys_separate_inputs(export_dir, task_root, tmp_path):
    enc = zoo.load(f"usjepa:{export_dir}")
    task = load_task("synthus_lesion", task_root)
    cache = Cache(tmp_path)
    first = task_features(cache, enc, task, "test", "mean")
    assert first.shape == (24, 192) and (cache.hits, cache.misses) == (0, 1)
    assert torch.equal(task_features(cache, enc, task, "test", "mean"), first) and cache.hits == 1
    torch.testing.assert_close(first, extract(enc, task.splits["test"], "mean", batch_size=5))  # batching-independent
    keys = {str(feature_key(enc, task, "test", "mean", None)), str(feature_key(enc, task, "val", "mean", None)),
            str(feature_key(enc, task, "test", "cls", None)), str(feature_key(enc, task, "test", "mean", ("blur", 1))),
            str(feature_key(zoo.load(f"random:{export_dir}"), task, "test", "mean", None))}
    assert len(keys) == 5


def test_knn_cosine_votes():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]).numpy()
    y = torch.tensor([0, 0, 2, 2]).numpy()
    proba = knn_proba(x, y, x * 5, n_classes=3, k=2)  # cosine: scale does not matter
    assert proba.shape == (4, 3) and (proba.argmax(1) == y).all() and (proba[:, 1] == 0).all()
