"""A contact sheet of scan masks over their frames, to check them before a long pretraining run.

Each tile is a frame at its original framing, the scan region tinted, its outline in red, and a caption
naming the file and the mask's source (and fitted shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

TILE = 224  # tile side in pixels
CAPTION = 24  # caption height under each tile
COLS = 6


def overlay(gray: np.ndarray, mask: np.ndarray, side: int = TILE) -> Image.Image:
    """RGB thumbnail (longest side ``side``) of ``gray`` with ``mask`` tinted green and outlined red."""
    h, w = gray.shape
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    g = np.asarray(Image.fromarray(gray).resize(size, Image.BILINEAR), np.float32)
    m = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    rgb = np.repeat(g[..., None], 3, -1)
    rgb[m] = rgb[m] * 0.75 + np.array([0, 64, 0], np.float32)
    rgb[m & ~ndi.binary_erosion(m)] = (255, 0, 0)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def contact_sheet(tiles: list[tuple[np.ndarray, np.ndarray, str]], path: str | Path, cols: int = COLS) -> Path:
    """Write the (gray, mask, caption) tiles as one PNG sheet at ``path``; returns the path."""
    rows = max(1, -(-len(tiles) // cols))
    sheet = Image.new(
        "RGB",
        (min(cols, max(1, len(tiles))) * TILE, rows * (TILE + CAPTION)),
        (24, 24, 24),
    )
    draw = ImageDraw.Draw(sheet)
    for i, (gray, mask, caption) in enumerate(tiles):
        x, y = (i % cols) * TILE, (i // cols) * (TILE + CAPTION)
        im = overlay(gray, mask)
        sheet.paste(im, (x + (TILE - im.width) // 2, y + (TILE - im.height) // 2))
        draw.text((x + 3, y + TILE + 2), caption[:36], fill=(230, 230, 230))
        draw.text((x + 3, y + TILE + 12), caption[36:72], fill=(230, 230, 230))
    path = Path(path)
    sheet.save(path)
    return path
