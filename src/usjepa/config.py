"""Typed configuration: dataclasses loaded from YAML plus dotted overrides.

Unknown keys and wrong types fail before any work, naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from usjepa.errors import ConfigError
from usjepa.methods import method_class

CONFIG_DIR = Path(__file__).parent / "configs"
INTERVAL = re.compile(r"^([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(inf|[-+0-9.e]+)\s*([\])])$")


def ranged(default, interval: str, ordered: bool = False):
    """A field whose value (each of them, for a pair) must lie in ``interval``, such as "[0, 1)" or "(0, inf)";
    ``ordered``: a (low, high) pair with low <= high. Checked when a config is built, naming the key."""
    assert INTERVAL.match(interval), interval
    return field(default=default, metadata={"range": interval, "ordered": ordered})


def _in_interval(v: float, interval: str) -> bool:
    lo_b, lo, hi, hi_b = INTERVAL.match(interval).groups()
    lo, hi = float(lo), float(hi)
    return (lo <= v if lo_b == "[" else lo < v) and (v <= hi if hi_b == "]" else v < hi)


def _describe(interval: str) -> str:
    lo_b, lo, hi, _ = INTERVAL.match(interval).groups()
    if hi == "inf":
        return f"must be {'>=' if lo_b == '[' else '>'} {lo}"
    return f"must lie in {interval}"


def _check_range(f: dataclasses.Field, value, key: str) -> None:
    interval = f.metadata.get("range")
    if interval is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    if not all(_in_interval(v, interval) for v in values):
        got = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{key}: {_describe(interval)}{' (each value)' if len(values) > 1 else ''}, got {got}")
    if f.metadata["ordered"] and values[0] > values[1]:
        raise ConfigError(f"{key}: must be [low, high] with low <= high, got {list(values)}")


@dataclass
class DataConfig:
    # Source specs: an UltraBench folder, an image folder, a manifest (.csv/.json),
    # a DICOM file or folder, a video, or WebDataset shards ("dir/*.tar" or "{000..009}.tar"), each with optional
    # "?organ=liver&fps=3" options. Command line: "data.sources=[DIR?organ=liver, DIR2]" (quoted for the shell);
    # in a YAML file, list the specs in block style ("- DIR?organ=liver") or quote them.
    sources: list[str] = field(default_factory=list)
    img_size: int = ranged(224, "[8, 4096]")
    in_chans: int = ranged(1, "[1, 3]")
    val_fraction: float = ranged(0.05, "[0, 1)")  # held out for validation-loss model selection
    cap_per_source: int = ranged(50_000, "[1, inf)")  # paper's N_t: samples per source per epoch
    organ_weighting: bool = False  # equalise organs on top of the per-source cap
    num_workers: int = ranged(2, "[0, 256]")
    steps_per_epoch: int = ranged(0, "[0, inf)")  # 0: derived from the capped corpus size


@dataclass
class AugmentConfig:
    enabled: bool = True
    crop_scale: tuple[float, float] = ranged((0.6, 1.0), "(0, 1]", ordered=True)
    hflip: float = ranged(0.5, "[0, 1]")
    vflip: float = ranged(0.5, "[0, 1]")
    blur_p: float = ranged(0.2, "[0, 1]")
    blur_sigma: tuple[float, float] = ranged((0.1, 1.5), "(0, 20]", ordered=True)
    speckle_p: float = ranged(0.2, "[0, 1]")
    speckle_sigma: tuple[float, float] = ranged((0.05, 0.3), "[0, 2]", ordered=True)
    contrast_p: float = ranged(0.2, "[0, 1]")
    contrast_range: tuple[float, float] = ranged((0.6, 1.4), "(0, 10]", ordered=True)


@dataclass
class MaskConfig:
    ctx_scale: tuple[float, float] = ranged((0.85, 1.0), "(0, 1]", ordered=True)
    ctx_aspect: tuple[float, float] = ranged((1.0, 1.0), "(0, 100]", ordered=True)
    n_targets: int = ranged(4, "[1, 256]")
    tgt_scale: tuple[float, float] = ranged((0.075, 0.125), "(0, 1]", ordered=True)
    tgt_aspect: tuple[float, float] = ranged((0.75, 1.5), "(0, 100]", ordered=True)
    min_keep: int = ranged(10, "[1, inf)")
    random_ratio: float = ranged(0.75, "(0, 1)")  # fraction masked when kind == "random" (MAE)
    pad_mode: Literal["pad", "truncate"] = "truncate"  # I-JEPA's; "pad" keeps every token, ~1.5x slower step
    usrc: bool = False  # condition blocks and loss on the scan region
    usrc_tau: float = ranged(0.5, "[0, 1]")  # minimum fraction of valid patches in every block
    max_tries: int = ranged(50, "[1, 100000]")  # rejection-sampling budget per block


@dataclass
class ModelConfig:
    arch: str = "vit_base_patch16_224"
    patch_size: int = ranged(0, "[0, 1024]")  # 0: the arch's own
    depth: int = ranged(0, "[0, 256]")  # 0: the arch's own
    drop_path: float = ranged(0.0, "[0, 1)")
    pred_depth: int = ranged(12, "[1, 256]")
    pred_dim: int = ranged(384, "[1, 65536]")
    pred_heads: int = ranged(12, "[1, 1024]")
    dec_depth: int = ranged(2, "[1, 256]")  # pixel decoder (vpixel, mae)
    dec_dim: int = ranged(256, "[1, 65536]")
    dec_heads: int = ranged(8, "[1, 1024]")
    grad_checkpointing: bool = False


@dataclass
class TeacherConfig:
    # An encoder spec (effnet-lite0, timm:NAME@FILE, hf:DIR, usfm:PATH, urfm:PATH, usjepa:PATH, ...; see
    # `usjepa bench --help`), or a stage-1 run dir, checkpoint or usjepa export dir.
    source: str = ""
    target_norm: Literal["none", "layernorm"] = "layernorm"
    layer: int = ranged(
        -1, "[-1000, 1000]"
    )  # the block (ViT) or feature stage (CNN) whose map is the target; -1: the last
    last_k: int = ranged(1, "[1, inf)")  # ViTs: the mean of the last_k blocks ending at layer


@dataclass
class OptimConfig:
    batch_size: int = ranged(128, "[1, inf)")  # global: summed over ranks and accumulation steps
    accum_steps: int = ranged(1, "[1, inf)")
    epochs: int = ranged(100, "[1, inf)")
    warmup_epochs: float = ranged(10, "[0, inf)")
    lr: float = ranged(5e-5, "(0, inf)")
    start_lr: float = ranged(0.0, "[0, inf)")
    final_lr: float = ranged(5e-7, "[0, inf)")
    weight_decay: float = ranged(0.04, "[0, inf)")
    final_weight_decay: float = ranged(0.4, "[0, inf)")
    betas: tuple[float, float] = ranged((0.9, 0.999), "[0, 1)")
    clip_grad: float = ranged(1.0, "[0, inf)")  # 0 disables
    ema: tuple[float, float] = ranged((0.996, 1.0), "[0, 1]", ordered=True)  # ijepa target momentum, start -> end
    norm_pix_loss: bool = True  # vpixel / mae targets


@dataclass
class MonitorConfig:
    """Checks of the student's pooled features during pretraining (usjepa.monitor); they need a validation split."""

    enabled: bool = True  # off by itself when data.val_fraction is 0
    every: int = ranged(100, "[0, inf)")  # steps between checks, besides one at each validation; 0: only at validations
    images: int = ranged(
        256, "[2, inf)"
    )  # the fixed held-out validation-split images whose features give the effective rank
    tasks: list[str] = field(default_factory=list)  # UltraBench-layout task folders (or names under data_root) to probe
    data_root: str = ""  # where task names are found
    max_images: int = ranged(512, "[2, inf)")  # per task split (train, val): a seeded subset of larger splits
    knn_k: int = ranged(20, "[1, inf)")
    probe_epochs: int = ranged(
        30, "[1, inf)"
    )  # the fast linear probe: the benchmark's probe cut to this many epochs ...
    probe_patience: int = ranged(5, "[1, inf)")  # ... and this patience
    batch_size: int = ranged(64, "[1, inf)")  # feature extraction
    select: Literal["val_loss", "monitor"] = "val_loss"  # what checkpoints/best.pt keeps
    score: Literal["linear", "knn", "rank"] = "linear"  # the monitor score: mean task val macro-F1, or the rank
    collapse_rank: float = ranged(
        10.0, "[0, inf)"
    )  # warn when the rank stays below this (random init: 34, collapsed runs: 4-8) ...
    collapse_checks: int = ranged(3, "[1, inf)")  # ... for this many checks in a row
    max_overhead: float = ranged(
        0.1, "[0, 1)"
    )  # skip a periodic check while monitoring is over this share of wall time; 0: never


