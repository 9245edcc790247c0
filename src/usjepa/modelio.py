"""Model I/O: the export card, the state-dict prefixes, normalisation constants, and loading usjepa backbones.

An export is a folder with ``model.safetensors`` (timm's own keys) and ``card.json`` (how to rebuild and feed it).
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
from safetensors.torch import save_file
from torch import nn

from usjepa.checkpoint import find_checkpoint, load_checkpoint
from usjepa.config import config_from_dict
from usjepa.errors import CheckpointError
from usjepa.methods import method_class
from usjepa.models.encoder import create_vit, vit_kwargs
from usjepa.paths import out_dir
from usjepa.weights import check_finite, file_sha256, load_weights

CARD, WEIGHTS = "card.json", "model.safetensors"
CARD_FORMAT = "usjepa-export/1"
STUDENT_MEAN, STUDENT_STD = (0.5,), (0.5,)  # per channel, on images in [0, 1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BACKBONE = "encoder.vit."  # every method keeps the backbone it exports under this name
FROZEN = "teacher."  # the frozen teacher: reloaded from its source, never checkpointed nor exported


def vit_from_checkpoint(ckpt: dict, path) -> tuple[nn.Module, dict]:
    """The backbone of a usjepa training checkpoint, and its card."""
    cfg = config_from_dict(ckpt["config"])
    vit = create_vit(cfg.model.arch, **vit_kwargs(cfg))
    sd = check_finite({k[len(BACKBONE) :]: v for k, v in ckpt["model"].items() if k.startswith(BACKBONE)}, path)
    missing, _ = vit.load_state_dict(sd, strict=False)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks backbone weights {missing[:3]}...")
    card = {
        "format": CARD_FORMAT,
        "arch": cfg.model.arch,
        "timm_kwargs": vit_kwargs(cfg),
        "img_size": cfg.data.img_size,
        "patch_size": vit.patch_embed.patch_size[0],
        "in_chans": cfg.data.in_chans,
        "embed_dim": vit.embed_dim,
        "mean": list(STUDENT_MEAN) * cfg.data.in_chans,
        "std": list(STUDENT_STD) * cfg.data.in_chans,
        "method": cfg.method,
        "role": method_class(cfg.method).export_role,
        "training": {
            "step": ckpt["step"],
            "epoch": ckpt["epoch"],
            "best_val_loss": ckpt.get("best_val"),
            "global_batch_size": cfg.optim.batch_size,
            "seed": cfg.seed,
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


def load_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """A usjepa backbone and its card from an export dir, a run dir (its export, else its best checkpoint) or a
    checkpoint file."""
    p = Path(path)
    if p.is_dir() and (p / CARD).is_file():
        card = json.loads((p / CARD).read_text())
        model = timm.create_model(card["arch"], pretrained=False, **card["timm_kwargs"])
        model.load_state_dict(check_finite(load_weights(p / WEIGHTS, "exported weights"), p / WEIGHTS), strict=True)
        card["weights_sha256"] = file_sha256(p / WEIGHTS)
        return model, card
    if p.is_dir() and (p / "checkpoints").is_dir():
        return (
            load_encoder(p / "export") if (p / "export" / CARD).is_file() else load_encoder(find_checkpoint(p, "best"))
        )
    if p.is_file():
        vit, card = vit_from_checkpoint(load_checkpoint(p), p)
        card["weights_sha256"] = file_sha256(p)
        return vit, card
    found = "is a folder without card.json or checkpoints/" if p.is_dir() else "not found"
    raise CheckpointError(
        f"{p}: {found}; expected a usjepa export dir (card.json + model.safetensors), a run dir, or a checkpoint file"
    )
