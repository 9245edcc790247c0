"""The batched linear probe: correctness against torch and sklearn, batching equivalence, validation-only selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from usjepa.bench.probe import (
    Head,
    ProbeConfig,
    _adamw_step,
    chance_macro_f1,
    fewshot_subset,
    fit,
    macro_f1,
    scores,
    select,
)


def _blobs(n: int, seed: int, dim: int = 16, classes: int = 4, sep: float = 4.0):
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(42)) * sep
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), y


def test_linearly_separable_features_score_at_least_0_99():
    (xtr, ytr), (xva, yva), (xte, yte) = (_blobs(n, seed=s) for n, s in ((256, 0), (64, 1), (128, 2)))
    everything = torch.cat([xtr, xva, xte]), torch.cat([ytr, yva, yte])
    assert LogisticRegression(C=1e4, max_iter=10_000).fit(*everything).score(*everything) == 1.0  # separable
    probes = fit(xtr, ytr, xva, yva, 4, [Head(s) for s in range(3)])
    assert min(s["macro_f1"] for s in scores(yte.numpy(), probes.proba(xte).numpy(), 4)) >= 0.99


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    xtr, xva, ytr, yva = train_test_split(xtr, ytr, test_size=0.15, random_state=0, stratify=ytr)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return t(xtr), torch.tensor(ytr), t(xva), torch.tensor(yva), t(xte), yte


def test_within_2_points_of_sklearn_logistic_regression(digits):
    xtr, ytr, xva, yva, xte, yte = digits
    probes = fit(xtr, ytr, xva, yva, 10, [Head(s) for s in range(5)])
    ours = np.mean([s["macro_f1"] for s in scores(yte, probes.proba(xte).numpy(), 10)])
    scaler = StandardScaler().fit(xtr.numpy())
    ref = LogisticRegression(max_iter=5000).fit(scaler.transform(xtr.numpy()), ytr.numpy())
    theirs = f1_score(yte, ref.predict(scaler.transform(xte.numpy())), average="macro")
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


def test_batched_heads_end_exactly_as_if_trained_alone(digits):
    xtr, ytr, xva, yva, *_ = digits
    heads = [
        Head(0, 1.0),
        Head(1, 0.05),
        Head(2, 0.5, lr=3e-3),
        Head(3, 0.05),
        Head(4, 1.0),
        Head(0, 1.0, lr=0.3),
        Head(1, 0.05, lr=0.3),
    ]  # seeds of a fraction share a sort; a seed's learning rates share a stream
    cfg = ProbeConfig(max_epochs=30, patience=5)
    together = fit(xtr, ytr, xva, yva, 10, heads, cfg)
    assert together.epochs_run[5] < together.epochs_run[0]  # its stream goes on without it (slots compacted)
    for i, h in enumerate(heads):
        alone = fit(xtr, ytr, xva, yva, 10, [h], cfg)
        assert alone.best_epoch[0] == together.best_epoch[i] and alone.epochs_run[0] == together.epochs_run[i]
        torch.testing.assert_close(alone.weight[0], together.weight[i], rtol=1e-5, atol=1e-6)


def test_gradient_and_adamw_match_torch():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    lin = torch.nn.Linear(5, 3)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    w = torch.cat([lin.weight.detach(), lin.bias.detach()[:, None]], 1)[None].clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    xs = torch.cat([x, torch.ones(64, 1)], 1)
    for t in range(20):
        idx = torch.randperm(64)[:32]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x[idx]), y[idx]).backward()
        opt.step()
        xb = xs[idx][None]
        p = torch.bmm(w, xb.transpose(1, 2)).softmax(1).scatter_add_(1, y[idx].view(1, 1, -1), -torch.ones(1, 1, 32))
        _adamw_step(w, m, v, torch.bmm(p, xb) / 32, torch.full((1, 1, 1), 1e-2), 1e-4, t + 1)
    torch.testing.assert_close(w[0, :, :-1], lin.weight.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w[0, :, -1], lin.bias.detach(), rtol=1e-5, atol=1e-6)


def test_fewshot_subset_is_stratified_with_one_per_class():
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    sub = fewshot_subset(y, 0.1, seed=3)
    assert np.bincount(y[sub]).tolist() == [9, 1, 1]
    assert not np.array_equal(sub, fewshot_subset(y, 0.1, seed=4))
    assert np.array_equal(fewshot_subset(y, 1.0, 0), np.arange(100))


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 4, 50), rng.integers(0, 3, (3, 50))  # class 3 never predicted
    ours = macro_f1(torch.from_numpy(pred), torch.from_numpy(y), 5).numpy()  # class 4 absent from both
    ref = [f1_score(y, p, average="macro", labels=np.unique(np.concatenate([y, p]))) for p in pred]
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_scores_match_sklearn(n_classes):
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 80)
    proba = rng.dirichlet(np.ones(n_classes), (3, 80))
    proba[0, 40:] = proba[0, :40]  # ties in the ranking
    for p, s in zip(proba, scores(y, proba, n_classes)):
        pred = p.argmax(1)
        auc = roc_auc_score(y, p[:, 1]) if n_classes == 2 else roc_auc_score(y, p, multi_class="ovr")
        np.testing.assert_allclose(
            [s["macro_f1"], s["acc"], s["bal_acc"], s["auroc"]],
            [f1_score(y, pred, average="macro"), accuracy_score(y, pred), balanced_accuracy_score(y, pred), auc],
            rtol=1e-9,
        )
    assert np.isnan(scores(np.zeros(5, int), np.full((1, 5, 3), 1 / 3), 3)[0]["auroc"])


def test_early_stopping_and_selection_read_only_validation(digits, monkeypatch):
    """Poisoning the test split changes no choice; the probe module never sees test data before selection."""
    xtr, ytr, xva, yva, xte, yte = digits
    heads = [Head(s, f, lr) for s in range(2) for f in (0.1, 1.0) for lr in (1e-3, 1e-2)]
    cfg = ProbeConfig(max_epochs=40)
    probes = fit(xtr, ytr, xva, yva, 10, heads, cfg)
    chosen = select(probes)
    poisoned = fit(xtr, ytr, xva, yva, 10, heads, cfg)
    poisoned_scores = scores(np.roll(yte, 1), poisoned.proba(torch.randn_like(xte)).numpy(), 10)[0]
    assert select(poisoned) == chosen and poisoned.best_epoch == probes.best_epoch
    assert poisoned_scores["macro_f1"] < 0.3  # the poison did reach the test metrics
    assert len(chosen) == 4 and all(probes.val_f1[i] >= probes.val_f1[i ^ 1] for i in chosen)
    assert all(1 <= b <= r <= cfg.max_epochs for b, r in zip(probes.best_epoch, probes.epochs_run))
    assert min(probes.epochs_run) < cfg.max_epochs  # some head stopped early, on validation alone


@pytest.mark.parametrize("counts", [(50, 50), (90, 10), (25, 25, 25, 25), (70, 20, 10, 0)])
def test_chance_macro_f1_is_the_better_featureless_predictor(counts):
    y = np.repeat(np.arange(len(counts)), counts)
    constant = f1_score(y, np.full_like(y, np.argmax(counts)), average="macro")
    rng = np.random.default_rng(0)
    uniform = np.mean([f1_score(y, rng.integers(0, len(counts), len(y)), average="macro") for _ in range(400)])
    assert chance_macro_f1(y, len(counts)) == pytest.approx(max(constant, uniform), abs=0.01)