@dataclass
class Config:
    method: str = "salt"  # a registered method: usjepa.methods.method_names()
    out: str = "runs/pretrain"
    seed: int = ranged(0, "[0, 4294967295]")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = False
    compile: bool = False
    log_every: int = ranged(10, "[1, inf)")
    ckpt_every: int = ranged(0, "[0, inf)")  # steps between checkpoints; 0: once per epoch
    max_bad_steps: int = ranged(20, "[1, inf)")  # consecutive NaN/Inf steps before the run stops
    max_steps: int = ranged(0, "[0, inf)")  # stop after this many optimizer steps (0: run all epochs)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


def _convert(value, tp, key: str):
    """Check ``value`` against the annotation ``tp``; return it converted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            if arm is type(None) and value is None:
                return None
            try:
                return _convert(value, arm, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} matches none of {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e300:
            raise ConfigError(f"{key}: {value} is too large")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(f"unknown config key '{prefix}{k}' (valid: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            _check_range(f, kwargs[f.name], prefix + f.name)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["optim.lr=1e-4", "data.sources=[DIR?organ=liver,DIR2]"]`` -> nested dict.

    A value is read as YAML, except for string keys (taken verbatim) and lists of strings, whose
    ``[a, b]`` items are split at commas without YAML, so source options (``?organ=liver&fps=3``) survive.
    """
    tree: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), _override_value(key.strip(), raw))
    return tree


