"""`usjepa demo`: the whole story on SynthUS, built from the real pieces and resumable stage by stage.

simulate -> SALT student from a pretrained teacher (EfficientNet-Lite0) -> [small, paper: V-Pixel teacher -> SALT
student from it] -> EMA I-JEPA and pixel MAE at the same steps x batch -> benchmark -> report (rows by recipe).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from usjepa.bench.run import EncoderEntry, GridOverrides, run_bench
from usjepa.config import load_config
from usjepa.modelio import CARD
from usjepa.paths import out_dir
from usjepa.synthus import CORPUS, TASKS, write_suite
from usjepa.train import train


@dataclass(frozen=True)
class Scale:
    img_size: int
    n_per_task: int
    corpus_size: int
    teacher_epochs: int  # V-Pixel stage 1; 0: the own-teacher recipe does not run at this scale
    student_epochs: int  # every student and comparator (same steps x batch)
    configs: dict = field(default_factory=dict)  # method -> shipped config name
    overrides: tuple = ()
    bench_seeds: int = 5
    effnet: str = "effnet-lite0"  # the ImageNet reference; ":SIZE" runs it at SIZE px
    teacher: tuple = ("teacher.source=effnet-lite0", "teacher.layer=3")  # the pretrained teacher of recipe 1
    allow_incomplete_tasks: bool = False  # score tasks whose splits lack a class (test-sized scales), marked


# The online monitor (rank, kNN and linear probe on MONITOR_TASK) every 100 steps on 64 held-out images and 128 task
# images per split: a check forwards its images once, so 6 checks cost a few % of a 600-step run.
_MONITOR = ("monitor.every=100", "monitor.images=64", "monitor.max_images=128")
MONITOR_TASK = "synthus_organ"  # the online probe's task while pretraining (train and val splits only)
_DEMO_CONFIGS = {m: "demo_salt" for m in ("vpixel", "salt", "ijepa", "mae")}  # one arch, batch and schedule for all
_PAPER_CONFIGS = {"vpixel": "vpixel_vitb16", "salt": "salt_vitb16", "ijepa": "ijepa_vitb16", "mae": "mae_vitb16"}

SCALES = {
    # 2-core CPU, <= 10 minutes with the install: the recipe of configs/demo_salt.yaml (48 px, patch 6, 4 blocks).
    "tiny": Scale(
        img_size=48,
        n_per_task=400,
        corpus_size=3000,
        teacher_epochs=0,
        student_epochs=6,
        configs=_DEMO_CONFIGS,
        overrides=("data.steps_per_epoch=100", *_MONITOR),
        effnet="effnet-lite0:112",
    ),
    # The same models on 4x the data for 2x the steps, with the V-Pixel teacher and its student too (<= 45 min).
    "small": Scale(
        img_size=48,
        n_per_task=1000,
        corpus_size=12000,
        teacher_epochs=6,
        student_epochs=12,
        configs=_DEMO_CONFIGS,
        overrides=("data.steps_per_epoch=100", *_MONITOR),
        effnet="effnet-lite0:112",
    ),
    # The paper's recipe (ViT-B/16 at 224, 100 epochs): needs GPUs; the same code. Stage 3 of EfficientNet-Lite0
    # (stride 16) gives the 14 x 14 grid at 224 px.
    "paper": Scale(
        img_size=224,
        n_per_task=2000,
        corpus_size=100_000,
        teacher_epochs=20,
        student_epochs=100,
        configs=_PAPER_CONFIGS,
        overrides=("data.num_workers=8",),
    ),
}

# Recipe -> (method, the report's name, external weights). "salt_vpixel" runs only where teacher_epochs > 0.
RECIPES = {
    "salt": ("salt", "SALT student, EfficientNet-Lite0 teacher", "ImageNet EfficientNet-Lite0 (teacher)"),
    "vpixel": ("vpixel", "V-Pixel teacher (SALT stage 1)", ""),
    "salt_vpixel": ("salt", "SALT student, own V-Pixel teacher", ""),
    "ijepa": ("ijepa", "EMA I-JEPA", ""),
    "mae": ("mae", "pixel MAE", ""),
}
REFERENCES = {"random": ("random-init ViT (same arch)", ""), "effnet": ("EfficientNet-Lite0", "ImageNet (itself)")}


def _pretrain(out: Path, recipe: str, scale: Scale, folders: dict[str, Path], epochs: int, extra: list[str]) -> Path:
    """Train one recipe (or resume it), and return its export directory."""
    method, run = RECIPES[recipe][0], out / recipe
    if (run / "export" / CARD).is_file():
        print(f"[demo] {recipe}: already trained, export in {run / 'export'}")
        return run / "export"
    print(f"[demo] {recipe}: pretraining ({epochs} epochs) in {run}")
    overrides = [
        f"method={method}",
        f"out={run}",
        f"data.sources=[{folders[CORPUS]}]",
        f"data.img_size={scale.img_size}",
        f"optim.epochs={epochs}",
        f"monitor.tasks=[{folders[MONITOR_TASK]}]",
        *scale.overrides,
        *extra,
    ]
    train(load_config(scale.configs[method], overrides))
    return run / "export"


def _monitor_costs(out: Path, recipes: list[str]) -> dict[str, dict]:
    """Each pretraining run's own report of its monitoring cost (from its summary.json)."""
    costs = {}
    for recipe in recipes:
        f = out / recipe / "summary.json"
        if f.is_file():
            costs[recipe] = json.loads(f.read_text())["monitor"]
    return costs


