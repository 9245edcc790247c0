"""Training-step throughput of usjepa's methods against two peers' steps, measured side by side.

Setup (issue 2, acceptance 7): ViT-T/16 at 224 px, one input channel, predictor 6 x 192 with 3 heads
(the pixel decoders of vpixel and mae too), batch 32, fp32, CPU with 2 threads. A step is forward +
backward + AdamW step (+ clipping where the code clips). Masks are made before the timed region, as
DataLoader workers would. Steps of all variants are interleaved round by round, so machine load hits
them alike; each figure is 32 / the median step time after warm-up.

Peers, re-implemented here from their public code:
  ijepa-ref   facebookresearch/ijepa src/train.py: EMA target encoder, per-image masks truncated to the
              batch minimum, the predictor run once per target block (context repeated), attention
              written out as softmax(q k^T) v. No gradient clipping, as in its loop.
  sp-salt     galilai-group/stable-pretraining SALT: one mask for the whole batch, all targets in one
              predictor pass, fused attention (SDPA), frozen teacher under no_grad, L1 loss, clipping.

  python benchmarks/step_throughput.py              # usjepa salt/ijepa/vpixel/mae and both peers
  python benchmarks/step_throughput.py --ideas      # what each idea is worth on usjepa's salt step
  python benchmarks/step_throughput.py --compile    # torch.compile against eager (compiling takes minutes)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Attention, Block
from torch.nn.utils.rnn import pad_sequence

from usjepa.checkpoint import FORMAT, save_atomic
from usjepa.config import MaskConfig, load_config, to_dict
from usjepa.masking import MaskCollator
from usjepa.methods import build_method
from usjepa.methods.base import masked_mean
from usjepa.models.encoder import create_vit, gather
from usjepa.train import param_groups

IMG, PATCH, BATCH, DIM, HEADS = 224, 16, 32, 192, 3
GRID = IMG // PATCH
SETUP = [
    "model.arch=vit_tiny_patch16_224", f"data.img_size={IMG}", "data.in_chans=1", f"optim.batch_size={BATCH}",
    "model.pred_depth=6", f"model.pred_dim={DIM}", f"model.pred_heads={HEADS}",
    "model.dec_depth=6", f"model.dec_dim={DIM}", f"model.dec_heads={HEADS}",
]


# ---- usjepa ---------------------------------------------------------------------------------------
def usjepa_config(method: str, teacher: str = "", extra: tuple = ()):
    """The paper's recipe (masks, optimiser, clipping) at the benchmark's size."""
    return load_config("salt_vitb16", SETUP + [f"method={method}", f"teacher.source={teacher}", *extra])


def fabricate_teacher(tmp: Path, cfg=None) -> str:
    """A stage-1 run directory holding a randomly initialised V-Pixel checkpoint (of ``cfg``; default ViT-T/16)."""
    cfg = cfg or usjepa_config("vpixel")
    run = tmp / "stage1"
    (run / "checkpoints").mkdir(parents=True)
    state = {"format": FORMAT, "config": to_dict(cfg), "model": build_method(cfg).state_dict(), "step": 0, "epoch": 0}
    save_atomic(state, run / "checkpoints" / "best.pt")
    return str(run)


def images(b: int, size: int = IMG, chans: int = 1, n: int = BATCH) -> list[dict]:
    """One batch of dataset items (random pixels; throughput does not depend on content)."""
    g = torch.Generator().manual_seed(b)
    return [{"image": torch.rand(chans, size, size, generator=g), "scan_mask": torch.ones(size, size, dtype=torch.bool),
             "seed": b * n + i} for i in range(n)]


def collated(cfg, kind: str, n: int, patch: int = PATCH) -> list[dict]:
    """n collated batches at the config's image size, channels and batch size."""
    d = cfg.data
    collate = MaskCollator(cfg.mask, d.img_size, patch, kind)
    return [collate(images(b, d.img_size, d.in_chans, cfg.optim.batch_size)) for b in range(n)]


class EngineStep:
    """usjepa's step as Trainer._train_step + _apply_step run it in one process without accumulation (so the
    loss-token weight is 1): forward (bf16 autocast on CUDA), backward, clip, the finite check (the step's one
    host sync), AdamW, the method's end-of-step hook. Compiled, the teacher stays eager: dynamo cannot trace its
    inference_mode tensors."""

    def __init__(self, method, sync: bool = True, compile: bool = False, **adamw):
        self.method, self.sync = method.train(), sync
        o = method.cfg.optim
        adamw = {"foreach": True} | adamw  # as the Trainer builds it
        self.opt = torch.optim.AdamW(param_groups(method), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, **adamw)
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        if compile and hasattr(method, "teacher"):
            method.teacher.forward = torch.compiler.disable(method.teacher.forward)
        self.model = torch.compile(method) if compile else method
        cuda = self.params[0].device.type == "cuda"
        self.amp = torch.autocast("cuda", torch.bfloat16) if cuda else contextlib.nullcontext()

    def __call__(self, batch: dict) -> None:
        with self.amp:
            loss, _ = self.model(batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.method.cfg.optim.clip_grad)
        if not self.sync or torch.isfinite(norm + loss).item():
            self.opt.step()
            self.method.on_step_end(0.5)
        self.opt.zero_grad(set_to_none=True)


