"""Pretraining methods, each a small plug-in on the one training loop (usjepa.train).

A method is one module in this package whose class is decorated with ``@register("name")`` (see
``usjepa.methods.base``), plus a YAML in ``usjepa/configs`` that sets ``method: name``. The modules are found
here by listing the package, so nothing else names them: ``METHODS`` is the one list of methods.
"""

import importlib
import pkgutil

from usjepa.config import Config
from usjepa.errors import ConfigError
from usjepa.methods.base import METHODS, Method

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


def build_method(cfg: Config) -> Method:
    return method_class(cfg.method)(cfg)
