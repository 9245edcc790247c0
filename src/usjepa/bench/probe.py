"""The paper's linear probe, as one batched multi-head model.

Protocol: AdamW (lr 1e-3, weight decay 1e-4), batch 32, cross-entropy, cosine schedule, at most 150 epochs,
early stopping with patience 15 on validation macro-F1; the weights of the best validation epoch are kept
(the latest one on ties).
Every head of a sweep (seeds x label fractions x learning rates) trains in the same pass over the features:
each head has its own subset, initialisation, batch order and stopping, and ends exactly as if trained alone.
Only the training and validation splits are read here; test features only meet the kept weights (``proba``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from usjepa.bench.threads import torch_threads

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW defaults
PAPER_LRS = (1e-3,)  # the paper's protocol: one learning rate
GRID_LRS = (1e-3, 1e-2)  # the grid preset's rates (chosen per seed on validation, with its L2 strengths)


@dataclass(frozen=True)
class ProbeConfig:
    weight_decay: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 150
    patience: int = 15
    early_stopping: bool = True  # False: train max_epochs, keep the last weights; validation then only ranks heads


@dataclass(frozen=True)
class Head:
    seed: int
    fraction: float = 1.0
    lr: float = 1e-3
    l2: float = 0.0  # L2 penalty l2 / 2 * |W|^2 (not the bias) added to the mean cross-entropy, as sklearn's 1 / (C N)


@dataclass
class Probes:
    """Trained heads: weights of each head's best validation epoch, and the train standardisation."""

    heads: list[Head]
    weight: torch.Tensor  # [H, D, C]
    bias: torch.Tensor  # [H, C]
    mean: torch.Tensor  # [D]
    std: torch.Tensor  # [D]
    best_epoch: list[int]
    val_f1: list[float]
    epochs_run: list[int]
    val_loss: list[float]  # validation cross-entropy of the kept weights: breaks ties of val_f1 when heads are ranked

    def proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities [H, N, C]."""
        xs = (x - self.mean) / self.std
        return (torch.matmul(xs, self.weight) + self.bias[:, None]).softmax(-1)


def standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the training features, as every probe is fitted on them."""
    return x.mean(0), x.std(0).clamp_min(1e-6)


def fewshot_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified subset: round(fraction * n_c) examples of each class c, at least one."""
    if fraction >= 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[: max(1, round(fraction * (y == c).sum()))] for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def macro_f1(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Macro-F1 of each row of pred [H, N] against y [N], over the classes present in y or pred (as sklearn)."""
    rows = torch.arange(len(pred), device=pred.device).view(-1, 1) * n_classes * n_classes
    conf = torch.bincount((rows + y * n_classes + pred).view(-1), minlength=len(pred) * n_classes**2)
    conf = conf.view(-1, n_classes, n_classes).double()
    tp = conf.diagonal(dim1=1, dim2=2)
    support = conf.sum(1) + conf.sum(2)
    return (2 * tp / support.clamp_min(1)).sum(1) / (support > 0).sum(1)


def chance_macro_f1(y: np.ndarray, n_classes: int) -> float:
    """The macro-F1 that needs no features: the better of always predicting the commonest class and the expected
    score of uniform random guessing (per class c of frequency p_c: precision p_c, recall 1/C)."""
    p = np.bincount(y, minlength=n_classes) / len(y)
    constant = 2 * p.max() / (1 + p.max()) / (p > 0).sum()
    uniform = float(np.mean(2 * p / (n_classes * p + 1)))
    return float(max(constant, uniform))


