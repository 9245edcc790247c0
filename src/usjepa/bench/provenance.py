"""Traceability: what produced a result (code version, commit) and whether its inputs are still the same.

``verify`` recomputes every encoder's weights fingerprint and file hash and every task's split hash
(records, labels, image and mask bytes) from a results.json, and says which changed.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import timm
import torch

import usjepa
from usjepa.bench.tasks import load_task
from usjepa.encoders import registry
from usjepa.errors import DataError, UsjepaError


def git_commit() -> str | None:
    """The commit of the usjepa source tree, with '+dirty' for uncommitted changes; None outside git."""
    src = Path(usjepa.__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "."],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance() -> dict:
    return {
        "usjepa_version": usjepa.__version__,
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def verify(results_path: str | Path) -> tuple[list[str], bool]:
    """One line per input ('unchanged' or 'changed: why'), and whether all are unchanged."""
    path = Path(results_path)
    try:
        results = json.loads(path.read_text())
        encoders, tasks, cfg = results["encoders"], results["tasks"], results["config"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a usjepa bench results.json ({e})") from None
    if not (isinstance(encoders, dict) and isinstance(tasks, dict) and encoders and tasks):
        raise DataError(f"{path}: records no encoders or no tasks; nothing to verify")
    lines = []
    for name, rec in encoders.items():
        spec = rec.get("spec", name)  # results keyed by display name record the spec
        try:
            enc = registry.load(spec)
            now = {"fingerprint": enc.fingerprint, "weights_sha256": enc.weights_sha256}
            diff = [f"{k} {_short(rec[k])} -> {_short(now[k])}" for k in now if now[k] != rec[k]]
        except UsjepaError as e:
            diff = [f"cannot load ({e})"]
        lines.append(f"encoder {spec}: " + ("changed: " + "; ".join(diff) if diff else "unchanged"))
    for name, rec in tasks.items():
        try:
            h = load_task(
                rec["source"],
                cfg["data_root"],
                cfg["val_seed"],
                cfg["val_fraction"],
                cfg.get("allow_incomplete_tasks", False),
            ).split_hash
            diff = [] if h == rec["split_hash"] else [f"split hash {_short(rec['split_hash'])} -> {_short(h)}"]
        except UsjepaError as e:
            diff = [f"cannot load ({e})"]
        lines.append(f"task {name}: " + ("changed: " + "; ".join(diff) if diff else "unchanged"))
    return lines, all(line.endswith(": unchanged") for line in lines)


def _short(h: str | None) -> str:
    return f"{h[:12]}…" if h else "none"
