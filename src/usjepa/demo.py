"""`usjepa demo`: the whole story on SynthUS, built from the real pieces and resumable stage by stage.

simulate -> V-Pixel teacher -> SALT student -> I-JEPA and MAE at the same compute -> benchmark -> report.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from usjepa.bench.run import run_bench
from usjepa.config import load_config
from usjepa.modelio import CARD
from usjepa.synthus import CORPUS, TASKS, write_suite
from usjepa.train import train


@dataclass(frozen=True)
class Scale:
    img_size: int
    n_per_task: int
    corpus_size: int
    teacher_epochs: int
    student_epochs: int
    configs: dict = field(default_factory=dict)  # method -> shipped config name
    overrides: tuple = ()
    bench_seeds: int = 5
    effnet: str = "effnet-lite0"  # the ImageNet reference; ":SIZE" runs it at SIZE px


_TINY_CONFIGS = {m: "tiny" for m in ("vpixel", "salt", "ijepa", "mae")}
# The tiny config's lr 1e-3 collapses every self-supervised ViT within these short runs (feature effective rank
# 4-8 against random init's 34); 1e-4, nearer the paper's 5e-5 at batch 128, keeps V-Pixel, SALT and MAE at 31-35.
_CPU_LR = ("optim.lr=1e-4", "optim.start_lr=1e-5", "optim.final_lr=1e-6")
# A check forwards its images once: with 150 + 316 images it took 0.9-1.2 s against 0.2-0.25 s per step (quiet
# stretches of 2026-12-01 runs), i.e. 12-18 % of an 80-step run at 4 checks; 64 + 157 images should cost about half
# (an estimate from image counts: the machine was too loaded that day to re-time the demo with them).
_TINY_MONITOR = ("monitor.every=20", "monitor.images=64", "monitor.max_images=128")
_PAPER_CONFIGS = {"vpixel": "vpixel_vitb16", "salt": "salt_vitb16", "ijepa": "ijepa_vitb16", "mae": "mae_vitb16"}

SCALES = {
    # 2-core CPU, <= 10 minutes with the install: 64 px, a 6-block ViT-Tiny with 8-px patches, 80 steps of 32 each.
    "tiny": Scale(img_size=64, n_per_task=400, corpus_size=3000, teacher_epochs=2, student_epochs=2,
                  configs=_TINY_CONFIGS, overrides=("data.steps_per_epoch=40", "data.val_fraction=0.05", "data.num_workers=0",
                                                    *_TINY_MONITOR, *_CPU_LR),
                  effnet="effnet-lite0:112"),
    # The same models on 4x the data, for 600 teacher and 1200 student steps (about an hour on a 2-core CPU).
    "small": Scale(img_size=64, n_per_task=1000, corpus_size=12000, teacher_epochs=6, student_epochs=12,
                   configs=_TINY_CONFIGS, overrides=("data.steps_per_epoch=100", "data.num_workers=0",
                                                                            "monitor.every=100", *_CPU_LR),
                   effnet="effnet-lite0:112"),
    # The paper's recipe (ViT-B/16 at 224, 100 epochs): needs GPUs; the same code.
    "paper": Scale(img_size=224, n_per_task=2000, corpus_size=100_000, teacher_epochs=20, student_epochs=100,
                   configs=_PAPER_CONFIGS, overrides=("data.num_workers=8",)),
}

STUDENTS = ("salt", "ijepa", "mae")
MONITOR_TASK = "synthus_organ"  # the online probe's task while pretraining (train and val splits only)


def _pretrain(out: Path, method: str, scale: Scale, folders: dict[str, Path], epochs: int, extra: list[str]) -> Path:
    """Train one method (or resume it), and return its export directory."""
    run = out / method
    if (run / "export" / CARD).is_file():
        print(f"[demo] {method}: already trained, export in {run / 'export'}")
        return run / "export"
    print(f"[demo] {method}: pretraining ({epochs} epochs) in {run}")
    overrides = [f"method={method}", f"out={run}", f"data.sources=[{folders[CORPUS]}]", f"data.img_size={scale.img_size}",
                 f"optim.epochs={epochs}", f"monitor.tasks=[{folders[MONITOR_TASK]}]", *scale.overrides, *extra]
    train(load_config(scale.configs[method], overrides))
    return run / "export"


def _monitor_costs(out: Path) -> dict[str, dict]:
    """Each pretraining run's own report of its monitoring cost (from its summary.json)."""
    costs = {}
    for method in ("vpixel", *STUDENTS):
        f = out / method / "summary.json"
        if f.is_file():
            costs[method] = json.loads(f.read_text())["monitor"]
    return costs


