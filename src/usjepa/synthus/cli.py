"""`usjepa simulate`: write the SynthUS tasks and corpus, optionally with the preview contact sheet."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from usjepa.errors import ConfigError
from usjepa.paths import out_dir
from usjepa.synthus.tasks import SEGMENTATION, TASKS
from usjepa.synthus.writer import write_preview, write_suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="synthus", help="output root; one folder per task (default: ./synthus)")
    parser.add_argument("--img-size", type=int, default=224, help="square image size in pixels (default 224)")
    parser.add_argument("--n-per-task", type=int, default=1500, help="images per task (default 1500)")
    parser.add_argument("--corpus", type=int, default=10_000, help="unlabelled corpus images (default 10000; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK", help=f"subset of: {' '.join([*TASKS, *SEGMENTATION])} (default: all)"
    )
    parser.add_argument("--preview", action="store_true", help="also write a contact sheet to <out>/preview.png")


def run(args: argparse.Namespace) -> int:
    for flag, value, low in (
        ("--n-per-task", args.n_per_task, 1),
        ("--corpus", args.corpus, 0),
        ("--workers", args.workers, 0),
    ):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    out_dir(args.out)
    tasks = None if args.tasks is None else [t if t.startswith("synthus_") else f"synthus_{t}" for t in args.tasks]
    t0 = time.perf_counter()
    folders = write_suite(args.out, args.img_size, args.n_per_task, args.corpus, args.seed, args.workers, tasks)
    for task, folder in folders.items():
        print(f"{task}: {len(list((folder / 'images').iterdir()))} images → {folder}")
    print(
        f"wrote {sum(len(list((f / 'images').iterdir())) for f in folders.values())} images in "
        f"{time.perf_counter() - t0:.1f} s with {args.workers} worker(s)"
    )
    if args.preview:
        print(f"preview → {write_preview(Path(args.out) / 'preview.png', max(args.img_size, 128), args.seed)}")
    return 0
