"""Does the loader keep a training step fed? Loader img/s (2 workers) beside the SALT step's img/s.

Tiny CPU config (``src/usjepa/configs/tiny.yaml``: ViT-T, patch 8, 64 px, batch 32). The loader figure is
the full worker pipeline -- PNG decode, preprocessing (grayscale, crop to the scan region, 2-98th
percentile rescale, resize-pad), augmentations and multi-block mask collation -- over synthetic
320x256 B-mode-like frames with fan masks, read from
  folder   an UltraBench-layout folder of raw PNGs (preprocessed in the workers), and
  shards   the same frames after ``usjepa ingest`` (preprocessed once, at ingest).
The step figure is the Trainer's step (usjepa.engine) of SALT (a frozen random V-Pixel teacher), with
masks made beforehand. Both are batch / median time per batch after warm-up, measured in one run.

  python benchmarks/loader_throughput.py [--batches 12] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from usjepa.checkpoint import FORMAT, save_atomic
from usjepa.config import load_config, to_dict
from usjepa.data import ingest
from usjepa.data.corpus import build_pretrain_loader
from usjepa.engine import StepEngine
from usjepa.masking import MaskCollator
from usjepa.methods import build_method

H, W, N_IMAGES = 256, 320, 400


def fan_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A speckled sector (Rayleigh amplitude, depth attenuation) on black, with vendor-like text bars."""
    yy, xx = np.mgrid[0:H, 0:W]
    r, ang = np.hypot(yy + 20, xx - W / 2), np.arctan2(xx - W / 2, yy + 20)
    mask = (r < H + 10) & (np.abs(ang) < 0.7)
    amp = rng.rayleigh(1.0, (H, W)) * np.exp(-r / 400) * (1 + 0.5 * np.sin(xx / 17) * np.cos(yy / 23))
    img = np.where(mask, np.clip(amp * 70, 0, 255), 0).astype(np.uint8)
    img[4:12, 8:80] = 230  # burnt-in text band
    return img, mask


def write_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks" / "scan").mkdir(parents=True)
    recs = []
    for i in range(N_IMAGES):
        img, mask = fan_frame(rng)
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / "scan" / f"{i}.png")
        recs.append({"image": f"images/{i}.png", "scan_mask": f"masks/scan/{i}.png", "patient": i // 10})
    (root / "train_val.json").write_text(json.dumps(recs))
    (root / "test.json").write_text("[]")
    return root


def tiny_config(sources: list[str], teacher: str, workers: int, method: str = "salt"):
    return load_config(
        "tiny", {"method": method, "teacher": {"source": teacher}, "data": {"sources": sources, "num_workers": workers}}
    )


def fabricate_teacher(tmp: Path) -> str:
    cfg = tiny_config([], "", 0, method="vpixel")
    run = tmp / "stage1"
    (run / "checkpoints").mkdir(parents=True)
    state = {"format": FORMAT, "config": to_dict(cfg), "model": build_method(cfg).state_dict(), "step": 0, "epoch": 0}
    save_atomic(state, run / "checkpoints" / "best.pt")
    return str(run)


def loader_rate(cfg, collate, n_batches: int) -> float:
    loader = build_pretrain_loader(cfg, "train", 0, 1, collate)
    times, epoch = [], 0
    while len(times) < n_batches + 2:  # 2 warm-up batches (worker start, first decodes)
        loader.set_epoch(epoch)
        t = time.perf_counter()
        for batch in loader:
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            if len(times) >= n_batches + 2:
                break
        epoch += 1
    return batch["image"].shape[0] / statistics.median(times[2:])


def step_rate(cfg, collate, n_batches: int) -> float:
    torch.manual_seed(0)
    engine = StepEngine(build_method(cfg).train())
    g = torch.Generator().manual_seed(0)
    s = cfg.data.img_size
    batches = [
        collate(
            [
                {
                    "image": torch.rand(1, s, s, generator=g),
                    "scan_mask": torch.ones(s, s, dtype=torch.bool),
                    "seed": b * 100 + i,
                    "index": i,
                }
                for i in range(cfg.optim.batch_size)
            ]
        )
        for b in range(4)
    ]
    times = []
    for k in range(n_batches + 2):
        t = time.perf_counter()
        engine.step([batches[k % 4]])
        times.append(time.perf_counter() - t)
    return cfg.optim.batch_size / statistics.median(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder = write_folder(tmp / "synth")
        shards = tmp / "shards"
        ingest.run(
            argparse.Namespace(
                sources=[str(folder)], out=str(shards), size=128, shard_size=200, dedup=0, drop_flagged=False
            )
        )
        teacher = fabricate_teacher(tmp)
        base = tiny_config([str(folder)], teacher, args.workers)
        method = build_method(base)
        collate = MaskCollator(base.mask, base.data.img_size, method.encoder.patch_size, method.mask_kind)
        step = step_rate(base, collate, args.batches)
        rows = [("SALT step (tiny, 2 threads)", step, None)]
        for name, src in (("loader: raw folder", str(folder)), ("loader: ingested shards", str(shards / "*.tar"))):
            rate = loader_rate(tiny_config([src], teacher, args.workers), collate, args.batches)
            rows.append((f"{name} ({args.workers} workers)", rate, rate / step))
    print(f"\n{'':42s}{'img/s':>9s}{'x step':>9s}")
    for name, rate, ratio in rows:
        print(f"{name:42s}{rate:9.0f}{'' if ratio is None else f'{ratio:9.2f}'}")
    print("goal: loader >= 2x the step's img/s")


if __name__ == "__main__":
    main()
