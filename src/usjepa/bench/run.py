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
import yaml
from sklearn.manifold import TSNE

from usjepa.bench.cache import Cache
from usjepa.bench.features import effective_rank, feature_key, task_features
from usjepa.bench.finetune import FinetuneConfig, finetune
from usjepa.bench.grid import PRESETS, ProbeGrid, fit_grid, select
from usjepa.bench.knn import knn_proba
from usjepa.bench.probe import Head, ProbeConfig, chance_macro_f1, scores
from usjepa.bench.provenance import provenance, verify
from usjepa.bench.report import TsneMap, write_report
from usjepa.bench.robustness import CORRUPTIONS, SEVERITIES, conditions, relative_drop
from usjepa.bench.segprobe import VARIANTS
from usjepa.bench.segrun import run_seg
from usjepa.bench.significance import annotate, split_predictions
from usjepa.bench.tasks import ALLOW_FLAG, Task, load_task, task_names
from usjepa.bench.threads import torch_threads
from usjepa.config import _build as build_config
from usjepa.config import load_tree, to_dict
from usjepa.distributed import pick_device
from usjepa.encoders import FrozenEncoder, registry
from usjepa.errors import ConfigError
from usjepa.paths import out_dir

PROTOCOLS = ("linear", "fewshot", "robust", "knn", "finetune", *VARIANTS)  # seg*: on segmentation tasks (segrun)
TSNE_ITERS = 500  # enough for a few hundred points; half of sklearn's default
ROWS_VERSION = 3  # bump when the rows a protocol writes change (2: effective_rank; 3: per-image test predictions)


@dataclass
class EncoderEntry:
    spec: str  # an encoder registry spec: usjepa:PATH, timm:NAME@FILE, effnet-lite0:112, ...
    name: str = ""  # the report's row name; "" -> a readable name from the spec

    def __post_init__(self) -> None:
        self.name = self.name or display_name(self.spec)


@dataclass
class GridOverrides:
    """The probe grid, on top of the preset: every field left at None is the preset's."""

    lrs: list[float] | None = None
    cs: list[float] | None = None
    poolings: list[str] | None = None
    probe: ProbeConfig | None = None


@dataclass
class BenchConfig:
    encoders: list[EncoderEntry]
    tasks: list[str]
    out: str
    data_root: str | None = None
    protocols: list[str] = field(default_factory=lambda: ["linear"])
    protocol_preset: str = "grid"  # grid (learning rates x poolings, chosen on validation) or paper (one lr)
    seeds: int = 5
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.5, 1.0])
    grid: GridOverrides = field(default_factory=GridOverrides)
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    pooling: str | None = None  # kNN, fine-tuning, t-SNE and the paper preset's probe; None: each encoder's own
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
    resamples: int = 2000  # bootstrap / permutation resamples of the test set
    allow_incomplete_tasks: bool = False  # score tasks whose splits lack a class (their rows are marked)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        self.encoders = [
            e if isinstance(e, EncoderEntry) else EncoderEntry(**e) if isinstance(e, dict) else EncoderEntry(str(e))
            for e in self.encoders
        ]
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown:
            raise ConfigError(f"--protocol: unknown {', '.join(unknown)} (choose from {', '.join(PROTOCOLS)})")
        if self.protocol_preset not in PRESETS:
            raise ConfigError(f"protocol_preset: unknown '{self.protocol_preset}' (choose from {', '.join(PRESETS)})")
        if not self.encoders or not self.tasks:
            raise ConfigError("bench needs at least one encoder (--encoders) and one task (--tasks)")
        names = [e.name for e in self.encoders]
        if len(set(names)) < len(names):
            raise ConfigError(f"encoders: display names must differ, got {names} (give each a 'name')")
        if self.resamples < 1000:
            raise ConfigError(f"resamples: at least 1000 for a 95 % interval, got {self.resamples}")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 0 (0: one per core)")
        if self.seeds < 1 or any(not 0 < f <= 1 for f in self.fractions):
            raise ConfigError("--seeds must be >= 1 and --fractions in (0, 1]")
        for flag, value, low in (
            ("--workers", self.workers, 0),
            ("knn_k", self.knn_k, 1),
            ("batch_size", self.batch_size, 1),
            ("--finetune-epochs", self.finetune.epochs, 1),
            ("--finetune-seeds", self.finetune_seeds, 1),
        ):
            if value < low:
                raise ConfigError(f"{flag} must be >= {low}, got {value}")
        conditions(tuple(self.corruptions), tuple(self.severities))
        self.probe_grid()  # a bad grid fails before any work

    def probe_grid(self) -> ProbeGrid:
        """The preset with this config's grid overrides; --pooling alone narrows the grid to that pooling."""
        base, g = PRESETS[self.protocol_preset], self.grid
        poolings = g.poolings if g.poolings is not None else [self.pooling] if self.pooling else base.poolings
        return ProbeGrid(
            tuple(g.lrs) if g.lrs is not None else base.lrs,
            tuple(g.cs) if g.cs is not None else base.cs,
            tuple(poolings),
            g.probe or base.probe,
        )


