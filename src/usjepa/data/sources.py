"""Readers of files, folders, manifests, DICOMs, videos and UltraBench folders, and ``open_source``, the one
factory of sources (shards are read by :mod:`usjepa.data.shards`; both build on :mod:`usjepa.data.source`).

A source is a list of lightweight items (one per image or sampled cine/video frame) that is listed
without decoding pixels, and decoded one item at a time with ``Source.load``.

A source spec is a path with optional ``?key=value&...`` options:
``organ`` (anatomy tag, for organ weighting), ``name`` (source name), ``fps`` (cine frame-rate cap),
``max_frames`` (frames kept per clip). Paths: an image/DICOM/video folder (class-per-subfolder labels),
a manifest (``.csv``/``.json``), an UltraBench-processed folder, one DICOM or video file, or WebDataset
shards (``dir/*.tar``, ``dir/{000..009}.tar``).
"""

from __future__ import annotations

import csv
import functools
import glob
import json
import math
from pathlib import Path
from urllib.parse import parse_qsl

import av
import numpy as np
import pydicom
from braceexpand import braceexpand
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, pixel_array

from usjepa.data.decode import image_frames, read_image, read_mask
from usjepa.data.sample import Sample
from usjepa.data.shards import ShardSource
from usjepa.data.source import DEFAULT_FPS, DEFAULT_MAX_FRAMES, Item, Options, Source
from usjepa.data.ultrabench import layout_of, load_ultrabench, read_record
from usjepa.data.usregions import read_regions
from usjepa.errors import DataError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv"}
DICOM_EXTS = {".dcm", ".dicom"}


class FileSource(Source):
    """Image, DICOM and video files (and frames of them), each with an optional scan-mask file."""

    kind = "files"

    def load(self, i: int) -> Sample:
        it = self.items[i]
        img = read_file_frame(it.path, it.frame)
        mask = read_mask(it.mask) if it.mask is not None else np.ones(img.shape[:2], bool)
        if mask.shape != img.shape[:2]:
            raise DataError(f"{it.mask}: scan mask shape {mask.shape} differs from its image {it.path} {img.shape[:2]}")
        regions = {"us_regions": read_regions(it.path)} if file_kind(it.path) == "dicom" else {}
        return Sample(img, mask, it.label, self._meta(it) | regions)


class UltraBenchSource(Source):
    """An UltraBench-processed folder (both layouts), read through :mod:`usjepa.data.ultrabench`.

    Only the training splits are used (``train``+``validation`` or ``train_val``): the test split is kept
    out of pretraining so that benchmarks on the same folder stay clean.
    """

    kind = "ultrabench"

    def __init__(self, folder: Path, opts: Options):
        records = [r for split, recs in load_ultrabench(folder).items() if split != "test" for r in recs]
        items = [
            Item(r.image, -1, -1 if r.label is None else r.label, r.group or "", r.scan_mask, {"record": r})
            for r in records
        ]
        super().__init__(items, opts)

    def load(self, i: int) -> Sample:
        it = self.items[i]
        s = read_record(it.extra["record"], gray=False)
        s.meta |= {k: v for k, v in self._meta(it).items() if k != "record"}
        return s


# ---- listing -----------------------------------------------------------------------------------------


def file_kind(p: Path) -> str:
    """'image', 'dicom', 'video' or 'other', from the extension (or the DICOM preamble)."""
    ext = p.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in DICOM_EXTS:
        return "dicom"
    if ext in VIDEO_EXTS:
        return "video"
    try:
        with open(p, "rb") as f:
            return "dicom" if f.read(132)[128:] == b"DICM" else "other"
    except OSError:
        return "other"


def frame_indices(n_frames: int, src_fps: float | None, fps_cap: float, max_frames: int) -> list[int]:
    """Frames kept from a clip: every ceil(src_fps / fps_cap)-th frame, at most ``max_frames``."""
    step = max(1, math.ceil(src_fps / fps_cap - 1e-3)) if src_fps and fps_cap > 0 else 1
    return list(range(0, n_frames, step))[:max_frames]


def list_file(p: Path, opts: Options, label: int = -1, group: str = "") -> list[Item]:
    """The items of one file (one for a still image, the sampled frames of a cine); DataError if unreadable."""
    kind = file_kind(p)
    if kind == "other":
        raise DataError(
            f"{p}: not an image, DICOM or video file (expected one of {sorted(IMAGE_EXTS | DICOM_EXTS | VIDEO_EXTS)})"
        )
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    if kind == "image" and image_frames(p) == 1:
        return [Item(p, -1, label, group)]
    n, fps = (image_frames(p), None) if kind == "image" else dicom_frames(p) if kind == "dicom" else video_frames(p)
    if n == 1 and kind == "dicom":
        return [Item(p, -1, label, group)]
    return [Item(p, f, label, group or str(p)) for f in frame_indices(n, fps, opts.fps, opts.max_frames)]


