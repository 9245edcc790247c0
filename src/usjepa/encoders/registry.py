"""The encoder registry: spec strings (FAMILY[:ARG]) -> frozen encoders, for the benchmark and SALT's teacher.

Each family is one module of this package that registers its builder with ``@register``; help and error texts are
generated from what is registered. Nothing is downloaded: every weights file is local.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.errors import ConfigError

Builder = Callable[[str, str], FrozenEncoder]  # (the whole spec, its argument after "FAMILY:") -> encoder


@dataclass(frozen=True)
class Family:
    name: str
    usage: str  # e.g. "timm:NAME@FILE"
    summary: str  # one line for --help
    build: Builder
    needs_arg: bool = True  # False: "NAME" alone is a spec (e.g. effnet-lite0)


FAMILIES: dict[str, Family] = {}
_discovered = False


def register(name: str, usage: str, summary: str, needs_arg: bool = True) -> Callable[[Builder], Builder]:
    """Decorator: make ``build`` the builder of specs ``name:ARG``."""

    def add(build: Builder) -> Builder:
        if name in FAMILIES:
            raise ValueError(f"encoder family '{name}' registered twice")
        FAMILIES[name] = Family(name, usage, summary, build, needs_arg)
        return build

    return add


def families() -> dict[str, Family]:
    """Every family, after importing each module of this package once (in name order)."""
    global _discovered
    if not _discovered:
        package = importlib.import_module("usjepa.encoders")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"usjepa.encoders.{module.name}")
        _discovered = True
    return FAMILIES


def usage() -> str:
    """'usjepa:PATH, timm:NAME@FILE, ...' over every family."""
    return ", ".join(f.usage for f in families().values())


def help_text() -> str:
    """One line per family, for --help."""
    return "; ".join(f"{f.usage}: {f.summary}" for f in families().values())


def is_spec(spec: str) -> bool:
    """Whether ``spec`` starts with a registered family name."""
    name, _, arg = spec.partition(":")
    family = families().get(name)
    return family is not None and (bool(arg) or not family.needs_arg)


def load(spec: str) -> FrozenEncoder:
    """Build the encoder a spec string names; errors name the missing file and where weights are published."""
    name, _, arg = spec.partition(":")
    family = families().get(name)
    if family is None or (family.needs_arg and not arg):
        raise ConfigError(f"encoder '{spec}': expected one of {usage()}")
    return family.build(spec, arg)
