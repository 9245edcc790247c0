"""An on-disk content-addressed cache: a key (any JSON-able dict) -> tensors (safetensors) or JSON.

Writes are atomic (usjepa.atomic: temp file, fsync, rename, fsync of the folder), so an interrupted run or a
host crash never leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from usjepa.atomic import atomic_write, atomic_write_text


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class Cache:
    """``root=None`` disables caching (everything is recomputed)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None
        self.hits = self.misses = 0

    def _path(self, key: dict, suffix: str) -> Path | None:
        if self.root is None:
            return None
        h = key_hash(key)
        return self.root / h[:2] / f"{h}{suffix}"

    def tensors(self, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        path = self._path(key, ".safetensors")
        if path is not None and path.is_file():
            self.hits += 1
            return load_file(str(path))
        self.misses += 1
        value = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as f:
                f.write(save({k: v.contiguous() for k, v in value.items()}))
        return value

    def json(self, key: dict, compute: Callable[[], object]) -> object:
        path = self._path(key, ".json")
        if path is not None and path.is_file():
            self.hits += 1
            return json.loads(path.read_text())
        self.misses += 1
        value = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(value))
        return value

