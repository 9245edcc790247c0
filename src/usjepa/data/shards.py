"""WebDataset shards: one PNG image, one PNG scan mask and one JSON of metadata per sample.

Writing goes through ``webdataset.TarWriter`` (fixed mtime, so a re-run writes identical bytes) and
``usjepa.atomic.atomic_write``, so a shard on disk is always complete, even after a host crash. Reading indexes
each tar's members once (headers only) and then decodes any sample by offset: the corpus sampler can then give
every DDP rank its own disjoint, capped, epoch-seeded subset with exact resume, without reading the
other ranks' samples.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from usjepa.atomic import atomic_write
from usjepa.data.sample import Sample
from usjepa.data.source import Item, Options, Source
from usjepa.errors import DataError

IMAGE, MASK, META = "png", "mask.png", "json"


def encode_png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_sample(key: str, s: Sample) -> dict:
    """The tar entries of one sample; the JSON holds the label and all metadata."""
    meta = {k: v for k, v in s.meta.items() if isinstance(v, (str, int, float, bool, type(None)))}
    meta["mask_source"] = s.mask_source
    return {
        "__key__": key,
        IMAGE: encode_png(s.image),
        MASK: encode_png(s.scan_mask.astype(np.uint8) * 255),
        META: json.dumps(meta | {"label": int(s.label)}, sort_keys=True).encode(),
    }


def write_shard(path: Path, samples: list[dict]) -> None:
    """Write encoded samples to ``path`` atomically (usjepa.atomic)."""
    with atomic_write(path) as f, wds.TarWriter(f, encoder=False, mtime=0) as w:
        for s in samples:
            w.write(s)


def index_tar(path: str) -> list[tuple[str, dict[str, tuple[int, int]], dict]]:
    """[(key, {suffix: (offset, size)}, metadata)] in tar order; reads headers and the small JSONs only."""
    members: dict[str, dict[str, tuple[int, int]]] = {}
    metas: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, _, suffix = m.name.partition(".")
                members.setdefault(key, {})[suffix] = (m.offset_data, m.size)
                if suffix == META:
                    metas[key] = json.loads(tf.extractfile(m).read())
    except (OSError, tarfile.TarError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable shard ({type(e).__name__}: {e})") from None
    return [(k, parts, metas.get(k, {})) for k, parts in members.items()]


class ShardSource(Source):
    """Samples of WebDataset shards written by ``usjepa ingest`` (already preprocessed).

    Each item remembers the source it was ingested from (``extra["source"]``), so that the corpus can cap
    every original source separately even when several share one shard series.
    """

    kind = "shards"

    def __init__(self, paths: list[str], opts: Options):
        if not paths:
            raise DataError(f"source '{opts.name}': no shard files match")
        items, faults = [], []
        for p in paths:
            try:
                index = index_tar(p)
            except DataError as e:
                faults.append((p, str(e)))
                continue
            for key, parts, meta in index:
                if IMAGE not in parts:
                    faults.append((f"{p}:{key}", f"{p}: sample '{key}' has no .{IMAGE} image"))
                    continue
                extra = {
                    "key": key,
                    "parts": parts,
                    "meta": meta,
                    "source": meta.get("source", opts.name),
                    "organ": meta.get("organ", opts.organ),
                }
                items.append(Item(Path(p), -1, int(meta.get("label", -1)), str(meta.get("group") or key), extra=extra))
        super().__init__(items, opts, faults)

    def _read(self, it: Item, suffix: str) -> bytes | None:
        where = it.extra["parts"].get(suffix)
        if where is None:
            return None
        with open(it.path, "rb") as f:
            f.seek(where[0])
            data = f.read(where[1])
        if len(data) != where[1]:
            raise DataError(f"{it.path}: sample '{it.extra['key']}' is truncated ({suffix})")
        return data

    def load(self, i: int) -> Sample:
        it = self.items[i]
        try:
            img = np.asarray(Image.open(io.BytesIO(self._read(it, IMAGE))))
            raw_mask = self._read(it, MASK)
            mask = np.asarray(Image.open(io.BytesIO(raw_mask))) > 0 if raw_mask else np.ones(img.shape[:2], bool)
        except OSError as e:
            raise DataError(f"{it.path}: sample '{it.extra['key']}' has an undecodable PNG ({e})") from None
        meta = {k: v for k, v in it.extra["meta"].items() if k not in ("label", "mask_source")}
        meta |= {"source": it.extra["source"], "shard": str(it.path), "key": it.extra["key"], "preprocessed": True}
        return Sample(img, mask, it.label, meta, mask_source=str(it.extra["meta"].get("mask_source", "")))
