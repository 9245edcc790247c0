"""`usjepa bench`: encoders x tasks x protocols -> results.json, results.csv, leaderboard.md, report.html.

Features are computed once per encoder x task x split x corruption and cached; all probe heads of an
encoder x task (seeds x label fractions x learning rates) train together; every result is cached too,
so a second run on the same inputs only re-hashes them. ``--verify RESULTS`` re-hashes without running.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.manifold import TSNE

from usjepa.bench.cache import Cache
from usjepa.bench.features import effective_rank, feature_key, task_features
from usjepa.bench.finetune import FinetuneConfig, finetune
from usjepa.bench.knn import knn_proba
from usjepa.bench.probe import Head, ProbeConfig, chance_macro_f1, fit, scores, select
from usjepa.bench.provenance import provenance, verify
from usjepa.bench.report import write_report
from usjepa.bench.robustness import CORRUPTIONS, SEVERITIES, conditions, relative_drop
from usjepa.bench.segprobe import VARIANTS
from usjepa.bench.segrun import run_seg
from usjepa.bench.tasks import Task, load_task, task_names
from usjepa.bench.threads import torch_threads
from usjepa.distributed import pick_device
from usjepa.encoders import FrozenEncoder, registry
from usjepa.errors import ConfigError

PROTOCOLS = ("linear", "fewshot", "robust", "knn", "finetune", *VARIANTS)  # seg*: on segmentation tasks (segrun)
TSNE_ITERS = 500  # enough for a few hundred points; half of sklearn's default
ROWS_VERSION = 2  # bump when the rows a protocol writes change (2: linear rows carry effective_rank)


@dataclass
class BenchConfig:
    encoders: list[str]
    tasks: list[str]
    out: str
    data_root: str | None = None
    protocols: list[str] = field(default_factory=lambda: ["linear"])
    seeds: int = 5
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.5, 1.0])
    lrs: list[float] = field(default_factory=lambda: [1e-3])
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    pooling: str | None = None  # None: each encoder's default
    knn_k: int = 20
    val_seed: int = 0
    val_fraction: float = 0.1
    batch_size: int = 32  # feature extraction
    workers: int = 0
    threads: int = 0  # torch threads for the encoders; 0: one per core (on a shared CPU, 1 is often faster)
    device: str = "auto"  # where encoders and probes run: auto (a GPU when there is one), cpu, cuda
    cache: str | None = ""  # "" -> OUT/cache; None -> no cache
    finetune_seeds: int = 1
    tsne_points: int = 500
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown:
            raise ConfigError(f"--protocol: unknown {', '.join(unknown)} (choose from {', '.join(PROTOCOLS)})")
        if not self.encoders or not self.tasks:
            raise ConfigError("bench needs at least one encoder (--encoders) and one task (--tasks)")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 0 (0: one per core)")
        if self.seeds < 1 or any(not 0 < f <= 1 for f in self.fractions):
            raise ConfigError("--seeds must be >= 1 and --fractions in (0, 1]")
        conditions(tuple(self.corruptions), tuple(self.severities))


def run_bench(encoders: Sequence[str], tasks: Sequence[str] | str, out: str | Path, **options) -> dict:
    """Benchmark ``encoders`` (encoder registry specs) on ``tasks`` (names, 'all', 'synthus', or folders); write the report to ``out``.

    ``options`` are BenchConfig fields, e.g. data_root, protocols=["linear", "fewshot", "robust", "knn", "finetune"],
    seeds=5, fractions, lrs, pooling, workers, cache, probe=ProbeConfig(...), finetune=FinetuneConfig(...).
    Returns the results dict also written to OUT/results.json.
    """
    names = task_names(tasks) if isinstance(tasks, str) else list(tasks)
    try:
        cfg = BenchConfig(list(encoders), names, str(out), **options)
    except TypeError as e:
        raise ConfigError(f"run_bench: {e}") from None
    seg = [p for p in cfg.protocols if p in VARIANTS]
    with torch_threads(cfg.threads or os.cpu_count() or 1):
        if not seg:
            return _run(cfg)
        if set(cfg.protocols) - set(seg) - {"fewshot"}:  # fewshot with seg: the seg probes' label fractions
            raise ConfigError("--protocol: seg protocols run on segmentation tasks; run classification protocols apart")
        fractions = cfg.fractions if "fewshot" in cfg.protocols else [1.0]
        return run_seg(cfg.encoders, cfg.tasks, cfg.out, seg, cfg.seeds, tuple(fractions), cfg.data_root, cfg.cache,
                       cfg.device, cfg.val_seed, cfg.val_fraction, cfg.batch_size)


def _run(cfg: BenchConfig) -> dict:
    start, out = time.perf_counter(), Path(cfg.out)
    cache = Cache(None if cfg.cache is None else Path(cfg.cache or out / "cache"))
    loaded = [load_task(t, cfg.data_root, cfg.val_seed, cfg.val_fraction) for t in cfg.tasks]  # data faults first
    device = pick_device(cfg.device)
    rows, embeddings, enc_info = [], {}, {}
    for spec in cfg.encoders:
        enc = registry.load(spec).to(device)
        pooling = cfg.pooling or enc.pooling
        enc_info[spec] = {"fingerprint": enc.fingerprint, "weights_sha256": enc.weights_sha256, "img_size": enc.img_size,
                          "in_chans": enc.in_chans, "mean": enc.mean, "std": enc.std, "pooling": pooling}
        for task in loaded:
            tag = {"encoder": spec, "task": task.name, "weights_fingerprint": enc.fingerprint, "split_hash": task.split_hash}
            rows += [tag | r for r in _evaluate(cfg, cache, enc, task, pooling)]
            embeddings[(spec, task.name)] = _tsne(cfg, cache, enc, task, pooling)
    results = {"provenance": provenance() | {"seconds": round(time.perf_counter() - start, 2)},
               "config": dataclasses.asdict(cfg), "encoders": enc_info,
               "tasks": {t.name: {"source": src, "folder": str(t.folder.resolve()), "n_classes": t.n_classes,
                                  "sizes": t.sizes(), "split_hash": t.split_hash, "version": t.version,
                                  "chance_macro_f1": chance_macro_f1(t.labels("test"), t.n_classes)}
                         for t, src in zip(loaded, cfg.tasks)},
               "rows": rows}
    results["provenance"]["cache"] = {"hits": cache.hits, "misses": cache.misses}
    write_report(out, results, embeddings)
    return results


def _evaluate(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> list[dict]:
    """Result rows of every requested protocol for one encoder x task (each protocol's rows cached)."""
    base = {"features": feature_key(enc, task, "test", pooling, None)}
    rows = []
    if {"linear", "fewshot", "robust"} & set(cfg.protocols):
        key = base | {"kind": "probe", "rows": ROWS_VERSION, "probe": dataclasses.asdict(cfg.probe), "seeds": cfg.seeds,
                      "lrs": cfg.lrs, "fractions": _fractions(cfg), "protocols": sorted({"linear", "fewshot", "robust"} & set(cfg.protocols)),
                      "conditions": _conditions(cfg)}
        rows += cache.json(key, lambda: _probe_rows(cfg, cache, enc, task, pooling))
    if "knn" in cfg.protocols:
        rows += cache.json(base | {"kind": "knn", "k": cfg.knn_k}, lambda: _knn_rows(cfg, cache, enc, task, pooling))
    if "finetune" in cfg.protocols:
        for seed in range(cfg.finetune_seeds):
            key = base | {"kind": "finetune", "cfg": dataclasses.asdict(cfg.finetune), "seed": seed}
            rows += cache.json(key, lambda: [{"protocol": "finetune", "seed": seed, "fraction": 1.0, "lr": cfg.finetune.lr}
                                             | finetune(enc, task, seed, pooling, cfg.finetune, cfg.workers)])
    return rows


def _fractions(cfg: BenchConfig) -> list[float]:
    return sorted(set(cfg.fractions) | {1.0}) if "fewshot" in cfg.protocols else [1.0]


def _conditions(cfg: BenchConfig) -> list[tuple[str, int]]:
    return conditions(tuple(cfg.corruptions), tuple(cfg.severities)) if "robust" in cfg.protocols else []


def _features(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str, split: str,
              corruption: tuple[str, int] | None = None) -> torch.Tensor:
    return task_features(cache, enc, task, split, pooling, corruption, cfg.batch_size, cfg.workers)


def _probe_rows(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> list[dict]:
    """Linear, few-shot and robustness rows from one batched sweep; selection reads validation only."""
    x = {s: _features(cfg, cache, enc, task, pooling, s) for s in ("train", "val")}
    y = {s: torch.from_numpy(task.labels(s)) for s in ("train", "val")}
    heads = [Head(seed, f, lr) for seed in range(cfg.seeds) for f in _fractions(cfg) for lr in cfg.lrs]
    probes = fit(x["train"], y["train"], x["val"], y["val"], task.n_classes, heads, cfg.probe, enc.device)
    chosen = select(probes)  # every choice is made by now; test features are read only below
    y_test = task.labels("test")
    proba = probes.proba(_features(cfg, cache, enc, task, pooling, "test"))[chosen].numpy()
    rows, clean, rank = [], {}, effective_rank(x["train"])
    for i, sc in zip(chosen, scores(y_test, proba, task.n_classes)):
        h = heads[i]
        row = {"seed": h.seed, "fraction": h.fraction, "lr": h.lr, "val_macro_f1": probes.val_f1[i],
               "best_epoch": probes.best_epoch[i]} | sc
        if h.fraction == 1.0:
            clean[h.seed] = row["macro_f1"]
            rows += [row | {"protocol": "linear", "effective_rank": rank}] if {"linear", "robust"} & set(cfg.protocols) else []  # robust: the clean reference
        rows += [row | {"protocol": "fewshot"}] if "fewshot" in cfg.protocols else []
    full = [i for i in chosen if heads[i].fraction == 1.0]
    for c, s in _conditions(cfg):
        xc = _features(cfg, cache, enc, task, pooling, "test", (c, s))
        for i, sc in zip(full, scores(y_test, probes.proba(xc)[full].numpy(), task.n_classes)):
            rows.append({"protocol": "robust", "seed": heads[i].seed, "fraction": 1.0, "lr": heads[i].lr, "corruption": c,
                         "severity": s, "relative_drop": relative_drop(clean[heads[i].seed], sc["macro_f1"])} | sc)
    return rows


def _knn_rows(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> list[dict]:
    x = {s: _features(cfg, cache, enc, task, pooling, s).numpy() for s in ("train", "test")}
    proba = knn_proba(x["train"], task.labels("train"), x["test"], task.n_classes, cfg.knn_k)
    return [{"protocol": "knn", "seed": 0, "fraction": 1.0} | scores(task.labels("test"), proba[None], task.n_classes)[0]]


def _tsne(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of (up to tsne_points) clean test features, cached."""
    def compute() -> dict[str, torch.Tensor]:
        x, y = _features(cfg, cache, enc, task, pooling, "test").numpy(), task.labels("test")
        keep = np.sort(np.random.default_rng(0).permutation(len(x))[: cfg.tsne_points])
        perplexity = float(min(30, max(2, (len(keep) - 1) // 3)))
        method = "exact" if len(keep) <= 1000 else "barnes_hut"  # exact is faster on small sets
        xy = TSNE(2, perplexity=perplexity, init="pca", method=method, max_iter=TSNE_ITERS,
                  random_state=0).fit_transform(x[keep])
        return {"xy": torch.from_numpy(xy.astype(np.float32)), "y": torch.from_numpy(y[keep])}

    out = cache.tensors({"kind": "tsne", "features": feature_key(enc, task, "test", pooling, None), "n": cfg.tsne_points,
                         "iters": TSNE_ITERS},
                        compute)
    return out["xy"].numpy(), out["y"].numpy()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoders", help=f"comma-separated specs; {registry.help_text()}")
    p.add_argument("--tasks", default="all", help="'all' (the paper's 8), 'synthus', or comma-separated names/folders")
    p.add_argument("--protocol", default="linear", help=f"comma-separated: {','.join(PROTOCOLS)}")
    p.add_argument("--data-root", help="folder holding the UltraBench / SynthUS task folders")
    p.add_argument("--out", default="bench_out", help="output folder")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--fractions", default="0.01,0.05,0.1,0.5,1.0", help="few-shot label fractions")
    p.add_argument("--lrs", default="1e-3", help="probe learning rates (several: chosen per seed on validation)")
    p.add_argument("--pooling", help="cls, mean, cls+mean, last4 or head (default: each encoder's own)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch threads for the encoders (0: one per core; on a "
                                                           "CPU shared with other jobs, 1 is often faster)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the encoders and probes run (auto: a GPU when there is one)")
    p.add_argument("--cache", default="", help="cache folder (default OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything")
    p.add_argument("--finetune-epochs", type=int, default=FinetuneConfig.epochs)
    p.add_argument("--verify", metavar="RESULTS", help="re-hash the inputs recorded in RESULTS (results.json) and "
                                                       "say whether they changed; runs nothing else")


def run(args: argparse.Namespace) -> int:
    if args.verify:
        lines, same = verify(args.verify)
        print("\n".join(lines))
        print("all inputs unchanged" if same else "some inputs changed: results are not reproducible as recorded")
        return 0 if same else 1
    if not args.encoders:
        raise ConfigError("--encoders is required (or --verify RESULTS)")
    start = time.perf_counter()
    results = run_bench(
        [s.strip() for s in args.encoders.split(",") if s.strip()], args.tasks, args.out, data_root=args.data_root,
        protocols=[p.strip() for p in args.protocol.split(",")], seeds=args.seeds,
        fractions=[float(f) for f in args.fractions.split(",")], lrs=[float(v) for v in args.lrs.split(",")],
        pooling=args.pooling, workers=args.workers, threads=args.threads, device=args.device,
        cache=None if args.no_cache else args.cache,
        finetune=FinetuneConfig(epochs=args.finetune_epochs))
    cache = results["provenance"]["cache"]
    print(f"{len(results['rows'])} results in {time.perf_counter() - start:.2f} s, report included (cache: "
          f"{cache['hits']} hits, {cache['misses']} misses) -> {Path(args.out) / 'report.html'}")
    return 0
