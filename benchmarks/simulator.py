"""SynthUS simulator speed: ms per 224² image per core, the default suite on 2 cores, and pymust/SIMUS side by side.

    python benchmarks/simulator.py                 # everything (the suite takes minutes)
    python benchmarks/simulator.py --skip-suite    # per-image timings and pymust only

pymust is not a dependency of usjepa: `pip install pymust` to include the SIMUS comparison.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from usjepa.synthus import CORPUS, MASKS, SEGMENTATION, TASKS, items, render, write_suite
from usjepa.synthus.writer import write_one


def per_image(n: int, size: int) -> tuple[float, float, float]:
    """(simulate-only CPU ms, with-PNG CPU ms, with-PNG wall ms) per image, one process, caches warm."""
    tasks = [*TASKS, *SEGMENTATION, CORPUS]
    work = [it for task in tasks for it in items(task, n)]
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, user_api="blas"):
        for task in tasks:
            for sub in ("images", "masks/scan") + ((f"masks/{MASKS[task]}",) if task in MASKS else ()):
                (Path(tmp) / task / sub).mkdir(parents=True)
        for it in work:  # warm-up: builds the cached PSFs and scan-conversion maps
            render(it, 0, size)
        c = time.process_time()
        for it in work:
            render(it, 0, size)
        sim = (time.process_time() - c) / len(work) * 1e3
        c, t = time.process_time(), time.perf_counter()
        for it in work:
            write_one(it, Path(tmp) / it.task, 0, size)
        return sim, (time.process_time() - c) / len(work) * 1e3, (time.perf_counter() - t) / len(work) * 1e3


def suite(workers: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (this process and its workers) and image count for the default suite."""

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), cpu()
        folders = write_suite(tmp, workers=workers)
        seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
        return seconds, cpu_seconds, sum(len(list((f / "images").iterdir())) for f in folders.values())


def pymust_image(n_scatterers: int) -> float | None:
    """Seconds for one pymust/SIMUS B-mode image (L11-5v, one plane wave, DAS on a 224² grid); None if absent."""
    try:
        import pymust
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    param = pymust.getparam("L11-5v")
    xs, zs = rng.uniform(-0.02, 0.02, n_scatterers), rng.uniform(0.005, 0.045, n_scatterers)
    rc = rng.standard_normal(n_scatterers)
    t = time.perf_counter()
    tx = pymust.txdelay(param, 0)
    rf = pymust.simus(xs, zs, rc, tx, param)[0]
    iq = pymust.rf2iq(rf, param)
    x, z = np.meshgrid(np.linspace(-0.02, 0.02, 224), np.linspace(0.005, 0.045, 224))
    das = pymust.dasmtx(iq, x, z, tx, param)
    pymust.bmode((das @ iq.flatten(order="F")).reshape(x.shape, order="F"), 50)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="images per task for the per-image timing")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--scatterers", type=int, default=5_000, help="scatterers in the pymust phantom (time grows ~linearly)"
    )
    ap.add_argument("--skip-suite", action="store_true")
    args = ap.parse_args()
    sim, with_png, wall = per_image(args.n, args.size)
    print(
        f"one {args.size}² image, one core: {sim:.1f} ms CPU simulated, {with_png:.1f} ms CPU with PNG writes "
        f"({wall:.1f} ms wall on this shared machine); budget 25 ms"
    )
    seconds = pymust_image(args.scatterers)
    if seconds is None:
        print("pymust not installed: `pip install pymust` for the SIMUS comparison")
    else:
        print(
            f"pymust/SIMUS, one {args.size}² image ({args.scatterers} scatterers, plane wave + DAS): {seconds:.1f} s "
            f"-> SynthUS is {seconds * 1e3 / wall:.0f}x faster (wall vs wall)"
        )
    if not args.skip_suite:
        seconds, cpu_seconds, n = suite(args.workers)
        print(
            f"default suite: {n} images ({len(TASKS) + len(SEGMENTATION)} x 1500 + 10000 corpus) at 224² in "
            f"{seconds:.0f} s wall "
            f"with {args.workers} workers, {cpu_seconds:.0f} CPU s (= {cpu_seconds / args.workers:.0f} s on "
            f"{args.workers} free cores); budget 240 s"
        )


if __name__ == "__main__":
    main()