def _simulate(out: Path, s: Scale, seed: int) -> dict[str, Path]:
    """Write SynthUS once; a finished suite (its parameters recorded in suite.json) is reused."""
    root, params = out / "synthus", {"img_size": s.img_size, "n_per_task": s.n_per_task, "corpus_size": s.corpus_size,
                                     "seed": seed}
    done = root / "suite.json"
    if done.is_file() and json.loads(done.read_text()) == params:
        print(f"[demo] SynthUS already written in {root}")
        return {name: root / name for name in (*TASKS, CORPUS)}
    folders = write_suite(root, **params)
    done.write_text(json.dumps(params))
    return folders


def run_demo(out: str | Path = "runs/demo", scale: str = "tiny", seed: int = 0) -> dict:
    s, out = SCALES[scale], Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    print(f"[demo] 1/6 SynthUS: {len(TASKS)} labelled tasks x {s.n_per_task} images + a {s.corpus_size}-image corpus "
          f"at {s.img_size} px")
    folders = _simulate(out, s, seed)
    lap("simulate")

    print("[demo] 2/6 stage 1: V-Pixel teacher")
    exports = {"vpixel": _pretrain(out, "vpixel", s, folders, s.teacher_epochs, [f"seed={seed}"])}
    lap("vpixel")
    for method in STUDENTS:
        print("[demo] 3/6 stage 2: SALT student from the frozen teacher" if method == "salt" else
              f"[demo] 4/6 comparator {method} at the same compute (steps x batch) as SALT")
        extra = [f"seed={seed}"] + ([f"teacher.source={exports['vpixel']}"] if method == "salt" else [])
        exports[method] = _pretrain(out, method, s, folders, s.student_epochs, extra)
        lap(method)

    print("[demo] 5/6 benchmark: linear probe (5 seeds), few-shot and robustness on every SynthUS task")
    encoders = [f"usjepa:{exports[m]}" for m in ("vpixel", "salt", "ijepa", "mae")]
    encoders += [f"random:{exports['salt']}", s.effnet]
    run_bench(encoders, [str(folders[t]) for t in TASKS], out / "bench", protocols=["linear", "fewshot", "robust"],
              seeds=s.bench_seeds)
    lap("bench")

    print("[demo] 6/6 report")
    report, board = out / "bench" / "report.html", out / "bench" / "leaderboard.md"
    summary = {"scale": scale, "seed": seed, "timings_s": timings, "total_s": round(time.perf_counter() - t0, 1),
               "monitor": _monitor_costs(out), "report": str(report), "leaderboard": str(board)}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print(board.read_text())
    for method, m in summary["monitor"].items():
        print(f"[demo] {method} monitor: {m['checks']} checks, {m['seconds']:.1f} s = {100 * m['overhead']:.1f} % of "
              f"its {m['wall_s']:.0f} s of training")
    print(f"[demo] report:      {report}\n[demo] leaderboard: {board}\n[demo] total time:  {summary['total_s']:.0f} s")
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output directory (re-running resumes)")
    p.add_argument("--scale", choices=sorted(SCALES), default="tiny",
                   help="tiny: <= 10 min on a 2-core CPU; small: about an hour; paper: the paper's recipe (GPUs)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, args.scale, args.seed)
    return 0
