"""`usjepa export`: write a run's backbone as timm-loadable safetensors plus a JSON card (see usjepa.modelio)."""

from __future__ import annotations

import argparse
import json

from usjepa.modelio import CARD, WEIGHTS, export_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a pretraining run directory")
    p.add_argument("--out", help="output directory (default RUN/export)")
    p.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint to export")


def run(args: argparse.Namespace) -> int:
    out = export_run(args.run, args.out, args.which)
    card = json.loads((out / CARD).read_text())
    print(
        f"exported {card['role']} backbone to {out}\n"
        f"load with: timm.create_model('{card['arch']}', **{card['timm_kwargs']}) "
        f"+ load_state_dict(safetensors.torch.load_file('{out / WEIGHTS}'))"
    )
    return 0
