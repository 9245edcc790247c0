"""Pixel MAE: the pixel comparator, V-Pixel's objective with random 75 % masking instead of blocks."""
from usjepa.methods.vpixel import VPixel


class MAE(VPixel):
    mask_kind = "random"
