"""``usjepa ingest SRC... --out SHARDS``: preprocess real ultrasound into WebDataset shards.

Files are read in a fixed order (sources as given, items as listed); a cine or video is one unit whose
frames share a scan mask pooled over the clip. A shard is closed at the first unit boundary after
``--shard-size`` samples and renamed into place, then ``ingest_state.json`` records where to resume:
an interrupted run re-run with the same arguments writes the same shards and nothing twice.
Unreadable files are skipped, listed once each in ``skipped.tsv`` and counted in the summary table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from itertools import groupby
from pathlib import Path

import numpy as np

from usjepa.data.decode import to_gray
from usjepa.data.preprocess import PreprocessConfig, estimate_scan_mask, hamming, phash, preprocess
from usjepa.data.sample import Sample
from usjepa.data.shards import encode_sample, write_shard
from usjepa.data.sources import Source, file_kind, open_source
from usjepa.errors import ConfigError, DataError
from usjepa.paths import out_dir

STATE, REPORT = "ingest_state.json", "skipped.tsv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="folder, manifest, DICOM, video, UltraBench folder or shards; options as SRC?organ=liver&fps=3&max_frames=30")
    p.add_argument("--out", required=True, help="output folder for shard-NNNNNN.tar, skipped.tsv and the resume state")
    p.add_argument("--size", type=int, default=256, help="output side in pixels (aspect kept, zero padding)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (a clip is never split)")
    p.add_argument("--dedup", type=int, default=0, metavar="BITS",
                   help="drop cine frames whose perceptual hash is within BITS of the last kept frame (0: off)")
    p.add_argument("--drop-flagged", action="store_true",
                   help="skip frames whose colour overlays cover >= 5%% of the image (default: keep, flagged)")


def skip_reason(path: Path) -> str:
    """A short category for the summary table (the report holds the full message)."""
    if not path.is_file():
        return "unreadable"
    if path.stat().st_size == 0:
        return "empty file"
    return "not an image" if file_kind(path) == "other" else "unreadable"


class Ingest:
    def __init__(self, args: argparse.Namespace):
        self.out = Path(args.out)
        self.args = {"sources": args.sources, "size": args.size, "shard_size": args.shard_size, "dedup": args.dedup,
                     "drop_flagged": args.drop_flagged}
        self.pre = PreprocessConfig(size=args.size)
        self.state = {"args": self.args, "cursor": [0, 0], "shards": 0, "done": False, "stats": {}, "faults": {}}
        self.buffer: list[dict] = []

    # ---- state ----------------------------------------------------------------------------------
    def load_state(self) -> None:
        p = self.out / STATE
        if not p.is_file():
            return
        try:
            state = json.loads(p.read_text())
            same = state["args"] == self.args
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{p}: unreadable ingest state ({type(e).__name__}: {e}); delete {self.out} to start over, "
                            "or use a new --out folder") from None
        if not same:
            raise DataError(f"{p}: {self.out} holds an ingest with other arguments ({state['args']}); "
                            f"use a new --out folder or delete it")
        self.state = state
        for stale in self.out.glob("shard-*.tar*"):  # partial or written after the last recorded shard
            if stale.suffix == ".tmp" or int(stale.stem.split("-")[1]) >= state["shards"]:
                stale.unlink()

    def save_state(self) -> None:
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(tmp, self.out / STATE)

    def stats(self, name: str) -> dict:
        return self.state["stats"].setdefault(name, {"read": 0, "kept": 0, "flagged": 0, "skipped": {}})

    def skip(self, name: str, path: Path, reason: str, message: str) -> None:
        st = self.stats(name)
        st["skipped"][reason] = st["skipped"].get(reason, 0) + 1
        self.state["faults"].setdefault(str(path), message)

    # ---- shards ---------------------------------------------------------------------------------
    def flush(self, cursor: list[int], force: bool = False) -> None:
        if self.buffer and (force or len(self.buffer) >= self.args["shard_size"]):
            write_shard(self.out / f"shard-{self.state['shards']:06d}.tar", self.buffer)
            self.buffer, self.state["shards"] = [], self.state["shards"] + 1
        if not self.buffer:  # everything before the cursor is on disk
            self.state["cursor"] = cursor
            self.save_state()

    def keep(self, src: Source, s: Sample) -> None:
        st = self.stats(src.name)
        key = re.sub(r"[^A-Za-z0-9_-]", "_", src.name) + f"-{st['kept']:08d}"
        st["kept"] += 1
        st["flagged"] += bool(s.meta.get("flagged"))
        self.buffer.append(encode_sample(key, s))

    # ---- one unit: a still image, or the sampled frames of one clip -----------------------------
    def unit(self, src: Source, idx: list[int]) -> None:
        st = self.stats(src.name)
        st["read"] += len(idx)
        path = src.items[idx[0]].path
        try:
            raw = [src.load(i) for i in idx]
        except DataError as e:
            self.skip(src.name, path, skip_reason(path), str(e))
            return
        clip_mask = None
        if len(raw) > 1 and not raw[0].meta.get("has_mask") and not raw[0].meta.get("preprocessed"):
            clip_mask = estimate_scan_mask(np.stack([to_gray(s.image) for s in raw]))
        last = None
        for s in raw:
            if not s.meta.get("preprocessed"):
                try:
                    s = preprocess(s, self.pre, clip_mask)
                except DataError as e:  # a blank frame
                    self.skip(src.name, path, "blank frame", str(e))
                    continue
            if self.args["drop_flagged"] and s.meta.get("flagged"):
                self.skip(src.name, path, "colour overlay >= 5%", f"{path}: frame {s.meta.get('frame')} flagged (colour)")
                continue
            if self.args["dedup"] and len(raw) > 1:
                h = phash(s.image)
                if last is not None and hamming(h, last) <= self.args["dedup"]:
                    st["skipped"]["near-duplicate"] = st["skipped"].get("near-duplicate", 0) + 1
                    continue
                last = h
            self.keep(src, s)

    def run(self, sources: list[Source]) -> None:
        s0, i0 = self.state["cursor"]
        for si, src in enumerate(sources):
            if si < s0:
                continue
            if si > s0 or i0 == 0:
                for path, why in src.faults:
                    self.stats(src.name)["read"] += 1
                    self.skip(src.name, Path(path), skip_reason(Path(path)), why)
                self.stats(src.name)
            start = i0 if si == s0 else 0
            units = groupby(range(start, len(src)), key=lambda i: (src.items[i].path, i if src.items[i].frame < 0 else -1))
            for _, idx in units:
                idx = list(idx)
                self.unit(src, idx)
                self.flush([si, idx[-1] + 1])
            self.flush([si + 1, 0])
        self.flush([len(sources), 0], force=True)
        self.state["done"] = True
        self.save_state()


def summary(stats: dict) -> str:
    rows = [("source", "read", "kept", "flagged", "skipped", "why")]
    for name, st in stats.items():
        why = ", ".join(f"{k}: {v}" for k, v in sorted(st["skipped"].items())) or "-"
        rows.append((name, str(st["read"]), str(st["kept"]), str(st["flagged"]), str(sum(st["skipped"].values())), why))
    tot = [sum(int(r[c]) for r in rows[1:]) for c in (1, 2, 3, 4)]
    rows.append(("total", *map(str, tot), ""))
    widths = [max(len(r[c]) for r in rows) for c in range(6)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    for flag, value, low, high in (("--size", args.size, 16, 8192), ("--shard-size", args.shard_size, 1, 10**7),
                                   ("--dedup", args.dedup, 0, 64)):  # a perceptual hash has 64 bits
        if not low <= value <= high:
            raise ConfigError(f"{flag} must lie in [{low}, {high}], got {value}")
    sources = [open_source(spec) for spec in args.sources]
    for spec, src in zip(args.sources, sources):
        if not len(src) and not src.faults:
            raise DataError(f"source '{spec}': holds no images, DICOMs or videos")
    ing = Ingest(args)
    out_dir(ing.out)
    ing.load_state()
    if not ing.state["done"]:
        ing.run(sources)
    faults = ing.state["faults"]
    (ing.out / REPORT).write_text("".join(f"{p}\t{why}\n" for p, why in sorted(faults.items())))
    print(summary(ing.state["stats"]))
    print(f"{ing.state['shards']} shard(s) in {ing.out}; {len(faults)} skipped file(s) listed in {ing.out / REPORT}")
    return 0
