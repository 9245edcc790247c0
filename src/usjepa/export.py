"""Backbone export (safetensors + a JSON card, loadable by timm unchanged) and encoder loading."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch.nn as nn
from safetensors.torch import save_file

from usjepa.checkpoint import find_checkpoint, load_checkpoint
from usjepa.config import config_from_dict
from usjepa.errors import CheckpointError
from usjepa.models.encoder import create_vit, vit_kwargs
from usjepa.paths import out_dir
from usjepa.weights import check_finite, file_sha256, load_weights, state_dict_from

CARD, WEIGHTS = "card.json", "model.safetensors"
STUDENT_MEAN, STUDENT_STD = (0.5,), (0.5,)
BACKBONE = "encoder.vit."  # every method keeps the backbone it exports under this name


def vit_from_checkpoint(ckpt: dict, path) -> tuple[nn.Module, dict]:
    cfg = config_from_dict(ckpt["config"])
    vit = create_vit(cfg.model.arch, **vit_kwargs(cfg))
    sd = check_finite({k[len(BACKBONE):]: v for k, v in ckpt["model"].items() if k.startswith(BACKBONE)}, path)
    missing, unexpected = vit.load_state_dict(sd, strict=False)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks backbone weights {missing[:3]}...")
    card = {
        "format": "usjepa-export/1",
        "arch": cfg.model.arch,
        "timm_kwargs": vit_kwargs(cfg),
        "img_size": cfg.data.img_size,
        "patch_size": vit.patch_embed.patch_size[0],
        "in_chans": cfg.data.in_chans,
        "embed_dim": vit.embed_dim,
        "mean": list(STUDENT_MEAN) * cfg.data.in_chans,
        "std": list(STUDENT_STD) * cfg.data.in_chans,
        "method": cfg.method,
        "role": "teacher" if cfg.method == "vpixel" else "student",
        "training": {
            "step": ckpt["step"], "epoch": ckpt["epoch"], "best_val_loss": ckpt.get("best_val"),
            "global_batch_size": cfg.optim.batch_size, "seed": cfg.seed,
        },
    }
    return vit, card


def export_run(run_dir: str | Path, out: str | Path | None = None, which: str = "best") -> Path:
    """Write ``out`` (default RUN/export) with model.safetensors and card.json."""
    path = find_checkpoint(run_dir, which)
    vit, card = vit_from_checkpoint(load_checkpoint(path), path)
    out = out_dir(out or Path(run_dir) / "export")
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(out / WEIGHTS))
    card["weights_sha256"] = file_sha256(out / WEIGHTS)
    card["checkpoint"] = which
    (out / CARD).write_text(json.dumps(card, indent=2))
    return out


def _timm_encoder(spec: str) -> tuple[nn.Module, dict]:
    name, _, weights = spec.partition("@")
    if not weights:
        raise CheckpointError(f"'timm:{spec}': give the local weights file as timm:NAME@FILE (no downloads at run time)")
    sd = state_dict_from(load_weights(weights, f"weights for timm model '{name}'"), weights)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as e:
        raise CheckpointError(f"timm:{name}: unknown timm model ({e})") from None
    sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "fc.", "classifier."))}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: does not fit timm model '{name}': {str(e).splitlines()[0]} ...") from None
    cfg = model.pretrained_cfg
    card = {
        "arch": name, "timm_kwargs": {"num_classes": 0}, "img_size": cfg.get("input_size", (3, 224, 224))[-1],
        "patch_size": getattr(getattr(model, "patch_embed", None), "patch_size", (None,))[0],
        "in_chans": cfg.get("input_size", (3,))[0], "embed_dim": model.num_features,
        "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))), "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
        "weights_sha256": file_sha256(weights), "method": "timm",
    }
    return model, card


def load_encoder(spec: str | Path) -> tuple[nn.Module, dict]:
    """A frozen-ready backbone and its card from an export dir, a run dir, a checkpoint, or timm:NAME@FILE."""
    s = str(spec)
    if s.startswith("timm:"):
        return _timm_encoder(s[len("timm:"):])
    p = Path(s)
    if p.is_dir() and (p / CARD).is_file():
        card = json.loads((p / CARD).read_text())
        model = timm.create_model(card["arch"], pretrained=False, **card["timm_kwargs"])
        sd = check_finite(load_weights(p / WEIGHTS, "exported weights"), p / WEIGHTS)
        model.load_state_dict(sd, strict=True)
        card["weights_sha256"] = file_sha256(p / WEIGHTS)
        return model, card
    if p.is_dir() and (p / "checkpoints").is_dir():
        return load_encoder(p / "export") if (p / "export" / CARD).is_file() else load_encoder(find_checkpoint(p, "best"))
    if p.is_file():
        vit, card = vit_from_checkpoint(load_checkpoint(p), p)
        card["weights_sha256"] = file_sha256(p)
        return vit, card
    found = "is a folder without card.json or checkpoints/" if p.is_dir() else "not found"
    raise CheckpointError(f"{p}: {found}; expected a usjepa export dir (card.json + model.safetensors), "
                          "a run dir, a checkpoint file, or timm:NAME@FILE")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a pretraining run directory")
    p.add_argument("--out", help="output directory (default RUN/export)")
    p.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint to export")


def run(args: argparse.Namespace) -> int:
    out = export_run(args.run, args.out, args.which)
    card = json.loads((out / CARD).read_text())
    print(f"exported {card['role']} backbone to {out}\n"
          f"load with: timm.create_model('{card['arch']}', **{card['timm_kwargs']}) "
          f"+ load_state_dict(safetensors.torch.load_file('{out / WEIGHTS}'))")
    return 0
