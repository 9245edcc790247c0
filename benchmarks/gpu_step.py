"""The paper's pretraining steps on a GPU: images/s, model FLOPs utilisation (MFU) and peak memory.

Stage 1 (V-Pixel teacher) and stage 2 (SALT student, frozen teacher) at the paper's recipe (ViT-B/16 at 224 px,
batch 128, 12 x 384 predictor), run as the Trainer runs a step (usjepa.engine.StepEngine: bf16 autocast on
CUDA, forward, backward, clipping, the finite check, AdamW, the method's end-of-step hook). Masks are made before
the timed region, as DataLoader workers would. FLOPs per step are counted once by torch's FlopCounterMode
(forward + backward matmuls, convolutions and attention); MFU = FLOPs/step x steps/s / the device's dense bf16 peak.

  python benchmarks/gpu_step.py                          # salt and vpixel, eager, on cuda
  python benchmarks/gpu_step.py --compile                # torch.compile'd (teacher eager)
  python benchmarks/gpu_step.py --device cpu --config tiny --batch 8 --steps 2 --peak-tflops 1   # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from step_throughput import collated, engine_step, fabricate_teacher  # the same teacher and masks
from usjepa.config import load_config
from usjepa.methods import build_method

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}  # dense, SXM where it applies


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, method, args, device: torch.device, peak: float) -> None:
    data = [
        {k: v.to(device) for k, v in b.items()}
        for b in collated(method.cfg, method.mask_kind, 4, method.encoder.patch_size)
    ]
    eager = engine_step(method)
    with FlopCounterMode(display=False) as counter:  # counted eagerly: compiled graphs hide their ops from it
        eager(data[0])
    flops = counter.get_total_flops()
    step = engine_step(method, compile=True) if args.compile else eager
    for i in range(args.warmup):
        step(data[i % len(data)])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(data[i % len(data)])
    sync(device)
    per_step = (time.perf_counter() - t0) / args.steps
    batch = method.cfg.optim.batch_size
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(
        f"{name:<8}{batch / per_step:10.1f}{per_step * 1e3:10.1f}{flops / 1e9:12.1f}"
        f"{100 * flops / per_step / (peak * 1e12):8.1f}{mem:10.1f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--config", default="salt_vitb16", help="the recipe's size (salt_vitb16: the paper's)")
    p.add_argument("--batch", type=int, default=128, help="images per step on this one device")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: known from its name)")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    if peak is None:
        p.error(f"unknown peak for '{name}': give --peak-tflops")
    print(
        f"torch {torch.__version__} on {name} (peak {peak:g} TFLOP/s bf16); {args.config}, batch {args.batch}, "
        f"{'compiled' if args.compile else 'eager'}; {args.steps} timed steps after {args.warmup}"
    )
    print(f"{'method':<8}{'img/s':>10}{'ms/step':>10}{'GFLOP/step':>12}{'MFU %':>8}{'peak GiB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = fabricate_teacher(Path(tmp), load_config(args.config, ["method=vpixel"]))
        for method_name in ("salt", "vpixel"):
            overrides = [f"method={method_name}", f"teacher.source={teacher}", f"optim.batch_size={args.batch}"]
            torch.manual_seed(0)
            measure(method_name, build_method(load_config(args.config, overrides)).to(device), args, device, peak)


if __name__ == "__main__":
    main()
