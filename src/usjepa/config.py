"""Typed configuration: dataclasses loaded from YAML plus dotted overrides.

Unknown keys and wrong types fail before any work, naming the dotted key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from usjepa.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    # Source specs: an UltraBench folder, an image folder, a manifest (.csv/.json),
    # a DICOM file or folder, a video, or WebDataset shards ("dir/*.tar" or "{000..009}.tar").
    sources: list[str] = field(default_factory=list)
    img_size: int = 224
    in_chans: int = 1
    val_fraction: float = 0.05  # held out for validation-loss model selection
    cap_per_source: int = 50_000  # paper's N_t: samples per source per epoch
    organ_weighting: bool = False  # equalise organs on top of the per-source cap
    num_workers: int = 2
    steps_per_epoch: int = 0  # 0: derived from the capped corpus size


@dataclass
class AugmentConfig:
    enabled: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)
    hflip: float = 0.5
    vflip: float = 0.5
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    speckle_p: float = 0.2
    speckle_sigma: tuple[float, float] = (0.05, 0.3)
    contrast_p: float = 0.2
    contrast_range: tuple[float, float] = (0.6, 1.4)


@dataclass
class MaskConfig:
    ctx_scale: tuple[float, float] = (0.85, 1.0)
    ctx_aspect: tuple[float, float] = (1.0, 1.0)
    n_targets: int = 4
    tgt_scale: tuple[float, float] = (0.075, 0.125)
    tgt_aspect: tuple[float, float] = (0.75, 1.5)
    min_keep: int = 10
    random_ratio: float = 0.75  # fraction masked when kind == "random" (MAE)
    pad_mode: Literal["pad", "truncate"] = "truncate"  # I-JEPA's; "pad" keeps every token, ~1.5x slower step
    usrc: bool = False  # condition blocks and loss on the scan region
    usrc_tau: float = 0.5  # minimum fraction of valid patches in every block
    max_tries: int = 50  # rejection-sampling budget per block


@dataclass
class ModelConfig:
    arch: str = "vit_base_patch16_224"
    patch_size: int = 0  # 0: the arch's own
    depth: int = 0  # 0: the arch's own
    drop_path: float = 0.0
    pred_depth: int = 12
    pred_dim: int = 384
    pred_heads: int = 12
    dec_depth: int = 2  # pixel decoder (vpixel, mae)
    dec_dim: int = 256
    dec_heads: int = 8
    grad_checkpointing: bool = False


@dataclass
class TeacherConfig:
    # An encoder spec (effnet-lite0, timm:NAME@FILE, hf:DIR, usfm:PATH, urfm:PATH, usjepa:PATH, ...; see
    # `usjepa bench --help`), or a stage-1 run dir, checkpoint or usjepa export dir.
    source: str = ""
    target_norm: Literal["none", "layernorm"] = "layernorm"
    layer: int = -1  # the block (ViT) or feature stage (CNN) whose map is the target; -1: the last
    last_k: int = 1  # ViTs: the mean of the last_k blocks ending at layer


@dataclass
class OptimConfig:
    batch_size: int = 128  # global: summed over ranks and accumulation steps
    accum_steps: int = 1
    epochs: int = 100
    warmup_epochs: float = 10
    lr: float = 5e-5
    start_lr: float = 0.0
    final_lr: float = 5e-7
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 1.0  # 0 disables
    ema: tuple[float, float] = (0.996, 1.0)  # ijepa target momentum, start -> end
    norm_pix_loss: bool = True  # vpixel / mae targets


@dataclass
class Config:
    method: Literal["salt", "vpixel", "ijepa", "mae"] = "salt"
    out: str = "runs/pretrain"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = False
    compile: bool = False
    log_every: int = 10
    ckpt_every: int = 0  # steps between checkpoints; 0: once per epoch
    max_bad_steps: int = 20  # consecutive NaN/Inf steps before the run stops
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


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
    """``["optim.lr=1e-4", "model.arch=vit_tiny_patch16_224"]`` -> nested dict."""
    tree: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw != "" else "")
    return tree


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


def load_tree(path: str | Path | None) -> dict:
    if path is None:
        return {}
    p = resolve_path(str(path))
    try:
        tree = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    base = tree.pop("base", None)  # a config may extend another
    if base is not None:
        tree = _merge(load_tree(base if Path(base).is_absolute() else _sibling(p, base)), tree)
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
    checks = [
        (cfg.optim.lr > 0, "optim.lr", f"must be > 0, got {cfg.optim.lr}"),
        (cfg.optim.final_lr >= 0, "optim.final_lr", f"must be >= 0, got {cfg.optim.final_lr}"),
        (cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0"),
        (cfg.optim.batch_size > 0, "optim.batch_size", f"must be > 0, got {cfg.optim.batch_size}"),
        (cfg.optim.accum_steps > 0, "optim.accum_steps", "must be > 0"),
        (cfg.optim.epochs > 0, "optim.epochs", f"must be > 0, got {cfg.optim.epochs}"),
        (0 <= cfg.optim.warmup_epochs <= cfg.optim.epochs, "optim.warmup_epochs", "must lie in [0, epochs]"),
        (cfg.optim.clip_grad >= 0, "optim.clip_grad", "must be >= 0"),
        (cfg.data.img_size > 0, "data.img_size", "must be > 0"),
        (cfg.data.in_chans in (1, 3), "data.in_chans", f"must be 1 or 3, got {cfg.data.in_chans}"),
        (0 <= cfg.data.val_fraction < 1, "data.val_fraction", "must lie in [0, 1)"),
        (cfg.data.cap_per_source > 0, "data.cap_per_source", "must be > 0"),
        (cfg.mask.n_targets >= 1, "mask.n_targets", "must be >= 1"),
        (0 < cfg.mask.random_ratio < 1, "mask.random_ratio", "must lie in (0, 1)"),
        (0 <= cfg.mask.usrc_tau <= 1, "mask.usrc_tau", "must lie in [0, 1]"),
        (cfg.max_bad_steps >= 1, "max_bad_steps", "must be >= 1"),
        (cfg.teacher.last_k >= 1, "teacher.last_k", f"must be >= 1, got {cfg.teacher.last_k}"),
    ]
    for name in ("ctx_scale", "tgt_scale", "ctx_aspect", "tgt_aspect"):
        lo, hi = getattr(cfg.mask, name)
        checks.append((0 < lo <= hi, f"mask.{name}", f"must satisfy 0 < low <= high, got {(lo, hi)}"))
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"{key}: {msg}")
    if cfg.optim.batch_size % cfg.optim.accum_steps:
        raise ConfigError("optim.batch_size: must be divisible by optim.accum_steps")
    if cfg.method == "salt" and not cfg.teacher.source:
        raise ConfigError("teacher.source: method 'salt' needs a frozen teacher (an encoder spec such as "
                          "effnet-lite0 or timm:NAME@FILE, or a stage-1 run, checkpoint or export)")


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
