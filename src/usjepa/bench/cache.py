"""An on-disk content-addressed cache: a key (any JSON-able dict) -> tensors (safetensors) or JSON.

Writes are atomic (temp file, then rename), so an interrupted run never leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

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
            _atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in value.items()}, str(tmp)))
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
            _atomic(path, lambda tmp: tmp.write_text(json.dumps(value)))
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


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write cache entry ({e.strerror or e}); check the cache folder (--cache)") from None
