"""Multi-source pretraining corpus: held-out split, capped (and optionally organ-weighted) epoch mixing,
DDP sharding and the DataLoader the training loop iterates.

Each epoch draws min(|D_i|, N_t) items from source i (the paper's cap), optionally rebalanced so every
organ gets an equal share, and shuffles them with a generator seeded by (seed, epoch). Position p of that
epoch order goes to rank p % world, so ranks are disjoint and their union is the whole mixture. An item's
seed comes from (seed, epoch, p) and drives its augmentation and its masks, so batches do not depend on
the number of workers, and a resume at batch k skips k batches without decoding them.
"""

from __future__ import annotations

import functools
import logging
import math
import zlib
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate

from usjepa.config import Config
from usjepa.data.augment import augment
from usjepa.data.preprocess import PreprocessConfig, preprocess
from usjepa.data.sample import Sample
from usjepa.data.source import Source
from usjepa.data.sources import open_source
from usjepa.errors import ConfigError, DataError

log = logging.getLogger("usjepa.data")
MAX_SUBSTITUTES = 16  # consecutive unreadable items tolerated before a source is declared broken
VAL_EPOCH = 2**32 - 1  # the val order's shuffle key, outside the range of training epochs
FAULTS: Counter = Counter()  # per-process count of unreadable items, by source


def open_sources(specs: list[str]) -> list[Source]:
    """Open every spec; shards holding several ingested sources are split back into one per source."""
    if not specs:
        raise ConfigError("data.sources: is empty; give at least one folder, manifest, DICOM, video or shard spec")
    out = []
    for spec in specs:
        src = open_source(spec)
        for path, why in src.faults:
            log.warning("skipping %s: %s", path, why)
        out += src.by_source()
    empty = [s for s in out if len(s) == 0]
    if empty:
        why = "; ".join(f"{why}" for s in empty for _, why in s.faults[:1])  # the first fault of each says why
        raise DataError(f"source(s) {[s.name for s in empty]} hold no readable items" + (f" ({why})" if why else ""))
    return out


