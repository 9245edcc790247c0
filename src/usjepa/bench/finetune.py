"""Full fine-tuning of an encoder on a task, with layer-wise learning-rate decay (beyond the paper's linear probes).

AdamW with timm's layer-decay parameter groups, cosine schedule, cross-entropy; the epoch with the best
validation macro-F1 is kept (early stopping), and only that state is evaluated on test.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import f1_score
from timm.optim import param_groups_layer_decay

from usjepa.bench.features import loader
from usjepa.bench.probe import scores
from usjepa.bench.tasks import Task
from usjepa.encoders import FrozenEncoder
from usjepa.errors import ConfigError


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float = 1e-4
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    epochs: int = 20
    patience: int = 5
    batch_size: int = 32


class Classifier(nn.Module):
    def __init__(self, enc: FrozenEncoder, n_classes: int, pooling: str):
        super().__init__()
        self.enc, self.pooling = enc, pooling
        self.backbone = enc.model.requires_grad_(True)  # registered, so parameters() and train() reach it
        dim = enc.features(torch.zeros(1, enc.in_chans, enc.img_size, enc.img_size, device=enc.device), pooling).shape[
            1
        ]
        self.head = nn.Linear(dim, n_classes, device=enc.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc.features(self.enc.normalise(x), self.pooling))


def _optimizer(model: Classifier, cfg: FinetuneConfig) -> torch.optim.AdamW:
    if not hasattr(model.backbone, "group_matcher"):
        raise ConfigError(
            f"{model.enc.spec}: fine-tuning needs a timm encoder (layer-wise lr decay uses its layer groups)"
        )
    groups = param_groups_layer_decay(model.backbone, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay)
    groups.append({"params": list(model.head.parameters()), "weight_decay": cfg.weight_decay, "lr_scale": 1.0})
    for g in groups:
        g["lr"] = cfg.lr * g["lr_scale"]
    return torch.optim.AdamW(groups)


def _predict(model: Classifier, batches) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    with torch.inference_mode():
        out = [(model(x.to(model.enc.device)).softmax(-1).cpu(), y) for x, y in batches]
    return torch.cat([p for p, _ in out]).numpy(), torch.cat([y for _, y in out]).numpy()


def finetune(
    enc: FrozenEncoder, task: Task, seed: int, pooling: str, cfg: FinetuneConfig = FinetuneConfig(), workers: int = 0
) -> dict:
    """Test scores of the best-validation epoch, that epoch, its validation macro-F1 and per-image test predictions."""
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(enc), task.n_classes, pooling)
    opt = _optimizer(model, cfg)
    train = loader(task.splits["train"], enc.img_size, cfg.batch_size, workers, shuffle=True, seed=seed)
    val = loader(task.splits["val"], enc.img_size, 64, workers)
    total, step = cfg.epochs * len(train), 0
    best, best_f1, best_epoch, bad = None, -1.0, 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for x, y in train:
            for g in opt.param_groups:
                g["lr"] = cfg.lr * g["lr_scale"] * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = nn.functional.cross_entropy(model(x.to(enc.device)), y.to(enc.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        proba, y_val = _predict(model, val)
        f1 = f1_score(y_val, proba.argmax(1), average="macro")
        if f1 > best_f1:
            best, best_f1, best_epoch, bad = copy.deepcopy(model.state_dict()), f1, epoch, 0
        else:
            bad += 1
        if bad >= cfg.patience:
            break
    model.load_state_dict(best)
    proba, y_test = _predict(model, loader(task.splits["test"], enc.img_size, 64, workers))
    return scores(y_test, proba[None], task.n_classes)[0] | {
        "val_macro_f1": float(best_f1),
        "best_epoch": best_epoch,
        "pred": proba.argmax(1).tolist(),
    }
