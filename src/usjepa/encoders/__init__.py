"""Frozen encoders by spec string: a registry of families (one module each) and the adapter they return."""

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.registry import help_text, is_spec, load, usage

__all__ = ["FrozenEncoder", "help_text", "is_spec", "load", "usage"]