def _batch_schedule(
    subsets: list[torch.Tensor], gens: list[torch.Generator], carry: list[torch.Tensor], steps: int, batch: int
) -> torch.Tensor:
    """Indices [steps, H * B]: each head walks its own stream of fresh permutations of its subset.

    Heads with the same subset size and carry-over (a label fraction's seeds) are permuted in one sort.
    """
    rows: list[torch.Tensor] = [torch.empty(0)] * len(subsets)
    groups: dict[tuple[int, int], list[int]] = {}
    for h, (subset, left) in enumerate(zip(subsets, carry)):
        groups.setdefault((len(subset), len(left)), []).append(h)
    for (n, c), hs in groups.items():
        k = max(0, math.ceil((steps * batch - c) / n))
        noise = torch.stack([torch.rand(k, n, generator=gens[h]) for h in hs])  # each head's own generator
        perms = torch.stack([subsets[h] for h in hs]).gather(1, noise.argsort(2).view(len(hs), -1))
        streams = torch.cat([torch.stack([carry[h] for h in hs]), perms], 1)
        for h, stream in zip(hs, streams):
            rows[h], carry[h] = stream[: steps * batch], stream[steps * batch :]
    return torch.stack(rows).view(len(subsets), steps, batch).transpose(0, 1).reshape(steps, -1)


class _Streams:
    """The heads still training, grouped by batch stream: heads of one (seed, label fraction) draw the same subset
    and batches (their generators share the seed), so they differ only in learning rate. Each stream gathers its
    batch once and its heads train in one matrix product: weights [G, L, C, D+1] (bias last), L the most heads of
    any stream; a stream's unused slots have learning rate 0 and stay zero. A stream is dropped once all its heads
    have stopped, and L shrinks to the most heads any stream still trains (each stream's training heads packed
    first); a stopped head left in a running stream trains on unobserved, so its kept results are untouched.

    Initialisation and batch streams come from CPU generators, so a head trains alike on any device.
    """

    def __init__(self, heads: list[Head], y: np.ndarray, n_classes: int, dim: int, device: torch.device):
        keys = list(dict.fromkeys((h.seed, h.fraction) for h in heads))
        members = [[i for i, h in enumerate(heads) if (h.seed, h.fraction) == k] for k in keys]
        width = max(len(m) for m in members)
        self.slot = torch.full((len(keys), width), -1, dtype=torch.long)  # head index of each slot, -1: unused
        self.w = torch.zeros(len(keys), width, n_classes, dim + 1)
        self.lr = torch.zeros(len(keys), width, 1, 1)
        self.l2 = torch.zeros(len(keys), width, 1, dim + 1)  # the bias column stays unpenalised
        bound = 1 / math.sqrt(dim)  # nn.Linear's initialisation, from each head's own generator
        for g, hs in enumerate(members):
            for j, i in enumerate(hs):
                self.slot[g, j], self.lr[g, j], self.l2[g, j, :, :-1] = i, heads[i].lr, heads[i].l2
                self.w[g, j].uniform_(-bound, bound, generator=torch.Generator().manual_seed(heads[i].seed))
        self.w, self.lr, self.l2, self.slot = (t.to(device) for t in (self.w, self.lr, self.l2, self.slot))
        self.penalised = any(h.l2 for h in heads)
        self.m, self.v = torch.zeros_like(self.w), torch.zeros_like(self.w)
        self.gens = [_batch_generator(seed, n_classes, dim) for seed, _ in keys]
        self.subsets = [torch.from_numpy(fewshot_subset(y, f, seed)) for seed, f in keys]
        self.carry = [torch.zeros(0, dtype=torch.long) for _ in keys]

    def keep(self, training: torch.Tensor) -> None:
        """Drop finished streams and stopped heads' slots (``training``: per head, then False for unused slots),
        so that later steps cost only what is still training."""
        live = training[self.slot]  # [G, L]
        streams, width = live.any(1), int(live.sum(1).max())
        if streams.all() and width == live.shape[1]:
            return
        order = live[streams].int().sort(dim=1, descending=True, stable=True).indices[:, :width]  # training heads first
        rows = torch.arange(len(order), device=order.device)[:, None]
        self.slot, self.w, self.m, self.v, self.lr, self.l2 = (
            t[streams][rows, order] for t in (self.slot, self.w, self.m, self.v, self.lr, self.l2)
        )
        kept = streams.nonzero().view(-1).tolist()
        self.gens, self.subsets, self.carry = ([lst[i] for i in kept] for lst in (self.gens, self.subsets, self.carry))


