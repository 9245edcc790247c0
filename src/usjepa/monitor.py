"""Watch pretraining learn: the effective rank of the student's features, an online kNN and linear probe,
a collapse warning, and the choice of checkpoint by validation loss or by monitor score.

At each check (every ``monitor.every`` steps and at each validation) the student's pooled features are computed
exactly as ``usjepa bench`` computes them for the exported backbone (patch-token mean of timm's
``forward_features``, float32, under inference_mode) on:
- a fixed batch of held-out images from the pretraining corpus' validation split: their RankMe, with the
  benchmark's own helper;
- the train and validation splits of each ``monitor.tasks`` folder: kNN (cosine, k = 20) and a fast linear
  probe (the benchmark's probe, fewer epochs) fitted on train, scored by macro-F1 on validation. The linear
  score is the kept epoch's validation macro-F1, the number the benchmark selects heads by; test is never read.
Only the main process checks; the loop's randomness and weights are untouched, so a run trains alike with or
without its monitor.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from usjepa.bench.features import SplitImages, effective_rank
from usjepa.bench.knn import knn_proba
from usjepa.bench.probe import Head, ProbeConfig, fit, scores
from usjepa.bench.tasks import Task, load_task
from usjepa.config import Config, ConfigError
from usjepa.modelio import STUDENT_MEAN, STUDENT_STD

TASK_SPLITS = ("train", "val")


class Monitor:
    """Checks of one run's student backbone ``vit`` (a timm VisionTransformer); ``val_dataset`` is the corpus'
    held-out split (None: no validation, no monitor)."""

    def __init__(self, cfg: Config, vit: torch.nn.Module, val_dataset, device: torch.device, main: bool):
        self.m, self.vit, self.device, self.main = cfg.monitor, vit, device, main
        self.on = self.m.enabled and val_dataset is not None
        self.in_chans = cfg.data.in_chans
        self.mean = torch.tensor(STUDENT_MEAN * self.in_chans, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(STUDENT_STD * self.in_chans, device=device).view(1, -1, 1, 1)
        t0 = time.perf_counter()
        # a trend signal, not a reported score: a small split that lacks a class still shows learning
        self.tasks = (
            [load_task(t, self.m.data_root or None, allow_incomplete=True) for t in self.m.tasks] if self.on else []
        )
        names = [t.name for t in self.tasks]
        if len(set(names)) < len(names):
            raise ConfigError(f"monitor.tasks: task names repeat ({names}); each needs its own column")
        self.images: torch.Tensor | None = None  # [N, C, S, S] in [0, 1]
        self.task_images: list[dict[str, torch.Tensor]] = []
        self.subsets: list[dict[str, np.ndarray]] = []  # positions in task.splits[split] of the images used
        if self.on and main:
            self._load_images(val_dataset, cfg.data.img_size)
        self.columns = (
            ["rank", *[f"{kind}_{n}" for n in names for kind in ("knn", "linear")], "monitor_s"] if self.on else []
        )
        self.setup_s = time.perf_counter() - t0
        self.seconds, self.checks, self.skipped, self.start_time = 0.0, 0, 0, time.perf_counter()
        self.last: tuple[int, dict] | None = None  # (step, row) of the latest check
        self.low = 0  # checks in a row with the rank below monitor.collapse_rank
        self.best_score = -float("inf")
        self.choices: dict[str, dict] = {}  # selection rule -> the step it picks and its value

    def _load_images(self, val_dataset, size: int) -> None:
        n = min(self.m.images, len(val_dataset))
        if n < 2:
            raise ConfigError(
                f"monitor.images: the validation split holds {n} image(s); the effective rank needs 2 "
                "(raise data.val_fraction, or set monitor.enabled=false)"
            )
        self.images = torch.stack([val_dataset[(0, p)]["image"] for p in range(n)])
        for task in self.tasks:
            subset, images = {}, {}
            for split in TASK_SPLITS:
                recs = task.splits[split]
                keep = np.arange(len(recs))
                if len(recs) > self.m.max_images:
                    keep = np.sort(np.random.default_rng(0).permutation(len(recs))[: self.m.max_images])
                ds = SplitImages([recs[i] for i in keep], size)
                subset[split], images[split] = keep, torch.stack([ds[i][0] for i in range(len(ds))])
            self.subsets.append(subset)
            self.task_images.append(images)

    # ---- features ----------------------------------------------------------------------------
    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, D] (float32, CPU) of images [N, 1 or C, S, S] in [0, 1], as the benchmark pools a
        usjepa export: the mean of the final-norm patch tokens."""
        training = self.vit.training
        self.vit.eval()
        out = []
        for chunk in images.split(self.m.batch_size):
            x = chunk.to(self.device).expand(-1, self.in_chans, -1, -1)
            tokens = self.vit.forward_features((x - self.mean) / self.std)
            out.append(tokens[:, self.vit.num_prefix_tokens :].mean(1).float().cpu())
        self.vit.train(training)
        return torch.cat(out)

    # ---- checks ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the wall clock that the overhead is a share of (the training loop's start)."""
        self.start_time = time.perf_counter()

    def due(self, step: int) -> bool:
        """A periodic check at ``step``? Skipped (and counted) while monitoring is over its share of wall time."""
        if not (self.on and self.main and self.m.every and step % self.m.every == 0):
            return False
        wall = time.perf_counter() - self.start_time
        if self.m.max_overhead and self.seconds > self.m.max_overhead * wall:
            self.skipped += 1
            return False
        return True

    def check(self, step: int) -> dict:
        """The monitor's columns for ``step`` (an empty dict off the main process, or when ``step`` was checked)."""
        if not (self.on and self.main) or (self.last is not None and self.last[0] == step):
            return {}
        t0 = time.perf_counter()
        row = {"rank": effective_rank(self.features(self.images))}
        for i, task in enumerate(self.tasks):
            x = {s: self.features(self.task_images[i][s]) for s in TASK_SPLITS}
            row |= self._probe(task, x, {s: task.labels(s)[self.subsets[i][s]] for s in TASK_SPLITS})
        row["monitor_s"] = time.perf_counter() - t0
        self.seconds += row["monitor_s"]
        self.checks += 1
        self.last = (step, row)
        self._collapse(step, row["rank"])
        return row

    def _probe(self, task: Task, x: dict[str, torch.Tensor], y: dict[str, np.ndarray]) -> dict[str, float]:
        proba = knn_proba(x["train"].numpy(), y["train"], x["val"].numpy(), task.n_classes, self.m.knn_k)
        knn = scores(y["val"], proba[None], task.n_classes)[0]["macro_f1"]
        cfg = ProbeConfig(max_epochs=self.m.probe_epochs, patience=self.m.probe_patience)
        probes = fit(
            x["train"],
            torch.from_numpy(y["train"]),
            x["val"],
            torch.from_numpy(y["val"]),
            task.n_classes,
            [Head(seed=0)],
            cfg,
            self.device,
        )
        return {f"knn_{task.name}": knn, f"linear_{task.name}": probes.val_f1[0]}

    def _collapse(self, step: int, rank: float) -> None:
        k, floor = self.m.collapse_checks, self.m.collapse_rank
        if rank >= floor:
            if self.low >= k:
                tqdm.write(f"step {step}: monitor: effective rank {rank:.1f} is back above {floor:g}")
            self.low = 0
            return
        self.low += 1
        if self.low == k:
            tqdm.write(
                f"step {step}: warning: the feature effective rank ({rank:.1f}) has been below "
                f"monitor.collapse_rank={floor:g} for {k} checks in a row: the encoder may be collapsing "
                "(training goes on)"
            )

    # ---- checkpoint selection --------------------------------------------------------------------
    def score(self) -> float | None:
        """The latest check's monitor score (higher is better): mean task val macro-F1 of ``monitor.score``'s
        probe, or the rank."""
        if self.last is None:
            return None
        row = self.last[1]
        if self.m.score == "rank":
            return row["rank"]
        vals = [v for k, v in row.items() if k.startswith(f"{self.m.score}_")]
        return float(np.mean(vals)) if vals else None

    def keep_best(self, step: int, val_loss: float, best_val: float) -> bool:
        """Record what each rule picks after the validation at ``step``; True when ``monitor.select``'s rule picks
        this step (lowest validation loss by default, else the best monitor score)."""
        by_loss = val_loss < best_val
        if by_loss:
            self.choices["val_loss"] = {"step": step, "val_loss": val_loss}
        score = self.score() if self.last is not None and self.last[0] == step else None
        by_score = score is not None and score > self.best_score
        if by_score:
            self.best_score = score
            self.choices["monitor"] = {"step": step, "score": score, "metric": self.m.score}
        return by_score if self.m.select == "monitor" else by_loss

    # ---- state and summary ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"low": self.low, "best_score": self.best_score, "choices": self.choices}

    def load_state_dict(self, state: dict) -> None:
        self.low = state.get("low", 0)
        self.best_score = state.get("best_score", -float("inf"))
        self.choices = state.get("choices", {})

    def summary(self) -> dict:
        """The run's checkpoint choices and this process' monitoring cost."""
        wall = time.perf_counter() - self.start_time
        return {
            "selection": {"rule": self.m.select, **self.choices},
            "monitor": {
                "enabled": self.on,
                "checks": self.checks,
                "skipped": self.skipped,
                "seconds": round(self.seconds, 3),
                "setup_s": round(self.setup_s, 3),
                "wall_s": round(wall, 3),
                "overhead": round(self.seconds / wall, 4) if wall else 0.0,
            },
        }

    def report(self) -> str:
        s = self.summary()["monitor"]
        return (
            f"monitor: {s['checks']} checks took {s['seconds']:.1f} s, {100 * s['overhead']:.1f} % of the "
            f"{s['wall_s']:.0f} s run ({s['skipped']} skipped to stay under "
            f"{100 * self.m.max_overhead:g} %; setup {s['setup_s']:.1f} s)"
        )