# ---- peer 1: facebookresearch/ijepa ----------------------------------------------------------------
def sincos(dim: int) -> torch.Tensor:
    return build_sincos2d_pos_embed([GRID, GRID], dim).reshape(1, GRID * GRID, dim)


def apply_masks(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """I-JEPA's apply_masks: one gather per mask, stacked along the batch."""
    return torch.cat([gather(x, m) for m in masks])


class HandBlock(nn.Module):
    """I-JEPA's pre-norm block, attention written out by hand."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class RefViT(nn.Module):
    """I-JEPA's ViT-T/16: no CLS token, fixed sin-cos positions, optional context masks."""

    def __init__(self, depth: int = 12):
        super().__init__()
        self.patch_embed = nn.Conv2d(1, DIM, PATCH, PATCH)
        self.register_buffer("pos", sincos(DIM))
        self.blocks = nn.ModuleList(HandBlock(DIM, HEADS) for _ in range(depth))
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def forward(self, img: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = self.patch_embed(img).flatten(2).transpose(1, 2) + self.pos
        if masks is not None:
            x = apply_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class RefPredictor(nn.Module):
    """I-JEPA's predictor: the context is repeated once per target block, each copy with that block's mask tokens."""

    def __init__(self, depth: int = 6):
        super().__init__()
        self.embed, self.proj = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.register_buffer("pos", sincos(DIM))
        self.blocks = nn.ModuleList(HandBlock(DIM, HEADS) for _ in range(depth))
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def forward(self, z: torch.Tensor, masks_ctx: list[torch.Tensor], masks_tgt: list[torch.Tensor]) -> torch.Tensor:
        pos = self.pos.expand(len(z), -1, -1)
        x = self.embed(z) + apply_masks(pos, masks_ctx)
        n_ctx = x.shape[1]
        queries = self.mask_token + apply_masks(pos, masks_tgt)
        x = torch.cat([x.repeat(len(masks_tgt), 1, 1), queries], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.proj(self.norm(x)[:, n_ctx:])


class IJepaRefStep:
    def __init__(self):
        torch.manual_seed(0)
        self.encoder, self.predictor = RefViT(), RefPredictor()
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.opt = torch.optim.AdamW(param_groups(nn.ModuleList([self.encoder, self.predictor])), lr=1e-4, weight_decay=0.04)

    def __call__(self, batch: tuple) -> float:
        img, masks_ctx, masks_tgt = batch
        with torch.no_grad():
            h = self.target(img)
            h = apply_masks(F.layer_norm(h, h.shape[-1:]), masks_tgt)
        z = self.predictor(self.encoder(img, masks_ctx), masks_ctx, masks_tgt)
        loss = F.smooth_l1_loss(z, h)
        loss.backward()
        self.opt.step()
        self.grad_stats = [float(p.grad.norm()) for n, p in self.encoder.named_parameters() if n.endswith("qkv.weight")]
        self.opt.zero_grad()
        with torch.no_grad():  # EMA, one parameter at a time as in its loop
            m = 0.996
            for q, k in zip(self.encoder.parameters(), self.target.parameters()):
                k.mul_(m).add_((1.0 - m) * q.detach())
        return loss.item()


def ijepa_block_size(rng: np.random.Generator, scale, aspect) -> tuple[float, float]:
    """I-JEPA's rule, one size per batch: (scale, aspect) that make usjepa's collator draw exactly that block."""
    r = rng.uniform()
    keep = int(GRID * GRID * (scale[0] + r * (scale[1] - scale[0])))
    a = aspect[0] + r * (aspect[1] - aspect[0])
    h, w = min(round(math.sqrt(keep * a)), GRID - 1), min(round(math.sqrt(keep / a)), GRID - 1)
    return h * w / (GRID * GRID), h / w


def ijepa_batches(mask: MaskConfig, n: int) -> list[tuple]:
    """I-JEPA's collator: block sizes drawn once per batch, positions per image, masks truncated to the
    batch minimum; returned as (images, [context indices], [indices of each target block])."""
    rng, out = np.random.default_rng(0), []
    for b in range(n):
        s_t, a_t = ijepa_block_size(rng, mask.tgt_scale, mask.tgt_aspect)
        s_c, a_c = ijepa_block_size(rng, mask.ctx_scale, (1.0, 1.0))
        cfg = MaskConfig(ctx_scale=(s_c, s_c), ctx_aspect=(a_c, a_c), tgt_scale=(s_t, s_t), tgt_aspect=(a_t, a_t),
                         n_targets=mask.n_targets, min_keep=mask.min_keep, pad_mode="truncate")
        batch = MaskCollator(cfg, IMG, PATCH)(images(b))
        blk = batch["tgt_block"][0]
        tgts = [batch["tgt_idx"][:, blk == j] for j in range(mask.n_targets)]
        out.append((batch["image"], [batch["ctx_idx"]], tgts))
    return out


# ---- peer 2: stable-pretraining's SALT -------------------------------------------------------------
class SPPredictor(nn.Module):
    """Context and mask-token queries in one self-attention pass (timm blocks: fused SDPA)."""

    def __init__(self, depth: int = 6):
        super().__init__()
        self.context_proj, self.output_proj = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.register_buffer("pos", sincos(DIM))
        self.blocks = nn.Sequential(*[Block(DIM, HEADS, qkv_bias=True) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(DIM)

    def forward(self, z: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> torch.Tensor:
        queries = (self.mask_token + self.pos[:, tgt_idx]).expand(len(z), -1, -1)
        x = self.blocks(torch.cat([self.context_proj(z) + self.pos[:, ctx_idx], queries], dim=1))
        return self.output_proj(self.final_norm(x)[:, len(ctx_idx):])


class SPSaltStep:
    def __init__(self):
        torch.manual_seed(0)
        self.student = create_vit("vit_tiny_patch16_224", in_chans=1, num_classes=0)
        self.teacher = create_vit("vit_tiny_patch16_224", in_chans=1, num_classes=0).eval().requires_grad_(False)
        self.predictor = SPPredictor()
        self.modules = nn.ModuleList([self.student, self.predictor])
        self.opt = torch.optim.AdamW(param_groups(self.modules), lr=1e-4, weight_decay=0.04)

    def encode_context(self, img: torch.Tensor, ctx_idx: torch.Tensor) -> torch.Tensor:
        v = self.student
        x = (v.patch_embed(img) + v.pos_embed[:, 1:])[:, ctx_idx]
        cls = (v.cls_token + v.pos_embed[:, :1]).expand(len(x), -1, -1)
        return v.norm(v.blocks(torch.cat([cls, x], dim=1)))[:, 1:]

    def __call__(self, batch: tuple) -> None:
        img, ctx_idx, tgt_idx = batch
        with torch.no_grad():
            targets = self.teacher.forward_features(img)[:, 1:][:, tgt_idx]
        pred = self.predictor(self.encode_context(img, ctx_idx), ctx_idx, tgt_idx)
        loss = F.l1_loss(pred, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.modules.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()


def sp_batches(mask: MaskConfig, n: int) -> list[tuple]:
    """One multi-block mask per batch: (images, context indices, union of the target blocks)."""
    collate, out = MaskCollator(mask, IMG, PATCH), []
    for b in range(n):
        ctx, tgts = collate.sample(np.random.default_rng(b))
        img = torch.stack([it["image"] for it in images(b)])
        out.append((img, torch.from_numpy(ctx), torch.from_numpy(np.unique(np.concatenate(tgts)))))
    return out


# ---- ideas on usjepa's salt step -------------------------------------------------------------------
def per_block_batch(batch: dict, n_blocks: int) -> dict:
    """Targets regrouped one block per row ([n_blocks * B, longest block]), block-major as I-JEPA repeats."""
    rows = [batch["tgt_idx"][i][batch["tgt_block"][i] == j] for j in range(n_blocks) for i in range(len(batch["tgt_idx"]))]
    idx = pad_sequence(rows, batch_first=True)
    valid = torch.arange(idx.shape[1]) < torch.tensor([len(r) for r in rows])[:, None]
    return {**batch, "rep_idx": idx, "rep_block": torch.where(valid, 0, -1), "rep_keep": valid}


def salt_per_block_forward(method, batch: dict) -> tuple[torch.Tensor, dict]:
    """usjepa's SALT forward with the predictor run once per target block (context repeated), I-JEPA style."""
    img, n = batch["image"], batch["rep_idx"].shape[0] // batch["image"].shape[0]
    h = method.targets(img).repeat(n, 1, 1)
    z = method.encoder(method.normalize(img), batch["ctx_idx"], method.context_keep(batch))
    rep = [t.repeat(n, *[1] * (t.ndim - 1)) for t in (z, batch["ctx_idx"], batch["ctx_keep"])]
    pred = method.predictor(*rep, batch["rep_idx"], batch["rep_block"])
    per_token = F.smooth_l1_loss(pred, gather(h, batch["rep_idx"]), reduction="none").mean(-1)
    loss = masked_mean(per_token, batch["rep_keep"])
    return loss, {"loss": loss.detach()}


class NoGradTeacherStep(EngineStep):
    """The teacher under no_grad instead of inference_mode."""

    def __call__(self, batch: dict) -> None:
        with mock.patch.object(torch, "inference_mode", torch.no_grad):
            super().__call__(batch)


def manual_attention(method):
    for m in method.modules():
        if isinstance(m, Attention):
            m.fused_attn = False
    return method


# ---- timing -----------------------------------------------------------------------------------------
def bench(variants: dict[str, tuple], steps: int, warmup: int) -> dict[str, tuple[float, float]]:
    """(median, best) img/s per variant; each round runs one step of every variant (order rotated), all on batch r."""
    names, times = list(variants), {k: [] for k in variants}
    for r in range(warmup + steps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, batches = variants[name]
            t0 = time.perf_counter()
            step(batches[r % len(batches)])
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: (BATCH / statistics.median(v), BATCH / min(v)) for k, v in times.items()}


def table(title: str, ips: dict[str, tuple[float, float]], ref: str) -> None:
    """Median img/s, its ratio to ``ref``, and the best step's img/s (the least disturbed by other load)."""
    print(f"\n{title}\n{'step':<36}{'img/s':>8}{'ratio':>8}{'best':>8}   ratio: median img/s over {ref}")
    for name, (med, best) in ips.items():
        print(f"{name:<36}{med:8.2f}{med / ips[ref][0]:8.2f}{best:8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batches", type=int, default=4, help="distinct mask batches, cycled")
    p.add_argument("--ideas", action="store_true", help="measure the ideas on usjepa's salt step instead")
    p.add_argument("--compile", action="store_true", help="torch.compile'd salt step against the eager one instead")
    args = p.parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        teacher = fabricate_teacher(Path(tmp))
        salt_cfg = usjepa_config("salt", teacher)
        salt = lambda: build_method(salt_cfg)  # noqa: E731
        batches = collated(salt_cfg, "multiblock", args.batches)
        ref = f"salt (engine: {salt_cfg.mask.pad_mode}, SDPA, 1 pass)"
        if args.compile:
            variants = {ref: (EngineStep(salt()), batches), "torch.compile (teacher eager)": (EngineStep(salt(), compile=True), batches)}
        elif args.ideas:
            per_block = salt()
            per_block.forward = lambda b: salt_per_block_forward(per_block, b)
            variants = {
                ref: (EngineStep(salt()), batches),
                "predictor once per target block": (EngineStep(per_block), [per_block_batch(b, 4) for b in batches]),
                "attention by hand (no SDPA)": (EngineStep(manual_attention(salt())), batches),
                "teacher under no_grad": (NoGradTeacherStep(salt()), batches),
                "no host sync (finite check off)": (EngineStep(salt(), sync=False), batches),
                "AdamW for-loop (foreach=False)": (EngineStep(salt(), foreach=False), batches),
                "AdamW fused=True": (EngineStep(salt(), foreach=False, fused=True), batches),
            }
        else:
            variants = {"usjepa salt": (EngineStep(salt()), batches)}
            for m in ("ijepa", "vpixel", "mae"):
                method = build_method(usjepa_config(m))
                variants[f"usjepa {m}"] = (EngineStep(method), collated(method.cfg, method.mask_kind, args.batches))
            variants["ijepa-ref (facebookresearch)"] = (IJepaRefStep(), ijepa_batches(salt_cfg.mask, args.batches))
            variants["sp-salt (stable-pretraining)"] = (SPSaltStep(), sp_batches(salt_cfg.mask, args.batches))
            ref = "ijepa-ref (facebookresearch)"
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, fp32; "
              f"median of {args.steps} steps after warm-up, interleaved")
        warmup = max(args.warmup, args.batches) if args.compile else args.warmup  # compile every batch shape first
        ips = bench(variants, args.steps, warmup)
    table("img/s, higher is better", ips, ref)
    if not (args.ideas or args.compile):
        med = {k: v[0] for k, v in ips.items()}
        print(f"\nsalt / ijepa, both usjepa      {med['usjepa salt'] / med['usjepa ijepa']:.2f}")
        print(f"salt / ijepa-ref               {med['usjepa salt'] / med['ijepa-ref (facebookresearch)']:.2f}   (goal >= 1.75)")
        print(f"salt / sp-salt                 {med['usjepa salt'] / med['sp-salt (stable-pretraining)']:.2f}   (goal > 1)")


if __name__ == "__main__":
    main()
