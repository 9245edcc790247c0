"""Pretraining methods, each a small plug-in on the one training loop (usjepa.train).

A method is one module in this package whose Method subclass is decorated with ``@register("name")``, plus a
YAML in ``usjepa/configs`` that sets ``method: name``. The modules are found by listing this package, the first
time a method is looked up, so nothing else names them: the registry is the one list of methods, and the config
is checked against it. This module imports no method, so that the config and the model I/O can use it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from usjepa.errors import ConfigError

if TYPE_CHECKING:
    from usjepa.config import Config
    from usjepa.methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(name: str):
    """Class decorator: make a Method subclass available as ``method: name`` in configs."""

    def add(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"method '{name}' is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        _REGISTRY[name] = cls
        return cls

    return add


def _registry() -> dict[str, type[Method]]:
    for m in pkgutil.iter_modules(__path__):  # a no-op for modules already imported
        importlib.import_module(f"{__name__}.{m.name}")
    return _REGISTRY


def method_names() -> list[str]:
    return sorted(_registry())


def method_class(name: str) -> type[Method]:
    methods = _registry()
    if name not in methods:
        raise ConfigError(f"method: expected one of {sorted(methods)}, got {name!r}")
    return methods[name]


def build_method(cfg: Config) -> Method:
    return method_class(cfg.method)(cfg)