def _override_value(key: str, raw: str):
    tp = _key_type(key)
    if tp is str:
        return raw
    if tp == list[str] and raw.strip().startswith("[") and raw.strip().endswith("]"):
        inner = raw.strip()[1:-1].strip()
        return [_unquote(v.strip()) for v in _split_items(inner)] if inner else []
    if raw == "":
        return ""
    try:
        return yaml.load(raw, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{key}={raw}': not a valid value ({_yaml_problem(e)})") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where it is."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def _split_items(text: str) -> list[str]:
    """Split at commas outside quotes and braces (a shard spec ``dir/{a,b}.tar`` stays one item)."""
    items, cur, quote, depth = [], "", "", 0
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "{}":
            depth += 1 if ch == "{" else -1
        elif ch == "," and depth <= 0:
            items, cur = [*items, cur], ""
            continue
        cur += ch
    return [*items, cur]


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


def _key_type(dotted: str):
    """The annotation of a dotted key of Config, or None when there is no such key."""
    tp = Config
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        tp = typing.get_type_hints(tp).get(part)
        if tp is None:
            return None
    return tp


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when PyYAML has it
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (not "the last wins")."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicated key '{key}' (YAML would keep only the last value)", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:  # an unhashable key: the base class names it
                pass
        return super().construct_mapping(node, deep)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a shipped config (``tiny``, ``salt_vitb16`` ...)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"no config file '{name_or_path}' and no shipped config of that name (shipped: {names})")
    return shipped


