"""Writing SynthUS in the UltraBench processed layout (images, scan masks, class-index masks, split files) and
the preview contact sheet."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from usjepa.errors import DataError
from usjepa.synthus.tasks import (
    CORPUS,
    MASKS,
    SEGMENTATION,
    TASKS,
    Item,
    _code,
    classes,
    example,
    items,
    render,
)

TEST_FRACTION = 0.2
VERSION = "UltraBench Version: 1.0.1"


def write_one(item: Item, out: Path, seed: int, img_size: int) -> dict:
    """Render one image and write its PNGs under ``out`` (the task folder); returns its split record."""
    frame, meta = render(item, seed, img_size)
    labelled = item.task in TASKS
    name = f"_{TASKS[item.task][item.label]}" if labelled else ""
    stem = f"{item.patient}{name}_{item.index:06d}"
    rec: dict = {"patient": item.patient}
    if labelled:
        rec |= {"class": TASKS[item.task][item.label], "label": item.label}
    rec |= {"image": f"images/{stem}.png", "scan_mask": f"masks/scan/{stem}.png"}
    _png(np.rint(frame.image * 255).astype(np.uint8), out / rec["image"])
    _png(frame.mask.astype(np.uint8), out / rec["scan_mask"])
    if item.task in MASKS:
        kind = MASKS[item.task]
        rec[f"{kind}_mask"] = None
        if frame.label is not None or item.task in SEGMENTATION:
            label = frame.label if frame.label is not None else np.zeros_like(frame.mask, np.uint8)
            rec[f"{kind}_mask"] = f"masks/{kind}/{stem}.png"
            _png(label, out / rec[f"{kind}_mask"])
    return rec | meta


def _png(a: np.ndarray, path: Path) -> None:
    Image.fromarray(a).save(path, format="PNG", compress_level=1)


def _write_chunk(job: tuple[list[Item], str, int, int]) -> list[dict]:
    chunk, root, seed, img_size = job
    with threadpool_limits(1, user_api="blas"):  # tiny matrix products: BLAS threads only contend
        return [write_one(it, Path(root) / it.task, seed, img_size) for it in chunk]


def _split(records: list[dict], task: str, seed: int) -> tuple[list[dict], list[dict]]:
    """Patient-grouped train_val / test split, stratified by the patient's class, seeded."""
    rng = np.random.default_rng([seed, _code(task), 3])
    by_class: dict[str, list[int]] = {}
    for rec in records:
        pats = by_class.setdefault(str(rec.get("class")) if task != "synthus_organ" else "all", [])
        if rec["patient"] not in pats:
            pats.append(rec["patient"])
    test = set()
    for pats in by_class.values():
        order = rng.permutation(len(pats))
        n_test = max(1, round(TEST_FRACTION * len(pats))) if len(pats) > 1 else 0
        test |= {pats[i] for i in order[:n_test]}
    return [r for r in records if r["patient"] not in test], [r for r in records if r["patient"] in test]


def _write(out: Path, sizes: dict[str, int], img_size: int, seed: int, workers: int) -> dict[str, Path]:
    """Generate every task's images (one pool for all) and write the split files and version.txt."""
    if img_size < 16:
        raise DataError(f"--img-size must be at least 16 pixels, got {img_size}")
    folders = {t: Path(out) / t for t, n in sizes.items() if n > 0}
    for task, folder in folders.items():
        for sub in ("images", "masks/scan") + ((f"masks/{MASKS[task]}",) if task in MASKS else ()):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    work = [it for t in folders for it in items(t, sizes[t])]
    chunks = [(work[i : i + 32], str(out), seed, img_size) for i in range(0, len(work), 32)]
    if workers > 1 and len(chunks) > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            done = pool.map(_write_chunk, chunks, chunksize=1)
    else:
        done = [_write_chunk(c) for c in chunks]
    records = [r for part in done for r in part]
    start = 0
    for task, folder in folders.items():
        recs, start = records[start : start + sizes[task]], start + sizes[task]
        train_val, test = (recs, []) if task == CORPUS else _split(recs, task, seed)
        (folder / "train_val.json").write_text(json.dumps(train_val, indent=1))
        (folder / "test.json").write_text(json.dumps(test, indent=1))
        (folder / "version.txt").write_text(f"{VERSION}\nCreated: SynthUS seed={seed} img_size={img_size}\n")
        if task in SEGMENTATION:
            kind, names = SEGMENTATION[task]
            (folder / "classes.json").write_text(json.dumps({"mask": kind, "classes": list(names)}, indent=1))
    return folders


def write_task(out: str | Path, task: str, img_size: int = 224, n: int = 1500, seed: int = 0, workers: int = 2) -> Path:
    """Write one task folder `<out>/<task>` (a labelled or a segmentation task)."""
    if task not in TASKS and task not in SEGMENTATION:
        raise DataError(f"unknown SynthUS task {task!r}; expected one of {', '.join([*TASKS, *SEGMENTATION])}")
    return _write(Path(out), {task: n}, img_size, seed, workers)[task]


def write_suite(
    out: str | Path,
    img_size: int = 224,
    n_per_task: int = 1500,
    corpus_size: int = 10_000,
    seed: int = 0,
    workers: int = 2,
    tasks: list[str] | None = None,
) -> dict[str, Path]:
    """Write the tasks (all labelled and segmentation tasks by default) and the corpus; returns name → folder."""
    tasks = [*TASKS, *SEGMENTATION] if tasks is None else tasks
    unknown = [t for t in tasks if t not in TASKS and t not in SEGMENTATION]
    if unknown:
        raise DataError(f"unknown SynthUS task(s) {unknown}; expected some of {', '.join([*TASKS, *SEGMENTATION])}")
    sizes = {t: n_per_task for t in tasks} | {CORPUS: corpus_size}
    return _write(Path(out), sizes, img_size, seed, workers)


def write_preview(path: str | Path, img_size: int = 224, seed: int = 0, per_class: int = 2) -> Path:
    """A contact sheet of every class of every task (`per_class` patients each, each image with its own
    nuisances), masks outlined in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [*TASKS, *SEGMENTATION]
    tiles = [
        example(t, c, rank) for t in tasks for c in range(len(TASKS.get(t, ()))) or [-1] for rank in range(per_class)
    ]
    cols = 6
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.6))
    for ax, it in zip(axes.ravel(), tiles):
        frame, meta = render(it, seed, img_size)
        ax.imshow(frame.image, cmap="gray", vmin=0, vmax=1)
        if frame.label is not None and frame.label.any():
            ax.contour(frame.label, levels=np.arange(frame.label.max()) + 0.5, colors="r", linewidths=0.6)
        nz = meta["nuisance"]
        ax.set_title(
            f"{it.task[8:]}: {classes(it.task)[it.label] if it.label >= 0 else 'masks'}\n"
            f"{meta['probe']}, {nz['depth_cm']:g} cm, zoom {nz['zoom']:.2f}",
            fontsize=7,
        )
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
