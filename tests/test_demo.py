"""`usjepa demo` end to end at a test-sized scale: every stage in order, the report, and a second run that resumes."""
import json

import pytest
import yaml

from usjepa import demo
from usjepa.cli import main

from .conftest import TINY

MICRO = demo.Scale(img_size=32, n_per_task=60, corpus_size=96, teacher_epochs=1, student_epochs=1,
                   configs=demo._TINY_CONFIGS, bench_seeds=2, effnet="effnet-lite0:32", allow_incomplete_tasks=True,
                   overrides=(*TINY, "data.steps_per_epoch=2", "data.val_fraction=0.1", "data.num_workers=0",
                              "optim.batch_size=8", *demo._CPU_LR))


@pytest.mark.filterwarnings("ignore:The least populated class")  # sklearn, on 60-image tasks of up to 7 classes
def test_demo_runs_every_stage_then_resumes_from_its_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo.SCALES, "micro", MICRO)
    out = tmp_path / "demo"
    assert main(["demo", "--scale", "micro", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert list(summary["timings_s"]) == ["simulate", "vpixel", "salt", "ijepa", "mae", "bench"]
    for method in ("vpixel", "salt", "ijepa", "mae"):
        assert (out / method / "export" / "model.safetensors").is_file()
    salt = yaml.safe_load((out / "salt" / "config.yaml").read_text())
    assert salt["teacher"]["source"] == str(out / "vpixel" / "export") and salt["optim"]["lr"] == 1e-4  # stage 2 <- 1
    board = (out / "bench" / "leaderboard.md").read_text()
    linear = board.split("### Linear probe")[1].split("###")[0]
    assert linear.count("\n| ") == 1 + 6  # header + V-Pixel, SALT, I-JEPA, MAE, random init, EfficientNet-Lite0
    assert "### Few-shot" in board and "### Robustness" in board and board in first  # the headline is printed
    assert "| synthus_lesion‡ |" in board  # 60 images: its val split lacks classes, scored and marked
    assert main(["demo", "--scale", "micro", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "SynthUS already written" in second and second.count("already trained") == 4
    assert json.loads((out / "bench" / "results.json").read_text())["provenance"]["cache"]["misses"] == 0
