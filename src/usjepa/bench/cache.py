"""An on-disk content-addressed cache: a key (any JSON-able dict) -> tensors (safetensors) or JSON.

Writes are atomic (usjepa.atomic: temp file, fsync, rename, fsync of the folder), so an interrupted run or a
host crash never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from usjepa.atomic import atomic_write
from usjepa.errors import DataError

log = logging.getLogger(__name__)
MISS = object()  # what _read returns for an entry it cannot read
UNREADABLE = (OSError, ValueError, UnicodeDecodeError, SafetensorError)  # json.JSONDecodeError is a ValueError


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class Cache:
    """``root=None`` disables caching (everything is recomputed)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None
        self.hits = self.misses = self.healed = 0

    def _path(self, key: dict, suffix: str) -> Path | None:
        if self.root is None:
            return None
        h = key_hash(key)
        return self.root / h[:2] / f"{h}{suffix}"

    def tensors(self, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        path = self._path(key, ".safetensors")
        if path is not None and path.is_file():
            value = self._read(path, lambda: load_file(str(path)))
            if value is not MISS:
                return value
        self.misses += 1
        value = compute()
        if path is not None:
            _write(path, save({k: v.contiguous() for k, v in value.items()}))
        return value

    def json(self, key: dict, compute: Callable[[], object]) -> object:
        path = self._path(key, ".json")
        if path is not None and path.is_file():
            value = self._read(path, lambda: json.loads(path.read_text()))
            if value is not MISS:
                return value
        self.misses += 1
        value = compute()
        if path is not None:
            _write(path, json.dumps(value).encode())
        return value

    def _read(self, path: Path, read: Callable[[], object]):
        """A stored entry, or MISS when it cannot be read: it is then recomputed and rewritten, said once."""
        try:
            value = read()
        except UNREADABLE as e:
            self.healed += 1
            log.warning("cache entry %s is unreadable (%s: %s); recomputing it", path, type(e).__name__, e)
            return MISS
        self.hits += 1
        return value


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            f.write(data)
    except OSError as e:
        raise DataError(
            f"{path}: cannot write cache entry ({e.strerror or e}); check the cache folder (--cache)"
        ) from None
