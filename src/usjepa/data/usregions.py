"""DICOM Sequence of Ultrasound Regions (0018,6011): where a scanner says its image panes are.

Each region gives a pixel box (``RegionLocationMinX0`` .. ``RegionLocationMaxY1``, inclusive), a spatial
format (1: 2-D) and a data type (1: tissue, 2: colour flow, 13 / 14: grey / colour bar, ...). The 2-D tissue
and flow regions are the image panes; bars drawn inside a pane are not imaging.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

SPATIAL_2D = 1
TISSUE_TYPES = (1, 2)  # tissue, colour flow
BAR_TYPES = (13, 14)  # grey bar, colour bar
BOX_KEYS = (
    "RegionLocationMinX0",
    "RegionLocationMinY0",
    "RegionLocationMaxX1",
    "RegionLocationMaxY1",
)


@dataclass(frozen=True)
class Region:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1, inclusive pixel indices
    spatial_format: int
    data_type: int

    @property
    def is_pane(self) -> bool:
        return self.spatial_format == SPATIAL_2D and self.data_type in TISSUE_TYPES

    @property
    def is_bar(self) -> bool:
        return self.data_type in BAR_TYPES


@functools.lru_cache(maxsize=64)
def read_regions(path: str | Path) -> tuple[Region, ...]:
    """The ultrasound regions of a DICOM file's header; empty when it has none or they cannot be read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SequenceOfUltrasoundRegions"])
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError):
        return ()
    out = []
    for item in ds.get("SequenceOfUltrasoundRegions", []):
        try:
            box = tuple(int(item[k].value) for k in BOX_KEYS)
            out.append(
                Region(
                    box,
                    int(item.get("RegionSpatialFormat", 0)),
                    int(item.get("RegionDataType", 0)),
                )
            )
        except (
            KeyError,
            TypeError,
            ValueError,
        ):  # a region without a usable box is no evidence
            continue
    return tuple(out)


def panes(regions: tuple[Region, ...], shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The 2-D tissue panes that lie on an image of ``shape`` (H, W), clipped to it: (x0, y0, x1, y1)."""
    h, w = shape
    out = []
    for r in regions:
        x0, y0, x1, y1 = r.box
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)
        if r.is_pane and x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out
