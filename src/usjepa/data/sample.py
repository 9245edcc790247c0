"""The one sample record that every reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """An ultrasound frame with its scan region.

    image: HxW uint8 grayscale, or HxWx3 uint8 RGB before preprocessing.
    scan_mask: HxW bool, True inside the scan region (fan); all True when unknown.
    label: class index, or -1 when unlabelled.
    meta: source, organ, group (patient or video id), frame index, path, ...
    mask_source: what made the scan mask (see :mod:`usjepa.data.scanmask`): given, dicom, fit, hull, frame;
        "" until preprocessing decides.
    """

    image: np.ndarray
    scan_mask: np.ndarray
    label: int = -1
    meta: dict = field(default_factory=dict)
    mask_source: str = ""
