"""Robustness protocol: the paper's test-time corruptions (usjepa.data.corruptions) at severities 1-3.

Probes trained on clean features are evaluated on features of corrupted test images; the report gives the
absolute score and the relative drop from the clean score. Severity 0 is the clean test set.
"""

from __future__ import annotations

from usjepa.data.corruptions import CONTRAST_ALPHA
from usjepa.errors import ConfigError

CORRUPTIONS = ("blur", "contrast", "speckle")
SEVERITIES = tuple(s for s in CONTRAST_ALPHA if s > 0)


def conditions(
    corruptions: tuple[str, ...] = CORRUPTIONS, severities: tuple[int, ...] = SEVERITIES
) -> list[tuple[str, int]]:
    """(corruption, severity) pairs, validated before any work."""
    bad = [c for c in corruptions if c not in CORRUPTIONS] + [str(s) for s in severities if s not in SEVERITIES]
    if bad:
        raise ConfigError(
            f"robustness: unknown corruption or severity {', '.join(bad)} "
            f"(corruptions {', '.join(CORRUPTIONS)}; severities {SEVERITIES})"
        )
    return [(c, s) for c in corruptions for s in severities]


def relative_drop(clean: float, corrupted: float) -> float:
    """(corrupted - clean) / clean: -0.446 is the paper's '-44.6 %'."""
    return (corrupted - clean) / clean if clean > 0 else float("nan")
