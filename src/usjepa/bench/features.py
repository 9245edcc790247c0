"""Frozen-feature extraction: decode -> (corrupt) -> resize -> encoder -> pool, batched under inference_mode, cached.

The cache key covers the encoder's weights fingerprint, the task's split hash, the split, the preprocessing
(size, channels, normalisation), the pooling and the corruption, so any change recomputes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from usjepa.bench.cache import Cache
from usjepa.bench.probe import standardisation
from usjepa.bench.tasks import Task
from usjepa.bench.threads import torch_threads
from usjepa.data.corruptions import corrupt
from usjepa.data.ultrabench import Record, Sample, read_record
from usjepa.encoders import FrozenEncoder
from usjepa.errors import CheckpointError

FEATURES_VERSION = 3  # bump when the extraction code changes what it computes (2: hf: lastK through the final norm;
# 3: lastN is DINOv2's create_linear_input, the per-block variant is cls+mean-lastN)


@lru_cache(maxsize=512)  # corrupted test sets and later encoders decode the same files again
def _decoded(image: Path, scan_mask: Path | None) -> Sample:
    return read_record(Record(image, scan_mask, None, None))


class SplitImages(Dataset):
    """Grayscale images in [0, 1] resized to ``size``; a corruption (kind, severity) is applied at native size first."""

    def __init__(self, records: list[Record], size: int, corruption: tuple[str, int] | None = None, seed: int = 0):
        self.records, self.size, self.corruption, self.seed = records, size, corruption, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rec = self.records[i]
        s = _decoded(rec.image, rec.scan_mask)
        x = torch.from_numpy(s.image).float().div_(255)[None]
        if self.corruption is not None:
            kind, eps = self.corruption
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)  # per image: independent of batching
            x = corrupt(x, torch.from_numpy(s.scan_mask)[None], kind, eps, generator=g)
        x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)[0]
        return x, -1 if rec.label is None else rec.label


def loader(
    records: list[Record],
    size: int,
    batch_size: int,
    workers: int = 0,
    corruption: tuple[str, int] | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        SplitImages(records, size, corruption, seed),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=g,
        persistent_workers=False,
    )


def extract(
    enc: FrozenEncoder,
    records: list[Record],
    pooling: str,
    corruption: tuple[str, int] | None = None,
    batch_size: int = 32,
    workers: int = 0,
    desc: str = "",
) -> torch.Tensor:
    """Features [N, D] (float32, on the CPU) of ``records``, in order. Decoding runs single-threaded, the encoder on
    its device, without autocast."""
    out = []
    batches = iter(loader(records, enc.img_size, batch_size, workers, corruption))
    with torch.inference_mode(), tqdm(total=len(records), desc=desc, leave=False, disable=None) as bar:
        while True:
            with torch_threads(1):
                batch = next(batches, None)
            if batch is None:
                return torch.cat(out)
            x = batch[0].to(enc.device, non_blocking=True)
            out.append(enc.features(enc.normalise(x), pooling).float().cpu())
            bar.update(len(batch[0]))


def effective_rank(x: torch.Tensor) -> float:
    """RankMe (Garrido et al., 2023) of the standardised features [N, D], as the probe sees them: exp of the
    entropy of the normalised singular values; D for isotropic features, 1 when they lie on one line."""
    mean, std = standardisation(x)
    s = torch.linalg.svdvals(((x - mean) / std).double())
    p = s / s.sum() + 1e-12
    return float(torch.exp(-(p * p.log()).sum()))


def feature_key(enc: FrozenEncoder, task: Task, split: str, pooling: str, corruption: tuple[str, int] | None) -> dict:
    return {
        "v": FEATURES_VERSION,
        "encoder": enc.fingerprint,
        "split_hash": task.split_hash,
        "split": split,
        "preprocess": {
            "size": enc.img_size,
            "chans": enc.in_chans,
            "mean": enc.mean,
            "std": enc.std,
            "resize": "bilinear-antialias",
            "gray": True,
        },
        "pooling": pooling,
        "corruption": corruption,
    }


def task_features(
    cache: Cache,
    enc: FrozenEncoder,
    task: Task,
    split: str,
    pooling: str,
    corruption: tuple[str, int] | None = None,
    batch_size: int = 32,
    workers: int = 0,
) -> torch.Tensor:
    """Cached features of one split of a task (optionally corrupted)."""
    desc = f"{enc.spec} {task.name}/{split}" + (f" {corruption[0]}@{corruption[1]}" if corruption else "")
    key = feature_key(enc, task, split, pooling, corruption)
    compute = lambda: {"x": extract(enc, task.splits[split], pooling, corruption, batch_size, workers, desc)}  # noqa: E731
    x = cache.tensors(key, compute)["x"]
    if not x.isfinite().all():
        raise CheckpointError(
            f"encoder '{enc.spec}': {int((~x.isfinite()).sum())} NaN or infinite feature values on task "
            f"'{task.name}' ({split} split); its weights may hold NaN or Inf (a diverged run?)"
        )
    return x
