import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY = [
    "model.arch=vit_tiny_patch16_224", "model.patch_size=8", "model.depth=2", "data.img_size=32",
    "model.pred_dim=48", "model.pred_depth=1", "model.pred_heads=2",
    "model.dec_dim=48", "model.dec_depth=1", "model.dec_heads=2", "mask.min_keep=2",
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
    save_atomic({"format": FORMAT, "config": to_dict(cfg), "model": method.state_dict(), "step": 0, "epoch": 0},
                run / "checkpoints" / "best.pt")
    return run
