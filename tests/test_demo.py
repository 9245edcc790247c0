"""`usjepa demo` end to end at a test-sized scale: every stage in order, the report, and a second run that resumes."""

import json

import pytest
import yaml

from usjepa import demo
from usjepa.cli import main

from .conftest import TINY

# Both recipes: SALT from EfficientNet-Lite0 (stage 3, stride 16: 64 px for the 4 x 4 grid) and from its own V-Pixel
# teacher (which tiny skips: teacher_epochs 0).
MICRO = demo.Scale(
    img_size=32,
    n_per_task=60,
    corpus_size=96,
    teacher_epochs=1,
    student_epochs=1,
    configs=demo._DEMO_CONFIGS,
    bench_seeds=2,
    effnet="effnet-lite0:32",
    allow_incomplete_tasks=True,
    overrides=(*TINY, "data.steps_per_epoch=2", "data.val_fraction=0.1", "optim.batch_size=8"),
)


@pytest.mark.filterwarnings("ignore:The least populated class")  # sklearn, on 60-image tasks of up to 7 classes
def test_demo_runs_every_stage_then_resumes_from_its_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo.SCALES, "micro", MICRO)
    out = tmp_path / "demo"
    assert main(["demo", "--scale", "micro", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    recipes = ["salt", "vpixel", "salt_vpixel", "ijepa", "mae"]
    assert list(summary["timings_s"]) == ["simulate", *recipes, "bench"]
    for recipe in recipes:
        assert (out / recipe / "export" / "model.safetensors").is_file()
    cfg = {r: yaml.safe_load((out / r / "config.yaml").read_text()) for r in recipes}
    assert cfg["salt"]["teacher"]["source"] == "effnet-lite0" and cfg["salt"]["teacher"]["layer"] == 3
    assert cfg["salt_vpixel"]["teacher"]["source"] == str(out / "vpixel" / "export")  # stage 2 <- stage 1
    steps = {r: (c["optim"]["epochs"], c["optim"]["batch_size"]) for r, c in cfg.items() if r != "vpixel"}
    assert len(set(steps.values())) == 1  # every student and comparator at the same steps x batch
    table = (out / "summary.md").read_text().splitlines()
    assert [row.split(" | ")[0].lstrip("| ") for row in table[2:]] == [
        "SALT student, EfficientNet-Lite0 teacher",
        "V-Pixel teacher (SALT stage 1)",
        "SALT student, own V-Pixel teacher",
        "EMA I-JEPA",
        "pixel MAE",
        "random-init ViT (same arch)",
        "EfficientNet-Lite0",
    ]
    assert table[2].endswith("| ImageNet EfficientNet-Lite0 (teacher) |") and table[3].endswith("| none |")
    assert "\n".join(table) in first and "### Linear probe" in (out / "bench" / "leaderboard.md").read_text()
    assert "<img alt='monitor'" in (out / "bench" / "report.html").read_text()  # the pretraining curves
    assert set(summary["monitor"]) == set(recipes) and "monitor: " in first
    assert main(["demo", "--scale", "micro", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "SynthUS already written" in second and second.count("already trained") == 5
    assert json.loads((out / "bench" / "results.json").read_text())["provenance"]["cache"]["misses"] == 0