def folder_source(root: Path, opts: Options) -> Source:
    """Images, DICOMs and videos under ``root``; with subfolders, each subfolder is a class (sorted)."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    entries = (
        [(p, -1) for p in sorted(root.iterdir()) if p.is_file()]
        if not classes
        else [(p, c) for c, name in enumerate(classes) for p in sorted((root / name).rglob("*")) if p.is_file()]
    )
    items, faults = [], []
    for p, label in entries:
        if p.name.startswith("."):
            continue
        try:
            items += list_file(p, opts, label)
        except DataError as e:
            faults.append((str(p), str(e)))
    return FileSource(items, opts, faults)


def manifest_source(path: Path, opts: Options) -> Source:
    """A CSV or JSON manifest: rows with ``image`` (required), ``scan_mask``, ``label``, ``group``/``patient``,
    ``organ``; paths relative to the manifest's folder."""
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            rows = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("image") for r in rows):
        raise DataError(f"{path}: expected a list of rows each with an 'image' path")
    items, faults = [], []
    for r in rows:
        p = path.parent / r["image"]
        group = str(r.get("group") or r.get("patient") or "")
        label = int(r["label"]) if str(r.get("label", "")).strip() not in ("", "None") else -1
        try:
            listed = list_file(p, opts, label, group) if p.is_file() else []
            if not listed:
                raise DataError(f"{p}: file listed in {path} not found")
        except DataError as e:
            faults.append((str(p), str(e)))
            continue
        mask = path.parent / r["scan_mask"] if r.get("scan_mask") else None
        extra = {"organ": r["organ"]} if r.get("organ") else {}
        items += [Item(it.path, it.frame, it.label, it.group, mask, extra) for it in listed]
    return FileSource(items, opts, faults)


def single_file_source(p: Path, opts: Options) -> Source:
    try:
        return FileSource(list_file(p, opts), opts)
    except DataError as e:
        return FileSource([], opts, [(str(p), str(e))])


# ---- decoding ------------------------------------------------------------------------------------------


def read_file_frame(p: Path, frame: int = -1) -> np.ndarray:
    """uint8 HxW or HxWx3 of an image file, or frame ``frame`` of a DICOM or video."""
    kind = file_kind(p)
    if kind == "image":
        return read_image(p, max(frame, 0))  # a multi-page TIFF's page
    if kind == "dicom":
        return read_dicom(p, max(frame, 0))
    if kind == "video":
        return read_video_frame(p, max(frame, 0))
    raise DataError(f"{p}: not an image, DICOM or video file")


def _dcmread(p: Path, header_only: bool) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(p, stop_before_pixels=header_only)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{p}: unreadable DICOM ({type(e).__name__}: {e})") from None


def dicom_frames(p: Path) -> tuple[int, float | None]:
    """(number of frames, frames per second or None) from the header only."""
    ds = _dcmread(p, header_only=True)
    if "Rows" not in ds:
        raise DataError(f"{p}: DICOM without image pixels (no Rows attribute)")
    n = int(ds.get("NumberOfFrames") or 1)
    fps = None
    if ds.get("RecommendedDisplayFrameRate"):
        fps = float(ds.RecommendedDisplayFrameRate)
    elif ds.get("CineRate"):
        fps = float(ds.CineRate)
    elif ds.get("FrameTime"):
        fps = 1000.0 / float(ds.FrameTime)
    return n, fps


def read_dicom(p: Path, frame: int = 0) -> np.ndarray:
    """Frame ``frame`` as uint8: MONOCHROME1/2 (inverted, rescaled), RGB, YBR (to RGB), PALETTE COLOR (LUT)."""
    ds = pydicom.Dataset()  # receives the pixel module's header while only one frame is decoded
    try:
        a = pixel_array(str(p), ds_out=ds, index=frame)
        if ds.PhotometricInterpretation == "PALETTE COLOR":
            a = _palette_rgb(a, ds)
    except IndexError:
        n = ds.get("NumberOfFrames", 1)
        raise DataError(f"{p}: frame {frame} out of range (the file has {n} frames)") from None
    except Exception as e:  # pixel decoders raise many types (truncated data, codec faults, bad headers)
        raise DataError(f"{p}: cannot decode DICOM pixel data ({type(e).__name__}: {e})") from None
    a = _dicom_to_uint8(a, ds)
    return 255 - a if ds.PhotometricInterpretation == "MONOCHROME1" else a


