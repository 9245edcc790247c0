import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY = [
    "model.arch=vit_tiny_patch16_224",
    "model.patch_size=8",
    "model.depth=2",
    "data.img_size=32",
    "model.pred_dim=48",
    "model.pred_depth=1",
    "model.pred_heads=2",
    "model.dec_dim=48",
    "model.dec_depth=1",
    "model.dec_heads=2",
    "mask.min_keep=2",
]


@pytest.fixture
def tiny_overrides():
    """Dotted overrides for a 2-block ViT on 32-px images (a 4 x 4 patch grid)."""
    return list(TINY)


@pytest.fixture
def stage1_run(tmp_path, tiny_overrides):
    """A run directory holding a (randomly initialised) V-Pixel checkpoint, as stage 1 leaves it."""
    from usjepa.checkpoint import FORMAT, save_atomic
    from usjepa.config import load_config, to_dict
    from usjepa.methods import build_method

    run = tmp_path / "stage1"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config("tiny", tiny_overrides + ["method=vpixel", f"out={run}"])
    torch.manual_seed(1)
    method = build_method(cfg)
    save_atomic(
        {"format": FORMAT, "config": to_dict(cfg), "model": method.state_dict(), "step": 0, "epoch": 0},
        run / "checkpoints" / "best.pt",
    )
    return run


def write_image_folder(root, n: int = 64, size: int = 40, seed: int = 0):
    """``n`` PNG frames that look like B-mode: a textured sector with bright and dark inclusions on black."""
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    fan = (np.hypot(yy, xx - size / 2) < size * 0.95) & (np.abs(xx - size / 2) < yy * 0.8 + 2)
    for i in range(n):
        tissue = np.full((size, size), 0.5, np.float32)
        for _ in range(3):
            cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(3, 7)
            tissue[np.hypot(yy - cy, xx - cx) < r] = rng.choice([0.1, 1.0])
        img = tissue * rng.rayleigh(0.6, (size, size)) * fan
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / f"frame_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "frames")
