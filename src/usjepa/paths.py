"""Output folders named on the command line: created up front, or a ConfigError naming the flag."""

from __future__ import annotations

from pathlib import Path

from usjepa.errors import ConfigError


def out_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as an existing folder (created with its parents); a file in the way is a ConfigError."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag}: cannot use {p} as an output folder ({e.strerror or e})") from None
    return p
