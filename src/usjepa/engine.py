"""One optimiser step of any method: the code the Trainer runs and the step benchmarks time.

A step is: the schedules set on the AdamW groups, forward and backward over the micro-batches (bf16 autocast on
CUDA) with token-weighted accumulation, gradient clipping, the finite check (the step's one host sync, shared
with the preemption flag), AdamW, and the method's ``on_step_end`` hook.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from usjepa.distributed import all_reduce_sum
from usjepa.methods.base import Method


def param_groups(model: nn.Module) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases, norms and 1-d parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "wd_scale": 1.0}, {"params": no_decay, "wd_scale": 0.0, "weight_decay": 0.0}]


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; full precision elsewhere."""
    return torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


class StepEngine:
    """Steps ``method`` (already on its device) with AdamW built from its config.

    ``world`` > 1 wraps it in DDP (a process group must be up); ``compile`` wraps it in ``torch.compile``, the
    frozen teacher kept eager (dynamo cannot trace its inference_mode tensors). ``check_finite=False`` drops
    the finite check and its host sync (every step is then applied): for measuring what that sync costs.
    ``adamw`` overrides the optimiser's keyword arguments (e.g. ``foreach=False``).
    """

    def __init__(self, method: Method, world: int = 1, compile: bool = False, check_finite: bool = True, **adamw):
        o = method.cfg.optim
        self.method, self.world, self.check_finite = method, world, check_finite
        self.device = next(method.parameters()).device
        kwargs = {"lr": o.lr, "betas": o.betas, "weight_decay": o.weight_decay, "foreach": True} | adamw
        self.optimizer = torch.optim.AdamW(param_groups(method), **kwargs)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.model: nn.Module = DDP(method) if world > 1 else method
        if compile:
            if hasattr(method, "teacher"):
                method.teacher.forward = torch.compiler.disable(method.teacher.forward)
            self.model = torch.compile(self.model)
        self.amp = autocast(self.device)

    def set_schedules(self, lr: float, wd: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
            g["weight_decay"] = wd * g["wd_scale"]

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def accumulate(self, micro: list[dict]) -> torch.Tensor:
        """Forward/backward over the micro-batches; returns this rank's share of the loss (on device, no host sync).

        Each micro-batch's mean is weighted by its loss tokens over the step's tokens on all ranks, so the gradient
        (DDP averages over ranks) is the mean over every loss token of the global batch, whatever the world size
        and accumulation: padding and USrc's in-fan targets make token counts differ between samples.
        """
        tokens = torch.stack([self.method.loss_tokens(b) for b in micro]).to(self.device, torch.float32)
        weights = tokens * self.world / all_reduce_sum(tokens.sum()).clamp_min(1.0)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro):
            sync = i == len(micro) - 1 or not isinstance(self.model, DDP)
            with contextlib.nullcontext() if sync else self.model.no_sync(), self.amp:
                loss, _ = self.model(self.to_device(batch))
            (loss * weights[i]).backward()
            total += loss.detach() * weights[i]
        return total

    def apply(self, loss: torch.Tensor, progress: float, stop: bool = False) -> tuple[bool, bool]:
        """Clip and step unless the loss or a gradient is non-finite; returns (stepped, stop on any rank).

        The finite flag and ``stop`` (e.g. a SIGTERM seen on this rank) go through one all-reduce, so every rank
        takes the same decisions. ``progress`` (the fraction of training done after this step) feeds the
        method's ``on_step_end``.
        """
        clip = self.method.cfg.optim.clip_grad or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        bad = 0.0
        if self.check_finite:
            flags = torch.stack([(~torch.isfinite(norm + loss)).float(), norm.new_tensor(float(stop))])
            bad, any_stop = all_reduce_sum(flags).tolist()  # the one host sync per step
            stop = bool(any_stop)
        if not bad:
            self.optimizer.step()
            self.method.on_step_end(progress)
        self.optimizer.zero_grad(set_to_none=True)
        return not bad, stop

    def step(self, micro: list[dict], progress: float = 0.5, stop: bool = False) -> tuple[torch.Tensor, bool, bool]:
        """One optimiser step over ``micro``: (loss on device, stepped, stop on any rank)."""
        loss = self.accumulate(micro)
        stepped, stop = self.apply(loss, progress, stop)
        return loss, stepped, stop