def _dicom_to_uint8(a: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.ndim == 3:
        return _scale_bits(a, int(ds.BitsStored))
    a = a.astype(np.float64)
    lo, hi = a.min(), a.max()
    return np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)


def _palette_rgb(a: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """PALETTE COLOR through its LUT as uint8, scaled by what the LUT holds: 16-bit entries, or 8-bit values in
    16-bit words as some files store them (pydicom's OBXXXX1A_expb.dcm), which a 16-bit scale turns black."""
    every_index = np.arange(2 ** int(ds.BitsStored), dtype=np.uint8 if ds.BitsAllocated == 8 else np.uint16)
    full = apply_color_lut(every_index, ds).max()
    return _scale_bits(apply_color_lut(a, ds), 8 if full <= 255 else 16)


def _scale_bits(a: np.ndarray, bits: int) -> np.ndarray:
    return (a.astype(np.float64) * (255.0 / (2**bits - 1))).round().clip(0, 255).astype(np.uint8)


def video_frames(p: Path) -> tuple[int, float | None]:
    """(number of frames, frames per second) of the first video stream."""
    try:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            n = s.frames or sum(1 for _ in c.decode(video=0))
            return n, float(s.average_rate) if s.average_rate else None
    except (av.FFmpegError, IndexError) as e:
        raise DataError(f"{p}: unreadable video ({e})") from None


@functools.lru_cache(maxsize=1)
def _video_rgb(path: str) -> tuple[np.ndarray, ...]:
    """Every frame of a clip, decoded once (cached for consecutive frame reads)."""
    try:
        with av.open(path) as c:
            return tuple(f.to_ndarray(format="rgb24") for f in c.decode(video=0))
    except av.FFmpegError as e:
        raise DataError(f"{path}: unreadable video ({e})") from None


def read_video_frame(p: Path, frame: int) -> np.ndarray:
    frames = _video_rgb(str(p))
    if not 0 <= frame < len(frames):
        raise DataError(f"{p}: frame {frame} out of range (the video has {len(frames)} frames)")
    return frames[frame]


# ---- specs ----------------------------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, Options]:
    """``"path?organ=heart&fps=10"`` -> ("path", Options(...)); unknown options fail, naming the spec."""
    path, _, query = spec.partition("?")
    opts = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(opts) - {"name", "organ", "fps", "max_frames"}
    if unknown:
        raise DataError(f"source '{spec}': unknown option(s) {sorted(unknown)} (valid: name, organ, fps, max_frames)")
    shards = glob.has_magic(path) or "{" in path or path.endswith(".tar")
    name = opts.get("name") or (Path(path).parent.name if shards else Path(path).stem) or path
    try:
        o = Options(
            name,
            opts.get("organ", "unknown"),
            float(opts.get("fps", DEFAULT_FPS)),
            int(opts.get("max_frames", DEFAULT_MAX_FRAMES)),
        )
    except ValueError:
        o = None
    if o is None or not (math.isfinite(o.fps) and o.fps > 0 and o.max_frames >= 1):
        raise DataError(f"source '{spec}': fps must be a number > 0 and max_frames an integer >= 1")
    return path, o


def shard_paths(pattern: str) -> list[str]:
    """Tar files of a shard spec: a glob (``dir/*.tar``) and/or braces (``dir/{000..009}.tar``)."""
    return sorted(p for b in braceexpand(pattern) for p in (glob.glob(b) if glob.has_magic(b) else [b]))


def is_ultrabench(folder: Path) -> bool:
    try:
        layout_of(folder)
        return True
    except DataError:
        return False


def open_source(spec: str) -> Source:
    """Detect the kind of ``spec`` and open it (listing only; pixels are decoded on ``load``)."""
    path, opts = parse_spec(spec)
    p = Path(path)
    if glob.has_magic(path) or "{" in path or path.endswith(".tar"):
        return ShardSource(shard_paths(path), opts)
    if p.is_dir():
        return UltraBenchSource(p, opts) if is_ultrabench(p) else folder_source(p, opts)
    if not p.exists():
        raise DataError(
            f"source '{spec}': {p} not found (expected a folder, a manifest, a DICOM or video file, "
            f"or shards like dir/*.tar)"
        )
    if p.suffix.lower() in (".csv", ".json"):
        return manifest_source(p, opts)
    return single_file_source(p, opts)
