"""The one training loop for every method: DDP, AMP, schedules, atomic checkpoints, exact resume, logs."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from usjepa.checkpoint import FORMAT, check_resume, save_atomic
from usjepa.config import Config, ConfigError, load_config, save_config, to_dict
from usjepa.data.corpus import build_pretrain_loader
from usjepa.distributed import Dist, all_reduce_sum, barrier, init_distributed, shutdown
from usjepa.engine import StepEngine
from usjepa.errors import CheckpointError, UsjepaError
from usjepa.masking import MaskCollator
from usjepa.methods import build_method, method_names
from usjepa.methods.base import Method
from usjepa.modelio import FROZEN, export_run
from usjepa.monitor import Monitor
from usjepa.schedules import learning_rate, weight_decay

METRICS = ["step", "epoch", "lr", "wd", "loss", "val_loss", "img_per_s", "bad_steps"]


class TrainingStopped(UsjepaError):
    """Too many consecutive non-finite steps."""


class Preempted:
    """Remembers a SIGTERM until the next step boundary."""

    def __init__(self):
        self.flag = False
        self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.flag = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._old)


def prepare_run_dir(cfg: Config, main: bool) -> Path:
    out = Path(cfg.out)
    if main:
        try:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
        except OSError as e:
            raise ConfigError(f"out: run directory {out} is not writable ({e.strerror})") from None
    barrier()
    return out


def trainable_state(method: Method) -> dict:
    return {k: v for k, v in method.state_dict().items() if not k.startswith(FROZEN)}


def logged_step(row: dict) -> float:
    """The step of a metrics.csv row; infinity for a row that is not a readable log row (a torn or corrupt line)."""
    try:
        return int(row["step"])
    except (KeyError, TypeError, ValueError):
        return float("inf")


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.d: Dist = init_distributed(cfg.device)
        if self.d.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # Leave a core per loader worker: oversubscribed OpenMP threads stall at every barrier.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.d.world - cfg.data.num_workers))
        torch.manual_seed(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.resume_from = check_resume(Path(cfg.out) / "checkpoints" / "last.pt", to_dict(cfg))  # before any write
        self.out = prepare_run_dir(cfg, self.d.main)
        self.method = build_method(cfg).to(self.d.device)
        o, world = cfg.optim, self.d.world
        if o.batch_size % (world * o.accum_steps):
            raise ConfigError(
                f"optim.batch_size: {o.batch_size} is not divisible by world size {world} x accum_steps {o.accum_steps}"
            )
        collate = MaskCollator(cfg.mask, cfg.data.img_size, self.method.encoder.patch_size, self.method.mask_kind)
        self.loader = build_pretrain_loader(cfg, "train", self.d.rank, world, collate)
        validates = cfg.data.val_fraction > 0
        self.val_loader = build_pretrain_loader(cfg, "val", self.d.rank, world, collate) if validates else None
        self.monitor = Monitor(
            cfg, self.method.encoder.vit, self.val_loader.dataset if validates else None, self.d.device, self.d.main
        )
        self.columns = METRICS + self.monitor.columns
        self.steps_per_epoch = len(self.loader) // o.accum_steps
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"data.sources: too few samples for one step of global batch {o.batch_size} on {world} process(es)"
            )
        self.total = o.epochs * self.steps_per_epoch
        self.warmup = round(o.warmup_epochs * self.steps_per_epoch)
        self.engine = StepEngine(self.method, world, cfg.compile)
        self.optimizer = self.engine.optimizer
        self.step, self.epoch, self.bad, self.best_val = 0, 0, 0, float("inf")
        self._resume()

    # ---- checkpoints ------------------------------------------------------------------------
    def _ckpt_path(self, which: str) -> Path:
        return self.out / "checkpoints" / f"{which}.pt"

    def _save(self, which: str = "last") -> None:
        if not self.d.main:
            return
        state = {
            "format": FORMAT,
            "config": to_dict(self.cfg),
            "model": trainable_state(self.method),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "bad_steps": self.bad,
            "best_val": self.best_val,
            "rng": torch.get_rng_state(),
            "monitor": self.monitor.state_dict(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        save_atomic(state, self._ckpt_path(which))

    def _resume(self) -> None:
        path, ckpt = self._ckpt_path("last"), self.resume_from
        if ckpt is None:
            self._truncate_metrics()  # a run killed before its first checkpoint starts over
            return
        missing, unexpected = self.method.load_state_dict(ckpt["model"], strict=False)
        wrong = [k for k in missing if not k.startswith(FROZEN)] + list(unexpected)
        if wrong:
            raise CheckpointError(
                f"{path}: does not fit this run's model (e.g. {wrong[:3]}); "
                f"the config changed since it was written: use a new out= directory"
            )
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.epoch, self.bad = ckpt["step"], ckpt["epoch"], ckpt["bad_steps"]
        self.best_val = ckpt["best_val"]
        self.monitor.load_state_dict(ckpt.get("monitor", {}))
        torch.set_rng_state(ckpt["rng"])
        if "cuda_rng" in ckpt and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        self._truncate_metrics()

    # ---- logging ----------------------------------------------------------------------------
    def _truncate_metrics(self) -> None:
        """Drop rows logged after the checkpoint we resume from, so a resumed log has no duplicates."""
        path = self.out / "metrics.csv"
        if self.d.main and path.is_file():
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if logged_step(r) <= self.step]  # unreadable rows are dropped
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, self.columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)

    def _log(self, row: dict) -> None:
        if not self.d.main:
            return
        path = self.out / "metrics.csv"
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.columns})
        for k, v in row.items():
            if k not in ("step", "epoch") and v != "":
                tag = "val/loss" if k == "val_loss" else f"monitor/{k}" if k in self.monitor.columns else f"train/{k}"
                self.tb.add_scalar(tag, v, self.step)

    # ---- one optimizer step -----------------------------------------------------------------
    def _set_schedules(self) -> tuple[float, float]:
        lr = learning_rate(self.cfg.optim, self.step, self.total, self.warmup)
        wd = weight_decay(self.cfg.optim, self.step, self.total)
        self.engine.set_schedules(lr, wd)
        return lr, wd

    # ---- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        self.method.eval()
        self.val_loader.set_epoch(0)  # the same masks every epoch, so losses are comparable
        acc = torch.zeros(2, device=self.d.device)
        for batch in self.val_loader:
            with self.engine.amp:
                loss, _ = self.method(self.engine.to_device(batch))
            n = self.method.loss_tokens(batch).to(self.d.device, torch.float32)
            acc += torch.stack([loss.float() * n, n])  # a mean over every loss token of the split
        self.method.train()
        acc = all_reduce_sum(acc)
        return (acc[0] / acc[1].clamp_min(1)).item()

    # ---- the loop ----------------------------------------------------------------------------
    def _run_epoch(self, stop_at: int, preempt: Preempted) -> str:
        """Train until the epoch ends, ``stop_at`` is reached or a SIGTERM arrives."""
        cfg, o = self.cfg, self.cfg.optim
        in_epoch = self.step - self.epoch * self.steps_per_epoch
        self.loader.set_epoch(self.epoch, start_batch=in_epoch * o.accum_steps)
        micro, t0 = [], time.perf_counter()
        run_loss, n_ok = torch.zeros((), device=self.d.device), 0
        for batch in self.loader:
            micro.append(batch)
            if len(micro) < o.accum_steps:
                continue
            lr, wd = self._set_schedules()
            loss, stepped, preempted = self.engine.step(micro, (self.step + 1) / self.total, preempt.flag)
            micro = []
            if stepped:
                self.bad, run_loss, n_ok = 0, run_loss + loss, n_ok + 1
            else:
                self.bad += 1
                tqdm.write(f"step {self.step}: non-finite loss or gradient, step skipped ({self.bad} in a row)")
                if self.bad >= cfg.max_bad_steps:
                    raise TrainingStopped(
                        f"stopping after {self.bad} consecutive non-finite steps (max_bad_steps={cfg.max_bad_steps}); "
                        f"the last good checkpoint is {self._ckpt_path('last')}"
                    )
            self.step += 1
            self.bar.update(1)
            if self.step % cfg.log_every == 0 and n_ok:
                mean = (all_reduce_sum(run_loss / n_ok) / self.d.world).item()  # the mean over ranks
                self._log(
                    {
                        "step": self.step,
                        "epoch": self.epoch,
                        "lr": lr,
                        "wd": wd,
                        "loss": mean,
                        "img_per_s": n_ok * o.batch_size / (time.perf_counter() - t0),
                        "bad_steps": self.bad,
                    }
                )
                self.bar.set_postfix(loss=f"{mean:.4f}")
                run_loss, n_ok, t0 = torch.zeros_like(run_loss), 0, time.perf_counter()
            if self.monitor.due(self.step):
                row = self.monitor.check(self.step)
                self._log({"step": self.step, "epoch": self.epoch} | row)
                t0 += row["monitor_s"]  # img_per_s counts training time only
            at_epoch_end = self.step % self.steps_per_epoch == 0
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and not at_epoch_end:
                self._save()
            if preempted:
                return "preempted"
            if at_epoch_end or self.step >= stop_at:
                return "running"
        raise ConfigError(
            f"data.sources: the loader ended before epoch {self.epoch} was complete: the sources hold "
            f"fewer samples than when {self._ckpt_path('last')} was written; use a new out= directory"
        )

    def fit(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        self.tb = SummaryWriter(self.out / "tb") if self.d.main else None
        stop_at = min(self.total, cfg.max_steps) if cfg.max_steps else self.total
        preempt = Preempted()
        self.bar = tqdm(total=stop_at, initial=self.step, desc=cfg.method, disable=not self.d.main, dynamic_ncols=True)
        self.method.train()
        self.monitor.start()
        status = "running"
        try:
            while self.step < stop_at and status == "running":
                status = self._run_epoch(stop_at, preempt)
                if self.step // self.steps_per_epoch > self.epoch:
                    self.epoch = self.step // self.steps_per_epoch
                    self._end_epoch()
                elif status == "preempted":
                    self._save()
                elif self.step >= stop_at:
                    self._end_epoch()  # a step limit mid-epoch still validates, so best.pt is a measured choice
        finally:
            preempt.restore()
            self.bar.close()
            if self.tb:
                self.tb.close()
        if status == "preempted":
            if self.d.main:
                tqdm.write(f"preempted: checkpoint written at step {self.step} to {self._ckpt_path('last')}")
        elif self.d.main:
            if not self._ckpt_path("best").is_file():
                self._save("best")
            export_run(self.out, which="best")
        summary = {
            "status": "preempted" if status == "preempted" else "done",
            "step": self.step,
            "best_val": self.best_val,
            "out": str(self.out),
        } | self.monitor.summary()
        if self.d.main:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
            if self.monitor.on:
                tqdm.write(self.monitor.report())
        barrier()
        return summary

    def _end_epoch(self) -> None:
        if self.val_loader is not None:
            val = self.validate()
            self._log({"step": self.step, "epoch": self.epoch, "val_loss": val} | self.monitor.check(self.step))
            if self.d.main:
                tqdm.write(f"epoch {self.epoch}: val loss {val:.4f}")
            keep = self.monitor.keep_best(self.step, val, self.best_val)  # lowest val loss, or best monitor score
            self.best_val = min(self.best_val, val)
            if keep:
                self._save("best")
        self._save()


def train(cfg: Config) -> dict:
    try:
        return Trainer(cfg).fit()
    finally:
        shutdown()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = f"methods (the config's method=): {', '.join(method_names())}"
    p.add_argument(
        "--config", required=True, help="a YAML file or the name of a shipped config (tiny, salt_vitb16, ...)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 data.sources=[dir1,dir2]")


def run(args: argparse.Namespace) -> int:
    result = train(load_config(args.config, args.overrides))
    if result["status"] == "done":
        print(f"done: {result['step']} steps, best val loss {result['best_val']:.4f}; export in {result['out']}/export")
    return 0