def display_name(spec: str) -> str:
    """A readable row name for a spec: a run's export folder is named by its run, a path by its last part."""
    kind, _, arg = spec.partition(":")
    path = Path(arg.split("@")[0])
    name = path.parent.name if path.name == "export" else path.name  # a run's export/ is named by its run
    return spec if not arg or not name else f"{kind}:{name}"


def run_bench(encoders: Sequence[str | EncoderEntry], tasks: Sequence[str] | str, out: str | Path, **options) -> dict:
    """Benchmark ``encoders`` (encoder registry specs, or EncoderEntry(spec, name)) on ``tasks`` (names, 'all',
    'synthus', or folders); write the report to ``out``.

    ``options`` are BenchConfig fields, e.g. data_root, protocols=["linear", "fewshot", "robust", "knn", "finetune"],
    protocol_preset="grid" or "paper", seeds=5, fractions, grid=GridOverrides(lrs=..., poolings=..., probe=...),
    pooling, workers, cache, finetune=FinetuneConfig(...). Returns the results dict also written to OUT/results.json.
    """
    names = task_names(tasks) if isinstance(tasks, str) else list(tasks)
    try:
        cfg = BenchConfig(list(encoders), names, str(out), **options)
    except TypeError as e:
        raise ConfigError(f"run_bench: {e}") from None
    return run_config(cfg)


def run_config(cfg: BenchConfig) -> dict:
    """Run a resolved BenchConfig; OUT gets bench.yaml (the config, as resolved) beside the results."""
    save_bench_config(cfg, out_dir(cfg.out, "--out") / "bench.yaml")
    seg = [p for p in cfg.protocols if p in VARIANTS]
    with torch_threads(cfg.threads or os.cpu_count() or 1):
        if not seg:
            return _run(cfg)
        if set(cfg.protocols) - set(seg) - {"fewshot"}:  # fewshot with seg: the seg probes' label fractions
            raise ConfigError("--protocol: seg protocols run on segmentation tasks; run classification protocols apart")
        fractions = cfg.fractions if "fewshot" in cfg.protocols else [1.0]
        return run_seg(
            [e.spec for e in cfg.encoders],
            cfg.tasks,
            cfg.out,
            seg,
            cfg.seeds,
            tuple(fractions),
            cfg.data_root,
            cfg.cache,
            cfg.device,
            cfg.val_seed,
            cfg.val_fraction,
            cfg.batch_size,
        )


def _run(cfg: BenchConfig) -> dict:
    start, out = time.perf_counter(), Path(cfg.out)
    loaded = [
        load_task(t, cfg.data_root, cfg.val_seed, cfg.val_fraction, cfg.allow_incomplete_tasks) for t in cfg.tasks
    ]  # data faults first
    for t in loaded:
        if t.warning:
            print(f"warning: {t.warning}; scored anyway ({ALLOW_FLAG}), marked in the report")
    cache_root = None if cfg.cache is None else Path(cfg.cache or out / "cache")
    for flag, folder in (("--out", out), ("--cache", cache_root)):
        if folder is not None:
            out_dir(folder, flag)
    cache = Cache(cache_root)
    device = pick_device(cfg.device)
    rows, maps, enc_info, grid = [], {}, {}, cfg.probe_grid()
    for entry in cfg.encoders:
        enc = registry.load(entry.spec).to(device)
        pooling = cfg.pooling or enc.pooling
        enc_info[entry.name] = {
            "spec": entry.spec,
            "fingerprint": enc.fingerprint,
            "weights_sha256": enc.weights_sha256,
            "img_size": enc.img_size,
            "in_chans": enc.in_chans,
            "mean": enc.mean,
            "std": enc.std,
            "pooling": pooling,
            "grid_poolings": grid.poolings_for(enc.poolings, pooling),
        }
        for task in loaded:
            tag = {
                "encoder": entry.name,
                "task": task.name,
                "weights_fingerprint": enc.fingerprint,
                "split_hash": task.split_hash,
            }
            tag |= {"task_warning": task.warning} if task.warning else {}
            rows += [tag | r for r in _evaluate(cfg, cache, enc, task, pooling)]
            maps[(entry.name, task.name)] = _tsne(cfg, cache, enc, task, pooling)
    rows, preds = split_predictions(rows)
    stats = annotate(
        rows, preds, {t.name: t.labels("test") for t in loaded}, {t.name: t.n_classes for t in loaded}, cfg.resamples
    )
    results = {
        "provenance": provenance() | {"seconds": round(time.perf_counter() - start, 2)},
        "config": bench_config_dict(cfg),
        "protocol": {"preset": cfg.protocol_preset, "grid": dataclasses.asdict(grid)},
        "encoders": enc_info,
        "tasks": {
            t.name: {
                "source": src,
                "folder": str(t.folder.resolve()),
                "n_classes": t.n_classes,
                "sizes": t.sizes(),
                "split_hash": t.split_hash,
                "version": t.version,
                "warning": t.warning,
                "chance_macro_f1": chance_macro_f1(t.labels("test"), t.n_classes),
            }
            for t, src in zip(loaded, cfg.tasks)
        },
        "rows": rows,
    } | stats
    results["provenance"]["cache"] = {"hits": cache.hits, "misses": cache.misses}
    write_report(out, results, maps)
    return results


