"""What every source is: a list of lightweight items, each decoded on demand into a Sample.

The readers of each input kind build on this module (``sources.py`` for files, folders, manifests, DICOMs,
videos and UltraBench folders; ``shards.py`` for WebDataset shards), and ``sources.open_source`` is the one
factory that picks among them from a spec.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from usjepa.data.sample import Sample

DEFAULT_FPS = 3.0  # UltraBench's POCUS rule: 3 frames per second ...
DEFAULT_MAX_FRAMES = 30  # ... up to 30 frames per clip


@dataclass
class Item:
    """One decodable unit: a file, or one frame of a cine/video."""

    path: Path
    frame: int = -1  # -1: a still image
    label: int = -1
    group: str = ""  # patient or clip id; frames of one file share it
    mask: Path | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Options:
    name: str
    organ: str = "unknown"
    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES


class Source:
    """Items listed up front; ``load(i)`` decodes item ``i`` into a Sample (or raises DataError).

    Listing faults (an unreadable header, an unknown file type) are kept in ``faults`` as (path, message)
    instead of raised, so that one bad file never stops a run.
    """

    kind = "source"

    def __init__(self, items: list[Item], opts: Options, faults: list[tuple[str, str]] | None = None):
        self.items = items
        self.opts = opts
        self.faults = faults or []

    @property
    def name(self) -> str:
        return self.opts.name

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Sample]:
        return (self.load(i) for i in range(len(self)))

    def group(self, i: int) -> str:
        it = self.items[i]
        return it.group or str(it.path)

    def load(self, i: int) -> Sample:
        raise NotImplementedError

    def _meta(self, it: Item) -> dict:
        return {
            "source": self.name,
            "organ": self.opts.organ,
            "group": it.group or str(it.path),
            "frame": it.frame,
            "path": str(it.path),
            "has_mask": it.mask is not None,
        } | it.extra

    def by_source(self) -> list[Source]:
        """One source per original dataset (shards may hold several), in first-seen order."""
        names = dict.fromkeys(it.extra.get("source", self.name) for it in self.items)
        if len(names) <= 1:
            return [self]
        out = []
        for name in names:
            sub = copy.copy(self)
            sub.items = [it for it in self.items if it.extra.get("source", self.name) == name]
            sub.opts = Options(
                name, sub.items[0].extra.get("organ", self.opts.organ), self.opts.fps, self.opts.max_frames
            )
            sub.faults = []
            out.append(sub)
        return out