def load_tree(path: str | Path | None, _chain: tuple[Path, ...] = ()) -> dict:
    if path is None:
        return {}
    p = resolve_path(str(path))
    if p.resolve() in _chain:
        raise ConfigError(f"{p}: 'base' cycle ({' -> '.join(str(q) for q in (*_chain, p.resolve()))})")
    try:
        tree = yaml.load(p.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({_yaml_problem(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config file ({e})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    base = tree.pop("base", None)  # a config may extend another
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{p}: 'base' must be the name or path of another config, got {base!r}")
        parent = load_tree(base if Path(base).is_absolute() else _sibling(p, base), (*_chain, p.resolve()))
        tree = _merge(parent, tree)
    return tree


def _sibling(p: Path, base: str) -> str:
    q = p.parent / base
    return str(q) if q.exists() else base


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    tree = load_tree(path)
    extra = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    cfg = _build(Config, _merge(tree, extra))
    validate(cfg)
    return cfg


def config_from_dict(tree: dict) -> Config:
    """A Config from a plain dict (as saved in checkpoints), checked like a YAML file."""
    return _build(Config, tree)


def validate(cfg: Config) -> None:
    """Checks across keys; each key's own range is checked when the config is built (see ``ranged``)."""
    patch = cfg.model.patch_size or arch_patch_size(cfg.model.arch)
    checks = [
        (cfg.out.strip() != "", "out", "must name the run directory, got ''"),
        (cfg.optim.warmup_epochs <= cfg.optim.epochs, "optim.warmup_epochs", "must lie in [0, epochs]"),
        (cfg.data.in_chans in (1, 3), "data.in_chans", f"must be 1 or 3, got {cfg.data.in_chans}"),
        (
            cfg.model.pred_dim % cfg.model.pred_heads == 0,
            "model.pred_dim",
            f"{cfg.model.pred_dim} is not divisible by model.pred_heads={cfg.model.pred_heads}",
        ),
        (
            cfg.model.dec_dim % cfg.model.dec_heads == 0,
            "model.dec_dim",
            f"{cfg.model.dec_dim} is not divisible by model.dec_heads={cfg.model.dec_heads}",
        ),
    ]
    if patch:
        n = (cfg.data.img_size // patch) ** 2
        checks += [
            (
                cfg.data.img_size % patch == 0,
                "data.img_size",
                f"{cfg.data.img_size} is not a multiple of the patch size {patch} (model.patch_size, or the arch's "
                "own)",
            ),
            (
                cfg.mask.min_keep <= n,
                "mask.min_keep",
                f"{cfg.mask.min_keep} exceeds the {n} patches of a {cfg.data.img_size}-px image with {patch}-px "
                "patches",
            ),
        ]
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"{key}: {msg}")
    if cfg.optim.batch_size % cfg.optim.accum_steps:
        raise ConfigError("optim.batch_size: must be divisible by optim.accum_steps")
    _validate_monitor(cfg)
    method_class(cfg.method).check_config(cfg)


def _validate_monitor(cfg: Config) -> None:
    m = cfg.monitor
    if m.select == "monitor" and not m.enabled:
        raise ConfigError("monitor.select: 'monitor' needs monitor.enabled=true")
    if m.select == "monitor" and m.score != "rank" and not m.tasks:
        raise ConfigError(
            f"monitor.select: 'monitor' with monitor.score='{m.score}' needs monitor.tasks (or monitor.score=rank)"
        )
    if m.enabled and cfg.data.val_fraction == 0 and (m.tasks or m.select == "monitor"):
        raise ConfigError(
            "monitor.tasks: the monitor runs at validations on a held-out batch, but "
            "data.val_fraction is 0 (set it > 0, or monitor.enabled=false)"
        )


def arch_patch_size(arch: str) -> int:
    """The patch size in a timm ViT name (``vit_tiny_patch16_224`` -> 16); 0 when the name gives none."""
    m = re.search(r"patch(\d+)", arch)
    return int(m.group(1)) if m else 0


def to_dict(cfg) -> dict:
    def plain(v):
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
