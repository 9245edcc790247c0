"""Decoding image files (PNG, JPEG, BMP, TIFF) into uint8 arrays, with errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from usjepa.errors import DataError

MAX_PIXELS = 64_000_000  # larger images are refused as decompression bombs


def image_frames(path: str | Path) -> int:
    """Pages of a multi-page TIFF (a cine); 1 for every other image. Reads the header only."""
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        return 1
    try:
        with Image.open(p) as im:
            return max(1, getattr(im, "n_frames", 1))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{p}: unreadable TIFF ({e})") from None


def read_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """HxW uint8 (grayscale) or HxWx3 uint8 (colour); ``frame``: the page of a multi-page TIFF.
    16-bit is rescaled, alpha is dropped."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(
                        f"{p}: image too large ({im.width}x{im.height} pixels > {MAX_PIXELS}); refusing a possible "
                        "decompression bomb"
                    )
                if frame:
                    try:
                        im.seek(frame)
                    except EOFError:
                        raise DataError(
                            f"{p}: page {frame} out of range (the file has {getattr(im, 'n_frames', 1)} pages)"
                        ) from None
                im.load()
                return _to_uint8(im, p)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{p}: image too large; refusing a possible decompression bomb") from None
    except UnidentifiedImageError:
        raise DataError(f"{p}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{p}: corrupt or truncated image ({e})") from None


def _to_uint8(im: Image.Image, p: Path) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise DataError(f"{p}: {bad} NaN or infinite pixel(s); expected finite intensities")
        lo, hi = a.min(), a.max()
        scaled = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return np.round(scaled).astype(np.uint8)
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8).copy()
    if im.mode in ("1", "LA"):
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return rgb


def read_mask(path: str | Path) -> np.ndarray:
    """HxW bool: a {0,1} or {0,255} PNG, or a 3-channel JPEG thresholded at > 0."""
    a = read_image(path)
    if a.ndim == 3:
        a = a.max(axis=2)
    return a > 0


def to_gray(img: np.ndarray) -> np.ndarray:
    """Luma (ITU-R 601) of an RGB array; grayscale passes through."""
    if img.ndim == 2:
        return img
    g = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.round(g), 0, 255).astype(np.uint8)