def _simulate(out: Path, s: Scale, seed: int) -> dict[str, Path]:
    """Write SynthUS once; a finished suite (its parameters recorded in suite.json) is reused."""
    root, params = (
        out / "synthus",
        {"img_size": s.img_size, "n_per_task": s.n_per_task, "corpus_size": s.corpus_size, "seed": seed},
    )
    done = root / "suite.json"
    if done.is_file() and json.loads(done.read_text()) == params:
        print(f"[demo] SynthUS already written in {root}")
        return {name: root / name for name in (*TASKS, CORPUS)}
    folders = write_suite(root, **params)
    done.write_text(json.dumps(params))
    return folders


def summary_table(results: dict, names: dict[str, tuple[str, str]]) -> str:
    """The demo's headline, one row per recipe: linear-probe test macro-F1 % (mean over seeds) per task and mean,
    the mean under speckle at eps=3 and its change relative to the clean mean, effective rank, and the external
    weights each row used."""
    rows, tasks = results["rows"], list(results["tasks"])

    def mean(key: str, **match) -> float:
        return float(np.mean([r[key] for r in rows if all(r.get(k) == v for k, v in match.items())]))

    head = [
        "recipe",
        *(t.removeprefix("synthus_") for t in tasks),
        "mean",
        "speckle ε=3",
        "relative change",
        "eff. rank",
        "external weights",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, weights in names.values():
        clean = [mean("macro_f1", encoder=name, task=t, protocol="linear") for t in tasks]
        noisy = [
            mean("macro_f1", encoder=name, task=t, protocol="robust", corruption="speckle", severity=3) for t in tasks
        ]
        rank = np.mean([mean("effective_rank", encoder=name, task=t, protocol="linear") for t in tasks])
        cells = [f"{100 * v:.1f}" for v in clean] + [
            f"{100 * np.mean(clean):.1f}",
            f"{100 * np.mean(noisy):.1f}",
            f"{100 * (np.mean(noisy) / np.mean(clean) - 1):+.1f} %",
            f"{rank:.1f}",
            weights or "none",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_demo(out: str | Path = "runs/demo", scale: str = "tiny", seed: int = 0) -> dict:
    s, out = SCALES[scale], out_dir(out)
    timings, t0 = {}, time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    recipes = ["salt", *(["vpixel", "salt_vpixel"] if s.teacher_epochs else []), "ijepa", "mae"]
    n = 4 + len(recipes)
    print(
        f"[demo] 1/{n} SynthUS: {len(TASKS)} labelled tasks x {s.n_per_task} images + a {s.corpus_size}-image "
        f"corpus at {s.img_size} px"
    )
    folders = _simulate(out, s, seed)
    lap("simulate")

    exports = {}
    for i, recipe in enumerate(recipes, 2):
        extra, epochs = [f"seed={seed}"], s.student_epochs
        if recipe == "salt":
            extra += list(s.teacher)
        elif recipe == "vpixel":
            epochs = s.teacher_epochs
        elif recipe == "salt_vpixel":
            extra += [f"teacher.source={exports['vpixel']}", "teacher.layer=-1"]
        print(
            f"[demo] {i}/{n} {RECIPES[recipe][1]}"
            + (" (same steps x batch as the SALT student)" if recipe in ("ijepa", "mae") else "")
        )
        exports[recipe] = _pretrain(out, recipe, s, folders, epochs, extra)
        lap(recipe)

    print(f"[demo] {n - 1}/{n} benchmark: linear probe (5 seeds), few-shot and robustness on every SynthUS task")
    names = {f"usjepa:{exports[r]}": RECIPES[r][1:] for r in recipes}
    names |= {f"random:{exports['salt']}": REFERENCES["random"], s.effnet: REFERENCES["effnet"]}
    # The grid preset (lrs x L2 strengths, chosen on validation) on each encoder's own pooling keeps the bench short.
    results = run_bench(
        [EncoderEntry(spec, name) for spec, (name, _) in names.items()],
        [str(folders[t]) for t in TASKS],
        out / "bench",
        protocols=["linear", "fewshot", "robust"],
        seeds=s.bench_seeds,
        grid=GridOverrides(poolings=[]),
        allow_incomplete_tasks=s.allow_incomplete_tasks,
    )
    lap("bench")

    print(f"[demo] {n}/{n} report")
    report, board, table = out / "bench" / "report.html", out / "bench" / "leaderboard.md", out / "summary.md"
    table.write_text(summary_table(results, names))
    summary = {
        "scale": scale,
        "seed": seed,
        "timings_s": timings,
        "total_s": round(time.perf_counter() - t0, 1),
        "recipes": {spec: name for spec, (name, _) in names.items()},
        "summary": str(table),
        "monitor": _monitor_costs(out, recipes),
        "report": str(report),
        "leaderboard": str(board),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print(table.read_text())
    for recipe, m in summary["monitor"].items():
        print(
            f"[demo] {recipe} monitor: {m['checks']} checks, {m['seconds']:.1f} s = {100 * m['overhead']:.1f} % of "
            f"its {m['wall_s']:.0f} s of training"
        )
    print(
        f"[demo] summary:     {table}\n[demo] report:      {report} \n"
        f"[demo] leaderboard: {board}\n[demo] total time:  {summary['total_s']:.0f} s"
    )
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output directory (re-running resumes)")
    p.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="tiny",
        help="tiny: <= 10 min on a 2-core CPU, SALT from EfficientNet-Lite0 only; small: about 45 min, "
        "adds SALT from its own V-Pixel teacher; paper: the paper's recipe (GPUs)",
    )
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, args.scale, args.seed)
    return 0
