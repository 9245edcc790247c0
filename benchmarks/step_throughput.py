"""Training-step throughput of usjepa's methods beside the peers' own steps, measured side by side in one run.

Setup (issue 15): ViT-T/16 at 224 px, predictor 6 x 192 with 3 heads (the pixel decoders of vpixel and mae
too), batch 32, fp32, CPU with 2 threads. usjepa's steps are usjepa.engine.StepEngine, the code the Trainer
runs: forward, backward, clipping, the finite check, AdamW, the method's end-of-step hook. Masks are made
before the timed region, as DataLoader workers would (per image, per-image seeds). The peers' steps are their
own code, imported from checkouts outside this repository (benchmarks/peers.py says what each runs):

  --ijepa-src DIR   a checkout of facebookresearch/ijepa (52c1ae9)
  --sp-src DIR      a checkout of galilai-group/stable-pretraining (d15ec96)

Without a flag that peer is skipped (and said so). Steps of all variants are interleaved round by round, so
machine load hits them alike; each figure is 32 / the median step time after warm-up.

  python benchmarks/step_throughput.py --ijepa-src /work/peers/ijepa --sp-src /work/peers/stable-pretraining
  python benchmarks/step_throughput.py --ideas      # what each idea is worth on usjepa's salt step
  python benchmarks/step_throughput.py --compile    # torch.compile'd salt step against the eager one
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention
from torch.nn.utils.rnn import pad_sequence

from peers import IJepaStep, SPSaltStep
from usjepa.checkpoint import FORMAT, save_atomic
from usjepa.config import load_config, to_dict
from usjepa.engine import StepEngine
from usjepa.masking import MaskCollator
from usjepa.methods import build_method
from usjepa.methods.base import masked_mean
from usjepa.models.encoder import gather

IMG, PATCH, BATCH, DEPTH, DIM, HEADS = 224, 16, 32, 6, 192, 3
SETUP = [
    "model.arch=vit_tiny_patch16_224",
    f"data.img_size={IMG}",
    "data.in_chans=1",
    f"optim.batch_size={BATCH}",
    f"model.pred_depth={DEPTH}",
    f"model.pred_dim={DIM}",
    f"model.pred_heads={HEADS}",
    f"model.dec_depth={DEPTH}",
    f"model.dec_dim={DIM}",
    f"model.dec_heads={HEADS}",
]
IJEPA, SP = "official I-JEPA (facebookresearch)", "stable-pretraining SALT"


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
    return [
        {
            "image": torch.rand(chans, size, size, generator=g),
            "scan_mask": torch.ones(size, size, dtype=torch.bool),
            "seed": b * n + i,
        }
        for i in range(n)
    ]


def collated(cfg, kind: str, n: int, patch: int = PATCH) -> list[dict]:
    """n collated batches at the config's image size, channels and batch size."""
    d = cfg.data
    collate = MaskCollator(cfg.mask, d.img_size, patch, kind)
    return [collate(images(b, d.img_size, d.in_chans, cfg.optim.batch_size)) for b in range(n)]


def engine_step(method, **engine_kwargs):
    """The Trainer's step (usjepa.engine) on one batch, as a callable for ``bench``."""
    engine = StepEngine(method.train(), **engine_kwargs)
    return lambda batch: engine.step([batch])


# ---- ideas on usjepa's salt step -------------------------------------------------------------------
def per_block_batch(batch: dict, n_blocks: int) -> dict:
    """Targets regrouped one block per row ([n_blocks * B, longest block]), block-major as I-JEPA repeats."""
    rows = [
        batch["tgt_idx"][i][batch["tgt_block"][i] == j] for j in range(n_blocks) for i in range(len(batch["tgt_idx"]))
    ]
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


def per_block(method):
    method.forward = lambda b: salt_per_block_forward(method, b)
    return method


def manual_attention(method):
    for m in method.modules():
        if isinstance(m, Attention):
            m.fused_attn = False
    return method


def cached_teacher(method, batches: list[dict]):
    """The teacher's targets computed once, before timing: the step without the teacher's forward pass."""
    with torch.inference_mode():
        cache = {b["image"].data_ptr(): method.teacher(b["image"]) for b in batches}
    method.targets = lambda img: cache[img.data_ptr()].clone()
    return method


def no_grad_teacher(step):
    """The teacher under no_grad instead of inference_mode."""

    def run(batch):
        with mock.patch.object(torch, "inference_mode", torch.no_grad):
            return step(batch)

    return run


