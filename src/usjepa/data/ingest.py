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
import re
from itertools import groupby
from pathlib import Path

import numpy as np

from usjepa.atomic import TMP_SUFFIX, atomic_write_text
from usjepa.data.decode import to_gray
from usjepa.data.maskpreview import contact_sheet
from usjepa.data.preprocess import (
    PreprocessConfig,
    hamming,
    phash,
    preprocess,
    sample_scan_mask,
)
from usjepa.data.sample import Sample
from usjepa.data.shards import encode_sample, write_shard
from usjepa.data.source import Item, Source
from usjepa.data.sources import file_kind, open_source
from usjepa.errors import ConfigError, DataError
from usjepa.paths import out_dir

STATE, REPORT, PREVIEW = "ingest_state.json", "skipped.tsv", "masks_preview.png"
PREVIEW_MAX = 60  # tiles on the --masks-preview sheet


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="folder, manifest, DICOM, video, UltraBench folder or shards; "
        "options as SRC?organ=liver&fps=3&max_frames=30",
    )
    p.add_argument("--out", required=True, help="output folder for shard-NNNNNN.tar, skipped.tsv and the resume state")
    p.add_argument("--size", type=int, default=256, help="output side in pixels (aspect kept, zero padding)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (a clip is never split)")
    p.add_argument(
        "--dedup",
        type=int,
        default=0,
        metavar="BITS",
        help="drop cine frames whose perceptual hash is within BITS of the last kept frame (0: off)",
    )
    p.add_argument(
        "--drop-flagged",
        action="store_true",
        help="skip frames whose colour overlays cover >= 5%% of the image (default: keep, flagged)",
    )
    p.add_argument(
        "--masks-preview",
        action="store_true",
        help=f"also write {PREVIEW}: the scan mask of each file or clip (the first {PREVIEW_MAX}) over its frame",
    )


def skip_reason(path: Path) -> str:
    """A short category for the summary table (the report holds the full message)."""
    if not path.is_file():
        return "unreadable"
    if path.stat().st_size == 0:
        return "empty file"
    return "not an image" if file_kind(path) == "other" else "unreadable"


def unit_key(it: Item, i: int) -> tuple:
    """The frames of one clip share a key; a still image is a unit of its own."""
    return it.path, i if it.frame < 0 else -1


class Ingest:
    def __init__(self, args: argparse.Namespace):
        self.out = Path(args.out)
        self.args = {
            "sources": args.sources,
            "size": args.size,
            "shard_size": args.shard_size,
            "dedup": args.dedup,
            "drop_flagged": args.drop_flagged,
        }
        self.pre = PreprocessConfig(size=args.size)
        self.state = {"args": self.args, "cursor": [0, 0], "shards": 0, "done": False, "stats": {}, "faults": {}}
        self.buffer: list[dict] = []
        self.preview: list[tuple[np.ndarray, np.ndarray, str]] | None = [] if args.masks_preview else None

    # ---- state ----------------------------------------------------------------------------------
    def load_state(self) -> None:
        p = self.out / STATE
        if not p.is_file():
            return
        try:
            state = json.loads(p.read_text())
            same = state["args"] == self.args
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise DataError(
                f"{p}: unreadable ingest state ({type(e).__name__}: {e}); delete {self.out} to start over, "
                "or use a new --out folder"
            ) from None
        if not same:
            raise DataError(
                f"{p}: {self.out} holds an ingest with other arguments ({state['args']}); "
                f"use a new --out folder or delete it"
            )
        self.state = state
        for stale in self.out.glob("shard-*.tar"):  # written after the last recorded shard
            if int(stale.stem.split("-")[1]) >= state["shards"]:
                stale.unlink()
        for tmp in self.out.glob(f".*{TMP_SUFFIX}"):  # a write the kill interrupted
            tmp.unlink()

    def save_state(self) -> None:
        atomic_write_text(self.out / STATE, json.dumps(self.state, indent=1, sort_keys=True))

    def stats(self, name: str) -> dict:
        st = self.state["stats"].setdefault(name, {"read": 0, "kept": 0, "flagged": 0, "skipped": {}})
        st.setdefault("masks", {})
        return st

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
        source = s.mask_source or "given"  # already preprocessed shards without a record carry their own mask
        st["masks"][source] = st["masks"].get(source, 0) + 1
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
        if not raw[0].meta.get("preprocessed"):  # one mask per clip, fitted on evidence pooled over its frames
            gray = np.stack([to_gray(s.image) for s in raw])
            clip_mask = sample_scan_mask(raw[0], gray if len(raw) > 1 else gray[0])
            if self.preview is not None and len(self.preview) < PREVIEW_MAX:
                self.preview.append((gray[0], clip_mask.mask, f"{path.name} {clip_mask.source} {clip_mask.kinds}"))
        last = None
        for s in raw:
            if not s.meta.get("preprocessed"):
                try:
                    s = preprocess(s, self.pre, clip_mask)
                except DataError as e:  # a blank frame
                    self.skip(src.name, path, "blank frame", str(e))
                    continue
            if self.args["drop_flagged"] and s.meta.get("flagged"):
                why = f"{path}: frame {s.meta.get('frame')} flagged (colour)"
                self.skip(src.name, path, "colour overlay >= 5%", why)
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
            units = groupby(range(start, len(src)), key=lambda i: unit_key(src.items[i], i))
            for _, idx in units:
                idx = list(idx)
                self.unit(src, idx)
                self.flush([si, idx[-1] + 1])
            self.flush([si + 1, 0])
        self.flush([len(sources), 0], force=True)
        self.state["done"] = True
        self.save_state()


def summary(stats: dict) -> str:
    """The table of what each source gave: samples read, kept, flagged and skipped (why), and what made
    the kept samples' scan masks (given, dicom, fit, hull, frame)."""
    rows = [("source", "read", "kept", "flagged", "skipped", "why", "masks")]
    for name, st in stats.items():
        why = ", ".join(f"{k}: {v}" for k, v in sorted(st["skipped"].items())) or "-"
        masks = ", ".join(f"{k}: {v}" for k, v in sorted(st.get("masks", {}).items())) or "-"
        rows.append(
            (name, str(st["read"]), str(st["kept"]), str(st["flagged"]), str(sum(st["skipped"].values())), why, masks)
        )
    tot = [sum(int(r[c]) for r in rows[1:]) for c in (1, 2, 3, 4)]
    masks: dict[str, int] = {}
    for st in stats.values():
        for k, v in st.get("masks", {}).items():
            masks[k] = masks.get(k, 0) + v
    rows.append(("total", *map(str, tot), "", ", ".join(f"{k}: {v}" for k, v in sorted(masks.items()))))
    widths = [max(len(r[c]) for r in rows) for c in range(7)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    for flag, value, low, high in (
        ("--size", args.size, 16, 8192),
        ("--shard-size", args.shard_size, 1, 10**7),
        ("--dedup", args.dedup, 0, 64),
    ):  # a perceptual hash has 64 bits
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
    if ing.preview is not None:
        if ing.preview:
            sheet = contact_sheet(ing.preview, ing.out / PREVIEW)
            print(f"scan masks of {len(ing.preview)} file(s) or clip(s): {sheet}")
        else:
            print("no masks to preview: nothing new was read (shards, or an ingest that had already finished)")
    print(summary(ing.state["stats"]))
    print(f"{ing.state['shards']} shard(s) in {ing.out}; {len(faults)} skipped file(s) listed in {ing.out / REPORT}")
    return 0