def split_indices(src: Source, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) item indices; whole groups (patients, clips) go to val in a fixed hash order."""
    groups: dict[str, list[int]] = {}
    for i in range(len(src)):
        groups.setdefault(src.group(i), []).append(i)
    order = sorted(groups, key=lambda g: (zlib.crc32(g.encode()), g))
    want, val = round(val_fraction * len(src)), []
    for g in order:
        if len(val) >= want:
            break
        val += groups[g]
    val_set = set(val)
    return np.array([i for i in range(len(src)) if i not in val_set], np.int64), np.array(sorted(val), np.int64)


def source_quota(sizes: list[int], cap: int, organs: list[str] | None = None) -> list[int]:
    """Items per source per epoch: min(|D_i|, cap); with ``organs``, the same total split equally over organs
    (and within an organ in proportion to the capped sizes)."""
    capped = [min(n, cap) for n in sizes]
    if not organs:
        return capped
    per_organ = sum(capped) / len(set(organs))
    organ_total = Counter()
    for o, k in zip(organs, capped):
        organ_total[o] += k
    return [round(per_organ * k / organ_total[o]) if organ_total[o] else 0 for o, k in zip(organs, capped)]


def epoch_plan(sizes: list[int], quota: list[int], seed: int, epoch: int) -> np.ndarray:
    """[N, 2] (source, position in the source's list) for one epoch, shuffled. A quota above a source's
    size cycles through fresh permutations (organ weighting can up-sample small organs)."""
    rng = np.random.default_rng([seed, epoch])
    parts = []
    for s, (n, k) in enumerate(zip(sizes, quota)):
        reps = math.ceil(k / n) if n else 0
        idx = np.concatenate([rng.permutation(n) for _ in range(reps)])[:k] if reps else np.zeros(0, np.int64)
        parts.append(np.stack([np.full(len(idx), s), idx], 1))
    plan = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return plan[rng.permutation(len(plan))]


def item_seed(seed: int, epoch: int, pos: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, pos]).generate_state(1)[0])


class PretrainDataset(Dataset):
    """Map-style: key (epoch, position) -> {"image", "scan_mask", "seed", "index"}."""

    def __init__(self, cfg: Config, sources: list[Source], split: str):
        self.cfg, self.sources, self.train = cfg, sources, split == "train"
        splits = [split_indices(s, cfg.data.val_fraction) for s in sources]
        self.lists = [tr if self.train else va for tr, va in splits]
        sizes = [len(x) for x in self.lists]
        organs = [s.opts.organ for s in sources] if cfg.data.organ_weighting and self.train else None
        self.quota = source_quota(sizes, cfg.data.cap_per_source, organs)
        self.pre = PreprocessConfig(size=cfg.data.img_size)

    @functools.lru_cache(maxsize=2)
    def plan(self, epoch: int) -> np.ndarray:
        sizes = [len(x) for x in self.lists]
        if self.train:
            plan = epoch_plan(sizes, self.quota, self.cfg.seed, epoch)
            total = self.cfg.data.steps_per_epoch * self.cfg.optim.batch_size
            return np.resize(plan, (total, 2)) if total and len(plan) else plan
        return epoch_plan(sizes, self.quota, self.cfg.seed, VAL_EPOCH)  # the same held-out items every time

    def _load(self, s: int, j: int) -> Sample:
        """Item j of source s's list, preprocessed; an unreadable file or a blank frame is logged once, counted,
        and replaced by the next."""
        src, lst = self.sources[s], self.lists[s]
        for k in range(MAX_SUBSTITUTES):
            i = int(lst[(j + k) % len(lst)])
            try:
                sample = src.load(i)
                return sample if sample.meta.get("preprocessed") else preprocess(sample, self.pre)
            except DataError as e:
                if FAULTS[str(src.items[i].path)] == 0:
                    log.warning("item skipped (%s): %s", src.name, e)
                FAULTS[str(src.items[i].path)] += 1
        raise DataError(f"source '{src.name}': {MAX_SUBSTITUTES} unreadable items in a row (last: {src.items[i].path})")

    def __len__(self) -> int:
        return len(self.plan(0))

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, pos = key
        s, j = self.plan(epoch)[pos]
        sample = self._load(int(s), int(j))
        size, seed = self.cfg.data.img_size, item_seed(self.cfg.seed, epoch, pos)
        img = torch.tensor(sample.image, dtype=torch.float32).div_(255)[None]
        mask = torch.from_numpy(sample.scan_mask)
        if self.train and self.cfg.augment.enabled:
            img, mask = augment(img, mask, self.cfg.augment, size, seed)
        elif img.shape[-1] != size or img.shape[-2] != size:
            img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest")[0, 0].bool()
        return {
            "image": img.expand(self.cfg.data.in_chans, -1, -1).contiguous(),
            "scan_mask": mask,
            "seed": seed,
            "index": int(pos),
        }


class EpochBatches:
    """This rank's batches of (epoch, position) keys: positions rank, rank+world, ...; set_epoch picks the
    epoch and how many leading batches to skip (exact resume)."""

    def __init__(self, dataset: PretrainDataset, rank: int, world: int, batch: int, drop_last: bool):
        self.ds, self.rank, self.world, self.batch, self.drop_last = dataset, rank, world, batch, drop_last
        self.epoch, self.start = 0, 0

    def _positions(self) -> np.ndarray:
        n = len(self.ds.plan(self.epoch)) // self.world * self.world  # equal share on every rank
        mine = np.arange(self.rank, n, self.world)
        return mine[: len(mine) // self.batch * self.batch] if self.drop_last else mine

    def __len__(self) -> int:
        n = len(self._positions())
        return n // self.batch if self.drop_last else math.ceil(n / self.batch)

    def __iter__(self):
        pos = self._positions()
        for b in range(self.start, len(self)):
            yield [(self.epoch, int(p)) for p in pos[b * self.batch : (b + 1) * self.batch]]


class PretrainLoader:
    """What the training loop iterates: ``len``, ``set_epoch(epoch, start_batch)``, then batches."""

    def __init__(self, dataset: PretrainDataset, batches: EpochBatches, loader: DataLoader):
        self.dataset, self.batches, self.loader = dataset, batches, loader

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.batches.epoch, self.batches.start = epoch, start_batch

    def __iter__(self):
        return iter(self.loader)


def build_pretrain_loader(
    cfg: Config,
    split: str = "train",
    rank: int = 0,
    world: int = 1,
    collate_fn=None,
    sources: list[Source] | None = None,
) -> PretrainLoader:
    """The loader of ``split`` ("train": capped mixture, augmented, drop_last; "val": the held-out
    ``val_fraction`` of every source, unaugmented) for ``rank`` of ``world``."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    batch = cfg.optim.batch_size // world // cfg.optim.accum_steps
    if batch < 1:
        raise ConfigError(
            f"optim.batch_size: {cfg.optim.batch_size} gives no sample per rank for {world} ranks x "
            f"{cfg.optim.accum_steps} accumulation steps"
        )
    ds = PretrainDataset(cfg, sources if sources is not None else open_sources(cfg.data.sources), split)
    if len(ds) < world:
        hint = "; set data.val_fraction=0 to skip validation" if split == "val" else ""
        raise DataError(
            f"data.sources: the {split} split holds {len(ds)} item(s), fewer than the {world} process(es); "
            f"every rank needs at least one{hint}"
        )
    batches = EpochBatches(ds, rank, world, batch, drop_last=split == "train")
    workers = cfg.data.num_workers
    loader = DataLoader(
        ds,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_fn or default_collate,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    return PretrainLoader(ds, batches, loader)