def _evaluate(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> list[dict]:
    """Result rows of every requested protocol for one encoder x task (each protocol's rows cached)."""
    base = {"features": feature_key(enc, task, "test", pooling, None)}
    rows = []
    if {"linear", "fewshot", "robust"} & set(cfg.protocols):
        grid = cfg.probe_grid()
        pools = grid.poolings_for(enc.poolings, pooling)
        key = base | {
            "kind": "probe",
            "rows": ROWS_VERSION,
            "grid": dataclasses.asdict(grid),
            "poolings": pools,
            "seeds": cfg.seeds,
            "fractions": _fractions(cfg),
            "protocols": sorted({"linear", "fewshot", "robust"} & set(cfg.protocols)),
            "conditions": _conditions(cfg),
        }
        rows += cache.json(key, lambda: _probe_rows(cfg, cache, enc, task, pooling, grid, pools))
    if "knn" in cfg.protocols:
        rows += cache.json(base | {"kind": "knn", "k": cfg.knn_k}, lambda: _knn_rows(cfg, cache, enc, task, pooling))
    if "finetune" in cfg.protocols:
        for seed in range(cfg.finetune_seeds):
            key = base | {"kind": "finetune", "cfg": dataclasses.asdict(cfg.finetune), "seed": seed}
            rows += cache.json(
                key,
                lambda: [
                    {"protocol": "finetune", "seed": seed, "fraction": 1.0, "lr": cfg.finetune.lr, "pooling": pooling}
                    | finetune(enc, task, seed, pooling, cfg.finetune, cfg.workers)
                ],
            )
    return rows


def _fractions(cfg: BenchConfig) -> list[float]:
    return sorted(set(cfg.fractions) | {1.0}) if "fewshot" in cfg.protocols else [1.0]


def _conditions(cfg: BenchConfig) -> list[tuple[str, int]]:
    return conditions(tuple(cfg.corruptions), tuple(cfg.severities)) if "robust" in cfg.protocols else []


def _features(
    cfg: BenchConfig,
    cache: Cache,
    enc: FrozenEncoder,
    task: Task,
    pooling: str,
    split: str,
    corruption: tuple[str, int] | None = None,
) -> torch.Tensor:
    return task_features(cache, enc, task, split, pooling, corruption, cfg.batch_size, cfg.workers)


def _probe_rows(
    cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str, grid: ProbeGrid, pools: list[str]
) -> list[dict]:
    """Linear, few-shot and robustness rows from one grid sweep; selection reads validation only. Each row carries
    its head's per-image test predictions (``pred``), for the CIs and paired tests."""
    x = {s: {p: _features(cfg, cache, enc, task, p, s) for p in pools} for s in ("train", "val")}
    y = {s: torch.from_numpy(task.labels(s)) for s in ("train", "val")}
    heads = [Head(seed, f) for seed in range(cfg.seeds) for f in _fractions(cfg)]
    probes = fit_grid(x["train"], y["train"], x["val"], y["val"], task.n_classes, heads, grid, enc.device)
    chosen = select(probes)  # every choice is made by now; test features are read only below
    used = sorted({probes.heads[i][0] for i in chosen}, key=pools.index)
    y_test = task.labels("test")
    proba = probes.proba({p: _features(cfg, cache, enc, task, p, "test") for p in used}, chosen).numpy()
    rows, clean = [], {}
    rank = effective_rank(_features(cfg, cache, enc, task, pooling, "train"))  # of the encoder's own pooling
    for i, sc, pr in zip(chosen, scores(y_test, proba, task.n_classes), proba.argmax(-1)):
        pool, h = probes.heads[i]
        row = (
            {
                "seed": h.seed,
                "fraction": h.fraction,
                "lr": h.lr,
                "pooling": pool,
                "val_macro_f1": probes.val_f1[i],
                "best_epoch": probes.best_epoch[i],
            }
            | sc
            | {"pred": pr.tolist()}
        )
        if h.fraction == 1.0:
            clean[h.seed] = row["macro_f1"]
            rows += (
                [row | {"protocol": "linear", "effective_rank": rank}]
                if {"linear", "robust"} & set(cfg.protocols)
                else []
            )  # robust: the clean reference
        rows += [row | {"protocol": "fewshot"}] if "fewshot" in cfg.protocols else []
    full = [i for i in chosen if probes.heads[i][1].fraction == 1.0]
    full_pools = sorted({probes.heads[i][0] for i in full}, key=pools.index)
    for c, s in _conditions(cfg):
        xc = {p: _features(cfg, cache, enc, task, p, "test", (c, s)) for p in full_pools}
        pc = probes.proba(xc, full).numpy()
        for i, sc, pr in zip(full, scores(y_test, pc, task.n_classes), pc.argmax(-1)):
            pool, h = probes.heads[i]
            rows.append(
                {
                    "protocol": "robust",
                    "seed": h.seed,
                    "fraction": 1.0,
                    "lr": h.lr,
                    "pooling": pool,
                    "corruption": c,
                    "severity": s,
                    "relative_drop": relative_drop(clean[h.seed], sc["macro_f1"]),
                }
                | sc
                | {"pred": pr.tolist()}
            )
    return rows


def _knn_rows(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> list[dict]:
    x = {s: _features(cfg, cache, enc, task, pooling, s).numpy() for s in ("train", "test")}
    proba = knn_proba(x["train"], task.labels("train"), x["test"], task.n_classes, cfg.knn_k)
    return [
        {"protocol": "knn", "seed": 0, "fraction": 1.0, "pooling": pooling}
        | scores(task.labels("test"), proba[None], task.n_classes)[0]
        | {"pred": proba.argmax(1).tolist()}
    ]


def tsne_2d(x: np.ndarray) -> np.ndarray:
    """The report's 2-D t-SNE of features [N, D] (seeded); one or two points are drawn at the origin."""
    if len(x) < 3:  # t-SNE needs perplexity < points
        return np.zeros((len(x), 2), np.float32)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    method = "exact" if len(x) <= 1000 else "barnes_hut"  # exact is faster on small sets
    tsne = TSNE(2, perplexity=perplexity, init="pca", method=method, max_iter=TSNE_ITERS, random_state=0)
    return tsne.fit_transform(x).astype(np.float32)


def _tsne(cfg: BenchConfig, cache: Cache, enc: FrozenEncoder, task: Task, pooling: str) -> TsneMap:
    """2-D t-SNE of (up to tsne_points) clean test features, cached; with the points' probe kinds where every
    test record names one (SynthUS's do)."""
    keep = np.sort(np.random.default_rng(0).permutation(len(task.splits["test"]))[: cfg.tsne_points])

    def compute() -> dict[str, torch.Tensor]:
        x, y = _features(cfg, cache, enc, task, pooling, "test").numpy(), task.labels("test")
        return {"xy": torch.from_numpy(tsne_2d(x[keep])), "y": torch.from_numpy(y[keep])}

    out = cache.tensors(
        {
            "kind": "tsne",
            "features": feature_key(enc, task, "test", pooling, None),
            "n": cfg.tsne_points,
            "iters": TSNE_ITERS,
        },
        compute,
    )
    probe = task.probe_kinds("test")
    if probe is None:
        return TsneMap(out["xy"].numpy(), out["y"].numpy())
    return TsneMap(out["xy"].numpy(), out["y"].numpy(), probe[keep], task.probe_kind_names("test"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help="a bench YAML (encoders with display names, tasks, protocols, seeds, grid, ...); "
        "the flags below override it",
    )
    p.add_argument("--encoders", help=f"comma-separated specs; {registry.help_text()}")
    p.add_argument("--tasks", help="'all' (the paper's 8; the default), 'synthus', or comma-separated names/folders")
    p.add_argument("--protocol", help=f"comma-separated: {','.join(PROTOCOLS)} (default linear)")
    p.add_argument(
        "--protocol-preset",
        choices=tuple(PRESETS),
        help="grid (the default: learning rates x poolings, "
        "chosen per seed on validation) or paper (the paper's protocol: one lr, the encoder's pooling)",
    )
    p.add_argument("--data-root", help="folder holding the UltraBench / SynthUS task folders")
    p.add_argument("--out", help="output folder (default bench_out)")
    p.add_argument("--seeds", type=int, help="probe seeds (default 5)")
    p.add_argument("--fractions", help="few-shot label fractions (default 0.01,0.05,0.1,0.5,1.0)")
    p.add_argument(
        "--lrs", help="probe learning rates, replacing the preset's (several: chosen per seed on validation)"
    )
    p.add_argument(
        "--pooling",
        help="cls, mean, cls+mean, last4 or head: for every protocol, and the probe grid's only "
        "pooling (default: each encoder's own; the grid preset tries several)",
    )
    p.add_argument("--workers", type=int, help="data-loading worker processes (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads for the encoders (0, the default: one per core; on a "
        "CPU shared with other jobs, 1 is often faster)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="where the encoders and probes run (auto, the default: a GPU when there is one)",
    )
    p.add_argument("--cache", help="cache folder (default OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything")
    p.add_argument("--finetune-epochs", type=int, help=f"default {FinetuneConfig.epochs}")
    p.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="score tasks whose splits lack a class (an error otherwise); their rows are marked in the report",
    )
    p.add_argument(
        "--verify",
        metavar="RESULTS",
        help="re-hash the inputs recorded in RESULTS (results.json) and say whether they changed; runs nothing else",
    )


def _split(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The bench YAML (if any) with the command-line flags on top, checked as one typed BenchConfig."""
    tree = load_tree(args.config) if args.config else {}
    flags = {
        "encoders": args.encoders and _split(args.encoders),
        "protocols": args.protocol and _split(args.protocol),
        "protocol_preset": args.protocol_preset,
        "data_root": args.data_root,
        "out": args.out,
        "seeds": args.seeds,
        "fractions": None if args.fractions is None else numbers(args.fractions, "--fractions"),
        "pooling": args.pooling,
        "workers": args.workers,
        "threads": args.threads,
        "device": args.device,
        "cache": args.cache,
    }
    tree |= {k: v for k, v in flags.items() if v is not None}
    if args.tasks or "tasks" not in tree:
        tree["tasks"] = args.tasks or "all"
    if isinstance(tree["tasks"], str):
        tree["tasks"] = task_names(tree["tasks"])
    if args.lrs is not None:
        tree["grid"] = dict(tree.get("grid") or {}, lrs=numbers(args.lrs, "--lrs"))
    if args.no_cache:
        tree["cache"] = None
    if args.allow_incomplete_tasks:
        tree["allow_incomplete_tasks"] = True
    if args.finetune_epochs is not None:
        tree["finetune"] = dict(tree.get("finetune") or {}, epochs=args.finetune_epochs)
    tree.setdefault("out", "bench_out")
    if not tree.get("encoders"):
        raise ConfigError("--encoders (or 'encoders:' in --config) is required, or --verify RESULTS")
    tree["encoders"] = [{"spec": e} if isinstance(e, str) else e for e in tree["encoders"]]
    return build_config(BenchConfig, tree)


def bench_config_dict(cfg: BenchConfig) -> dict:
    return to_dict(cfg)


def save_bench_config(cfg: BenchConfig, path: Path) -> None:
    """The resolved config as YAML: ``usjepa bench --config`` on it runs the same benchmark."""
    path.write_text(yaml.safe_dump(bench_config_dict(cfg), sort_keys=False))


def numbers(text: str, flag: str) -> list[float]:
    """``"1e-3,1e-2"`` -> [0.001, 0.01]; a ConfigError names the flag and the item that is not a number."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        bad = next(v for v in text.split(",") if not _is_number(v))
        raise ConfigError(
            f"{flag}: {bad!r} is not a number (expected a comma-separated list, e.g. 0.1,0.5,1.0)"
        ) from None


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if args.verify:
        lines, same = verify(args.verify)
        print("\n".join(lines))
        print("all inputs unchanged" if same else "some inputs changed: results are not reproducible as recorded")
        return 0 if same else 1
    start = time.perf_counter()
    cfg = config_from_args(args)
    results = run_config(cfg)
    cache = results["provenance"]["cache"]
    print(
        f"{len(results['rows'])} results in {time.perf_counter() - start:.2f} s, report included (cache: "
        f"{cache['hits']} hits, {cache['misses']} misses) -> {Path(cfg.out) / 'report.html'}"
    )
    return 0
