"""Pretraining methods, each a small plug-in on the one training loop (usjepa.train)."""
from usjepa.config import Config
from usjepa.methods.base import Method
from usjepa.methods.ijepa import IJEPA
from usjepa.methods.mae import MAE
from usjepa.methods.salt import SALT
from usjepa.methods.vpixel import VPixel

METHODS: dict[str, type[Method]] = {"salt": SALT, "vpixel": VPixel, "ijepa": IJEPA, "mae": MAE}


def build_method(cfg: Config) -> Method:
    return METHODS[cfg.method](cfg)
