"""Pixel MAE: the pixel comparator, V-Pixel's objective with random 75 % masking instead of blocks."""

from usjepa.methods import register
from usjepa.methods.vpixel import VPixel


@register("mae")
class MAE(VPixel):
    mask_kind = "random"
    export_role = "student"