def _batch_generator(seed: int, n_classes: int, dim: int) -> torch.Generator:
    """A head's batch generator: its seed's generator after the head's initialisation draws (one generator
    initialises a head, then draws its batches)."""
    g = torch.Generator().manual_seed(seed)
    torch.empty(n_classes, dim + 1).uniform_(generator=g)
    return g


def fit(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    n_classes: int,
    heads: list[Head],
    cfg: ProbeConfig = ProbeConfig(),
    device: torch.device | str = "cpu",
) -> Probes:
    """Train every head together on (train, val); keep each head's best epoch by validation macro-F1.

    Every head gets the full probe's step budget: an epoch is ceil(N_train / batch) steps, drawn from the head's
    own label subset (few-shot heads cycle through theirs), so all heads share one schedule and one loop.
    Runs on ``device`` (the returned probes are on the CPU); on the CPU single-threaded: these ops are too small
    to gain from threads, and lose much on a shared machine.
    """
    device = torch.device(device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    with torch_threads(1):
        probes = _fit(x_train, y_train, x_val, y_val, n_classes, heads, cfg)
    for name in ("weight", "bias", "mean", "std"):
        setattr(probes, name, getattr(probes, name).cpu())
    return probes


def _fit(x_train, y_train, x_val, y_val, n_classes: int, heads: list[Head], cfg: ProbeConfig) -> Probes:
    dev = x_train.device
    mean, std = standardisation(x_train)
    xs = torch.cat([(x_train - mean) / std, torch.ones(len(x_train), 1, device=dev)], 1)  # a constant column: the bias
    xv = torch.cat([(x_val - mean) / std, torch.ones(len(x_val), 1, device=dev)], 1)
    live = _Streams(heads, y_train.cpu().numpy(), n_classes, xs.shape[1] - 1, dev)
    best_w = torch.zeros(len(heads), n_classes, xs.shape[1], device=dev)
    best_f1 = torch.full((len(heads),), -1.0, dtype=torch.float64, device=dev)
    best_loss = torch.zeros(len(heads), device=dev)
    best_epoch, bad, epochs_run = (torch.zeros(len(heads), dtype=torch.long, device=dev) for _ in range(3))
    training = torch.ones(len(heads) + 1, dtype=torch.bool, device=dev)  # the last entry: unused slots (index -1)
    training[-1] = False
    b, dims, steps = cfg.batch_size, xs.shape[1], math.ceil(len(xs) / cfg.batch_size)
    total = cfg.max_epochs * steps
    for epoch in range(1, cfg.max_epochs + 1):
        g, width = live.slot.shape
        sched = _batch_schedule(live.subsets, live.gens, live.carry, steps, b).to(dev)
        targets = y_train[sched].view(steps, g, 1, 1, b).expand(-1, -1, width, -1, -1)
        minus = torch.full((g, width, 1, b), -1.0 / b, device=dev)
        for k in range(steps):
            t = (epoch - 1) * steps + k
            xb = xs.index_select(0, sched[k]).view(g, b, dims)  # one gather per stream, shared by its heads
            p = torch.bmm(live.w.view(g, -1, dims), xb.transpose(1, 2)).view(g, width, n_classes, b).softmax(2)
            p.mul_(1 / b).scatter_add_(2, targets[k], minus)  # d(mean cross-entropy)/d(logits)
            grad = torch.bmm(p.view(g, -1, b), xb).view_as(live.w)
            if live.penalised:
                grad.addcmul_(live.l2, live.w)
            lr = live.lr * (0.5 * (1 + math.cos(math.pi * t / total)))
            _adamw_step(live.w, live.m, live.v, grad, lr, cfg.weight_decay, t + 1)
        if not cfg.early_stopping and epoch < cfg.max_epochs:
            continue  # without early stopping only the last epoch is validated
        observed = training[live.slot.view(-1)]  # heads still training (not unused slots, not stopped heads)
        ids, w = live.slot.view(-1)[observed], live.w.view(-1, n_classes, dims)[observed]
        logits = torch.matmul(xv, w.transpose(1, 2))
        f1 = macro_f1(logits.argmax(-1), y_val, n_classes)
        kept = f1 >= best_f1[ids]  # a tie keeps the later, longer-trained weights ...
        z = logits[kept]
        loss = -z.log_softmax(-1).gather(2, y_val.view(1, -1, 1).expand(len(z), -1, 1)).mean((1, 2))
        best_w[ids[kept]], best_epoch[ids[kept]], best_loss[ids[kept]] = w[kept], epoch, loss
        bad[ids] = torch.where(f1 > best_f1[ids], 0, bad[ids] + 1)  # ... but only a gain resets the patience
        best_f1[ids] = torch.maximum(best_f1[ids], f1)
        epochs_run[ids] = epoch
        training[ids] = bad[ids] < cfg.patience
        if not training[live.slot].any():
            break
        live.keep(training)
    if not cfg.early_stopping:
        epochs_run[:] = cfg.max_epochs
    return Probes(
        heads,
        best_w[:, :, :-1].transpose(1, 2),
        best_w[:, :, -1],
        mean,
        std,
        best_epoch.tolist(),
        best_f1.tolist(),
        epochs_run.tolist(),
        best_loss.tolist(),
    )


def _adamw_step(
    p: torch.Tensor, m: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor, weight_decay: float, t: int
) -> None:
    """torch.optim.AdamW's update with one learning rate per head (torch's AdamW takes one per param group)."""
    b1, b2 = BETAS
    p.addcmul_(p, lr, value=-weight_decay)
    m.lerp_(grad, 1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    c2 = math.sqrt(1 - b2**t)  # m / (sqrt(v) / c2 + eps) = c2 * m / (sqrt(v) + eps * c2)
    p.addcdiv_(m * lr, v.sqrt().add_(EPS * c2), value=-c2 / (1 - b1**t))


def select(probes: Probes) -> list[int]:
    """For each (seed, fraction), the head that scored best on validation: macro-F1, then the lower cross-entropy
    (a validation split of 30-40 images often ties on macro-F1), then the first."""
    return best_per_key([(h.seed, h.fraction) for h in probes.heads], probes.val_f1, probes.val_loss)


def best_per_key(keys: list[tuple], val_f1: list[float], val_loss: list[float]) -> list[int]:
    """Index of the best head of each key: highest val_f1, then lowest val_loss, then the first."""
    best: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        if k not in best or (val_f1[i], -val_loss[i]) > (val_f1[best[k]], -val_loss[best[k]]):
            best[k] = i
    return list(best.values())


def scores(y: np.ndarray, proba: np.ndarray, n_classes: int) -> list[dict[str, float]]:
    """Per head of proba [H, N, C]: macro-F1 (headline), accuracy, balanced accuracy, macro one-vs-rest AUROC.

    Vectorised over heads (a sweep scores hundreds of heads), and equal to sklearn's f1_score(average="macro"),
    accuracy_score, balanced_accuracy_score and roc_auc_score(multi_class="ovr"); AUROC is NaN when a class is
    missing from y, where sklearn raises.
    """
    pred, yt = torch.from_numpy(proba.argmax(-1)), torch.from_numpy(y)
    f1 = macro_f1(pred, yt, n_classes).numpy()
    hit = (pred == yt).double()
    present = np.unique(y)
    recall = np.stack([hit[:, y == c].mean(1).numpy() for c in present], 1)
    pos = np.eye(n_classes)[y].astype(bool)  # [N, C]
    n_pos = pos.sum(0)
    u = (rankdata(proba, axis=1) * pos).sum(1) - n_pos * (n_pos + 1) / 2  # Mann-Whitney U per class
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * (len(y) - n_pos))
    auroc = auc[:, 1] if n_classes == 2 else auc.mean(1)
    if len(present) < n_classes:
        auroc = np.full(len(proba), np.nan)
    return [
        {"macro_f1": float(a), "acc": float(b), "bal_acc": float(c), "auroc": float(d)}
        for a, b, c, d in zip(f1, hit.mean(1).numpy(), recall.mean(1), auroc)
    ]
