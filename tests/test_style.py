"""The tree is ruff-clean: lint (pyproject's [tool.ruff], lines <= 120) and format, on src, tests and benchmarks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIRS = ["src", "tests", "benchmarks"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    out = subprocess.run([sys.executable, "-m", "ruff", *command, *DIRS], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"ruff {' '.join(command)}:\n{out.stdout[-4000:]}{out.stderr[-2000:]}"
