"""A second `usjepa bench` run on the same inputs reuses the cache: its time as a share of the first run's.

Fabricates two SynthUS tasks (``usjepa.synthus.write_suite``, 64 px) and a tiny usjepa-style export
(ViT-T, patch 8, 64 px, 1 channel, random weights), then runs the same `usjepa bench` command twice in
fresh processes (all protocols but fine-tuning, 5 seeds). It prints both ratios: of the time inside the
benchmark (the figure `usjepa bench` reports, report writing included) and of the process wall time.

  python benchmarks/bench_cache.py [--n-per-task 200] [--encoders 'usjepa:EXPORT,random:EXPORT,effnet-lite0:128']
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from usjepa.synthus import write_suite
from usjepa.weights import file_sha256

TASKS = ["synthus_lesion", "synthus_organ"]


def tiny_export(out: Path) -> Path:
    kw = {"img_size": 64, "patch_size": 8, "in_chans": 1, "num_classes": 0}
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", **kw)
    out.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    card = {
        "arch": "vit_tiny_patch16_224",
        "timm_kwargs": kw,
        "img_size": 64,
        "patch_size": 8,
        "in_chans": 1,
        "mean": [0.5],
        "std": [0.5],
        "method": "salt",
        "weights_sha256": file_sha256(out / "model.safetensors"),
    }
    (out / "card.json").write_text(json.dumps(card))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-per-task", type=int, default=200)
    p.add_argument("--encoders", default="usjepa:{export},random:{export},effnet-lite0:128")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_suite(root / "data", img_size=64, n_per_task=a.n_per_task, corpus_size=0, seed=0, workers=2, tasks=TASKS)
        encoders = a.encoders.format(export=tiny_export(root / "export"))
        cmd = [
            sys.executable,
            "-m",
            "usjepa",
            "bench",
            "--encoders",
            encoders,
            "--tasks",
            ",".join(TASKS),
            "--protocol",
            "linear,fewshot,robust,knn",
            "--data-root",
            str(root / "data"),
            "--out",
            str(root / "out"),
        ]
        wall, bench = [], []
        for run in ("first", "second"):
            t = time.perf_counter()
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            wall.append(time.perf_counter() - t)
            bench.append(float(re.search(r"results in ([\d.]+) s", out).group(1)))
            print(f"{run} run: {wall[-1]:.1f} s wall, {bench[-1]:.1f} s in the benchmark  ({out})")
    print(
        f"second / first: {bench[1] / bench[0]:.1%} of the benchmark's time, {wall[1] / wall[0]:.1%} of the wall "
        f"time, which adds Python start-up and imports (goal < 20 %)"
    )


if __name__ == "__main__":
    main()
