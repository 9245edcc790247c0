"""`usjepa bench --protocol seg[,seg-multiscale]`: segmentation probes of encoders x segmentation tasks ->
results.json, leaderboard.md (the segmentation table), report.html and test overlays (best / worst images).

Each task also gets the all-background baseline. The CI of mean Dice is a percentile bootstrap over test
images (scipy.stats.bootstrap) of each image's seed-averaged mean foreground Dice.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap

from usjepa.atomic import atomic_write_text
from usjepa.bench.cache import Cache
from usjepa.bench.provenance import provenance
from usjepa.bench.segprobe import IGNORE, VARIANTS, SegConfig, fit, score_test, seg_features, targets
from usjepa.bench.segtasks import SegTask, load_seg_task
from usjepa.distributed import pick_device
from usjepa.encoders import registry

BASELINE = "all-background"
OVERLAY_CASES = 3  # best and worst test images per encoder


def run_seg(
    encoders: list[str],
    tasks: list[str],
    out: str | Path,
    protocols: list[str],
    seeds: int = 5,
    fractions: tuple[float, ...] = (1.0,),
    data_root: str | None = None,
    cache: str | None = "",
    device: str = "auto",
    val_seed: int = 0,
    val_fraction: float = 0.1,
    batch_size: int = 32,
    probe: SegConfig = SegConfig(),
) -> dict:
    start, out = time.perf_counter(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Cache(None if cache is None else Path(cache or out / "cache"))
    loaded = [load_seg_task(t, data_root, val_seed, val_fraction) for t in tasks]
    dev = pick_device(device)
    rows, cases = [], {}
    for spec in encoders:
        enc = registry.load(spec).to(dev)
        for task in loaded:
            y = {s: targets(task, s, enc.img_size) for s in ("train", "val", "test")}
            if spec == encoders[0]:  # the baseline, at the first encoder's mask size
                rows.append(
                    {"encoder": BASELINE, "task": task.name, "protocol": "baseline", "seed": 0, "fraction": 1.0}
                    | score_test(torch.zeros_like(y["test"]), y["test"], task.class_names)
                )
            for protocol in protocols:
                x = {s: seg_features(store, enc, task, s, VARIANTS[protocol], batch_size) for s in ("train", "val")}
                for fraction in sorted(set(fractions) | {1.0}):
                    for seed in range(seeds):
                        p = fit(x["train"], y["train"], x["val"], y["val"], task.n_classes, seed, probe, fraction)
                        pred = p.predict(
                            seg_features(store, enc, task, "test", VARIANTS[protocol], batch_size), enc.img_size
                        )
                        rows.append(
                            {
                                "encoder": spec,
                                "task": task.name,
                                "protocol": protocol,
                                "seed": seed,
                                "fraction": fraction,
                                "best_epoch": p.best_epoch,
                                "lr": p.lr,
                                "val_mean_dice": p.val_mean_dice,
                                "weights_fingerprint": enc.fingerprint,
                                "split_hash": task.split_hash,
                            }
                            | score_test(pred, y["test"], task.class_names)
                        )
                        if seed == 0 and fraction == 1.0 and protocol == protocols[0]:
                            cases[(spec, task.name)] = pred
    results = {
        "provenance": provenance()
        | {"seconds": round(time.perf_counter() - start, 2), "cache": {"hits": store.hits, "misses": store.misses}},
        "config": {
            "encoders": encoders,
            "tasks": tasks,
            "protocols": protocols,
            "seeds": seeds,
            "fractions": list(fractions),
            "probe": dataclasses.asdict(probe),
        },
        "tasks": {
            t.name: {
                "folder": str(t.folder.resolve()),
                "kind": t.kind,
                "classes": t.class_names,
                "sizes": t.sizes(),
                "null_masks": t.nulls,
                "split_hash": t.split_hash,
            }
            for t in loaded
        },
        "rows": rows,
    }
    results["summary"] = summary(rows)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    overlays = {
        t.name: write_overlays(out / f"seg_overlays_{t.name}.png", t, cases, rows)
        for t in loaded
        if any(k[1] == t.name for k in cases)
    }
    write_report(out, results, overlays)
    return results


def summary(rows: list[dict]) -> list[dict]:
    """One line per encoder x task x protocol x fraction: seed mean and std, and the CI of mean Dice."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["encoder"], r["protocol"], r["fraction"]), []).append(r)
    out = []
    for (task, enc, protocol, fraction), rs in groups.items():
        dice = np.array([r["mean_dice"] or 0.0 for r in rs])
        per_image = np.mean([r["image_mean_dice"] for r in rs], axis=0)
        ci = (
            bootstrap(
                (per_image,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile", random_state=0
            ).confidence_interval
            if len(per_image) > 1
            else None
        )
        hd = [r["mean_hd95"] for r in rs if r["mean_hd95"] is not None]
        out.append(
            {
                "task": task,
                "encoder": enc,
                "protocol": protocol,
                "fraction": fraction,
                "seeds": len(rs),
                "mean_dice": float(dice.mean()),
                "mean_dice_std": float(dice.std()),
                "image_dice": float(per_image.mean()),
                "image_dice_ci": None if ci is None else [float(ci.low), float(ci.high)],
                "mean_iou": float(np.mean([r["mean_iou"] or 0.0 for r in rs])),
                "mean_hd95": float(np.mean(hd)) if hd else None,
                "dice_per_class": {c: _mean([r["dice_per_class"][c] for r in rs]) for c in rs[0]["dice_per_class"]},
            }
        )
    return out


def _mean(v: list[float | None]) -> float | None:
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def write_overlays(path: Path, task: SegTask, cases: dict, rows: list[dict]) -> Path:
    """Rows: encoders; columns: the best and the worst test images (seed 0) by mean foreground Dice; prediction
    filled in colour, ground truth outlined in white, outside the scan region dimmed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from usjepa.data.ultrabench import read_record

    encs = [k[0] for k in cases if k[1] == task.name]
    n = min(OVERLAY_CASES, len(task.splits["test"]))
    fig, axes = plt.subplots(len(encs), 2 * n, figsize=(4 * n, 2.5 * len(encs) + 0.4), squeeze=False)
    for row, spec in zip(axes, encs):
        pred = cases[(spec, task.name)].numpy()
        r0 = next(
            r
            for r in rows
            if r["encoder"] == spec and r["task"] == task.name and r["seed"] == 0 and r["fraction"] == 1.0
        )
        dice = np.array(r0["image_mean_dice"])
        order = np.argsort(-dice, kind="stable")
        picks = [*order[:n], *order[::-1][:n]]
        y = targets(task, "test", pred.shape[-1]).numpy()
        for j, (ax, i) in enumerate(zip(row, picks)):
            s = read_record(task.splits["test"][i])
            img = torch.nn.functional.interpolate(
                torch.from_numpy(s.image).float()[None, None], size=pred.shape[1:], mode="bilinear", antialias=True
            )[0, 0].numpy()
            region = y[i] != IGNORE
            ax.imshow(np.where(region, img, img * 0.4), cmap="gray", vmin=0, vmax=255)
            ax.imshow(
                np.ma.masked_where((pred[i] == 0) | ~region, pred[i]),
                cmap="tab10",
                vmin=0,
                vmax=9,
                alpha=0.45,
                interpolation="nearest",
            )
            gt = np.where(region, y[i], 0)
            if gt.max() > 0:
                ax.contour(gt, levels=np.arange(0.5, task.n_classes), colors="white", linewidths=0.7)
            ax.set_title(f"{'best' if j < n else 'worst'} Dice {dice[i]:.2f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(spec if len(spec) < 28 else "…" + spec[-27:], fontsize=7)
    fig.suptitle(f"{task.name}: test overlays (seed 0; fill = prediction, white = ground truth)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(results: dict) -> list[str]:
    """Markdown lines of the segmentation table."""
    lines = [
        "| task | encoder | protocol | fraction | seeds | mean Dice (± sd) | 95 % CI (images) | mean IoU "
        "| HD95 px | per-class Dice |",
        "|" + "---|" * 10,
    ]
    for s in sorted(results["summary"], key=lambda s: (s["task"], s["protocol"] != "baseline", -s["mean_dice"])):
        ci = "" if s["image_dice_ci"] is None else f"{s['image_dice_ci'][0]:.3f}–{s['image_dice_ci'][1]:.3f}"
        hd = "" if s["mean_hd95"] is None else f"{s['mean_hd95']:.1f}"
        per = ", ".join(f"{c} {v:.2f}" for c, v in s["dice_per_class"].items() if v is not None)
        lines.append(
            f"| {s['task']} | {s['encoder']} | {s['protocol']} | {s['fraction']:g} | {s['seeds']} | "
            f"{s['mean_dice']:.3f} ± {s['mean_dice_std']:.3f} | {ci} | {s['mean_iou']:.3f} | {hd} | {per} |"
        )
    return lines


def write_report(out: Path, results: dict, overlays: dict[str, Path]) -> None:
    lines = [
        "# Segmentation leaderboard",
        "",
        "Mean Dice / IoU: over foreground classes, inside the scan region, averaged over test images then "
        "seeds; CI: bootstrap over test images of the seed-averaged image Dice (background counts only in "
        "the per-class column).",
        "",
        *table(results),
        "",
    ]
    for t in results["tasks"].values():
        lines.append(f"null masks skipped: {t['null_masks']}")
    atomic_write_text(out / "leaderboard.md", "\n".join(lines) + "\n")
    rows = table(results)
    cells = lambda line: [html.escape(c.strip()) for c in line.strip("|").split("|")]  # noqa: E731
    head = "".join(f"<th>{c}</th>" for c in cells(rows[0]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(r)) + "</tr>" for r in rows[2:])
    figs = "".join(
        f"<h2>{html.escape(name)}</h2><img src='{p.name}' style='max-width:100%'>" for name, p in overlays.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>usjepa segmentation</title><style>"
        f"body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}"
        f"td,th{{border:1px solid #bbb;padding:3px 6px}}</style></head><body><h1>Segmentation leaderboard</h1>"
        f"<p>{html.escape(lines[2])}</p><table><tr>{head}</tr>{body}</table>{figs}</body></html>"
    )
    atomic_write_text(out / "report.html", page)