# ---- timing -----------------------------------------------------------------------------------------
def bench(variants: dict[str, tuple], steps: int, warmup: int) -> dict[str, tuple[float, float]]:
    """(median, best) img/s per variant; each round runs one step of every variant (order rotated)."""
    names, times = list(variants), {k: [] for k in variants}
    for r in range(warmup + steps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step, batches = variants[name]
            t0 = time.perf_counter()
            step(batches[r % len(batches)])
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: (BATCH / statistics.median(v), BATCH / min(v)) for k, v in times.items()}


def table(title: str, ips: dict[str, tuple[float, float]], ref: str) -> None:
    """Median img/s, its ratio to ``ref``, and the best step's img/s (the least disturbed by other load)."""
    print(f"\n{title}\n{'step':<40}{'img/s':>8}{'ratio':>8}{'best':>8}   ratio: median img/s over {ref}")
    for name, (med, best) in ips.items():
        print(f"{name:<40}{med:8.2f}{med / ips[ref][0]:8.2f}{best:8.2f}")


def peer_variants(args, mask) -> dict[str, tuple]:
    out = {}
    if args.ijepa_src:
        ijepa = IJepaStep(args.ijepa_src, mask, DEPTH, DIM)
        out[IJEPA] = (ijepa, ijepa.batches(args.batches, BATCH))
    if args.sp_src:
        out[SP] = (SPSaltStep(args.sp_src, mask, DEPTH, DIM, HEADS), SPSaltStep.batches(args.batches, BATCH))
    skipped = [
        f"{name} (give {flag} DIR)"
        for name, flag, src in ((IJEPA, "--ijepa-src", args.ijepa_src), (SP, "--sp-src", args.sp_src))
        if not src
    ]
    if skipped:
        print("skipped peers: " + "; ".join(skipped))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batches", type=int, default=4, help="distinct mask batches, cycled")
    p.add_argument("--ijepa-src", metavar="DIR", help="a checkout of facebookresearch/ijepa (52c1ae9)")
    p.add_argument("--sp-src", metavar="DIR", help="a checkout of galilai-group/stable-pretraining (d15ec96)")
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
            variants = {
                ref: (engine_step(salt()), batches),
                "torch.compile (teacher eager)": (engine_step(salt(), compile=True), batches),
            }
        elif args.ideas:
            padded = usjepa_config("salt", teacher, ("mask.pad_mode=pad",))
            variants = {
                ref: (engine_step(salt()), batches),
                "teacher forward skipped (cached)": (engine_step(cached_teacher(salt(), batches)), batches),
                "teacher under no_grad": (no_grad_teacher(engine_step(salt())), batches),
                "predictor once per target block": (
                    engine_step(per_block(salt())),
                    [per_block_batch(b, 4) for b in batches],
                ),
                "masks padded, not truncated": (
                    engine_step(build_method(padded)),
                    collated(padded, "multiblock", args.batches),
                ),
                "attention by hand (no SDPA)": (engine_step(manual_attention(salt())), batches),
                "no host sync (finite check off)": (engine_step(salt(), check_finite=False), batches),
                "AdamW for-loop (foreach=False)": (engine_step(salt(), foreach=False), batches),
                "AdamW fused=True": (engine_step(salt(), foreach=False, fused=True), batches),
            }
        else:
            variants = {"usjepa salt": (engine_step(salt()), batches)}
            for m in ("ijepa", "vpixel", "mae"):
                method = build_method(usjepa_config(m))
                variants[f"usjepa {m}"] = (engine_step(method), collated(method.cfg, method.mask_kind, args.batches))
            variants |= peer_variants(args, salt_cfg.mask)
            ref = IJEPA if IJEPA in variants else "usjepa ijepa"
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, fp32; "
            f"median of {args.steps} steps after warm-up, interleaved"
        )
        warmup = max(args.warmup, args.batches) if args.compile else args.warmup  # compile every batch shape first
        ips = bench(variants, args.steps, warmup)
    table("img/s, higher is better", ips, ref)
    if not (args.ideas or args.compile):
        med = {k: v[0] for k, v in ips.items()}
        print()
        for other, goal in (("usjepa ijepa", ""), (IJEPA, "   (goal >= 1.75)"), (SP, "   (goal > 1)")):
            if other in med:
                print(f"{'usjepa salt / ' + other:<56}{med['usjepa salt'] / med[other]:6.2f}{goal}")


if __name__ == "__main__":
    main()
