"""Tiny fabricated inputs for the benchmark tests: a usjepa export (4-block ViT-Tiny, 32 px, patch 8, 1 channel) and
SynthUS-like task folders in the UltraBench layout: noise, noise + a bright blob, noise + stripes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from usjepa.weights import file_sha256

VIT_KWARGS = {"img_size": 32, "patch_size": 8, "in_chans": 1, "num_classes": 0, "depth": 4}


def write_export(out: Path, card_img_size: int = 32, seed: int = 1) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", **VIT_KWARGS)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    card = {
        "arch": "vit_tiny_patch16_224",
        "timm_kwargs": VIT_KWARGS,
        "img_size": card_img_size,
        "patch_size": 8,
        "in_chans": 1,
        "mean": [0.5],
        "std": [0.5],
        "method": "salt",
        "weights_sha256": file_sha256(out / "model.safetensors"),
    }
    (out / "card.json").write_text(json.dumps(card))
    return out


def blob_image(rng: np.random.Generator, label: int, size: int = 32) -> np.ndarray:
    """Class 0: speckle-like noise; 1: plus a bright blob somewhere; 2: plus vertical stripes."""
    img = rng.normal(60, 20, (size, size))
    yy, xx = np.mgrid[:size, :size]
    if label == 1:
        cy, cx = rng.integers(8, size - 8, 2)
        img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30)
    elif label == 2:
        img += 80 * (xx // 2 % 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_task(
    folder: Path,
    n_patients: int = 12,
    per_patient: int = 6,
    n_test_patients: int = 4,
    seed: int = 0,
    probes: tuple[str, ...] = (),
) -> Path:
    """Main layout (train_val.json + test.json), 3 classes, patient groups, scan masks, version.txt; with
    `probes`, each entry names one of them (by patient), as SynthUS's entries do."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks" / "scan").mkdir(parents=True, exist_ok=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[2:30, 2:30] = 1
    splits = {"train_val": [], "test": []}
    for p in range(n_patients + n_test_patients):
        for i in range(per_patient):
            label = (p + i) % 3
            name = f"{p}_{i}.png"
            Image.fromarray(blob_image(rng, label)).save(folder / "images" / name)
            Image.fromarray(mask).save(folder / "masks" / "scan" / name)
            splits["train_val" if p < n_patients else "test"].append(
                {
                    "patient": p,
                    "class": f"c{label}",
                    "label": label,
                    "image": f"images/{name}",
                    "scan_mask": f"masks/scan/{name}",
                }
                | ({"probe": probes[p % len(probes)]} if probes else {})
            )
    for split, entries in splits.items():
        (folder / f"{split}.json").write_text(json.dumps(entries, indent=1))
    (folder / "version.txt").write_text("UltraBench Version: 1.0.1\nCreated: test\n")
    return folder


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def task_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    write_task(root / "synthus_lesion", seed=0)
    write_task(root / "synthus_organ", seed=1)
    return root
