"""`usjepa bench --config`: display names, the resolved config beside the results, flags as overrides, typed keys;
CIs in every artefact and the paired-comparison matrix."""

from __future__ import annotations

import csv
import json
import re

import pytest
import yaml

from usjepa.bench.run import BenchConfig, EncoderEntry, display_name
from usjepa.cli import main

from .conftest import write_export, write_task


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfg")
    write_task(root / "synthus_lesion", seed=0)
    return root


def _yaml(tmp_path, data, **extra) -> str:
    tree = {
        "encoders": [{"name": "Pixels 4", "spec": "pixels:4"}, {"spec": "pixels:2"}],
        "tasks": ["synthus_lesion"],
        "data_root": str(data),
        "protocols": ["linear"],
        "seeds": 2,
        "out": str(tmp_path / "out"),
        "grid": {"lrs": [1e-3, 1e-2]},
    } | extra
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_config_file_runs_with_display_names_and_saves_the_resolved_config(tmp_path, data, capsys):
    assert main(["bench", "--config", _yaml(tmp_path, data), "--seeds", "3"]) == 0  # the flag overrides the file
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert (
        list(results["encoders"]) == ["Pixels 4", "pixels:2"] and results["encoders"]["Pixels 4"]["spec"] == "pixels:4"
    )
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 and {r["encoder"] for r in rows} == {"Pixels 4", "pixels:2"}
    assert {float(r["lr"]) for r in rows} <= {1e-3, 1e-2}
    for r in rows:  # every row carries its group's CI, around the seeds' mean
        group = [float(q["macro_f1"]) for q in rows if q["encoder"] == r["encoder"]]
        assert float(r["ci_low"]) <= sum(group) / len(group) <= float(r["ci_high"])
    resolved = yaml.safe_load((out / "bench.yaml").read_text())
    assert resolved["seeds"] == 3 and resolved["encoders"][1] == {"spec": "pixels:2", "name": "pixels:2"}
    assert resolved["grid"]["lrs"] == [1e-3, 1e-2] and resolved["protocol_preset"] == "grid"
    md = (out / "leaderboard.md").read_text()
    assert "probe preset 'grid'" in md
    assert re.search(r"\| \*\*Pixels 4\*\* \| \*\*\d+\.\d \[\d+\.\d, \d+\.\d\]\*\*|\| Pixels 4 \| [^|]*\[", md)
    assert "## Paired comparisons" in md and "Holm-adjusted" in md
    (comp,) = results["comparisons"]
    assert {comp["a"], comp["b"]} == {"Pixels 4", "pixels:2"} and 0 < comp["p_holm"] <= 1
    assert main(["bench", "--config", str(out / "bench.yaml")]) == 0  # the resolved config runs again, from cache
    assert re.search(r"cache: \d+ hits, 0 misses", capsys.readouterr().out)


def test_paper_preset_is_one_lr_and_labelled(tmp_path, data):
    assert (
        main(["bench", "--config", _yaml(tmp_path, data, grid={}), "--protocol-preset", "paper", "--seeds", "1"]) == 0
    )
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["protocol"]["grid"]["lrs"] == [1e-3] and {r["lr"] for r in results["rows"]} == {1e-3}
    assert "probe preset 'paper'" in (tmp_path / "out" / "leaderboard.md").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"grid": {"lrz": [1]}}, r"unknown config key 'grid\.lrz'"),
        ({"encoders": [{"spec": "pixels:4", "nmae": "x"}]}, r"unknown config key 'encoders\[0\]\.nmae'"),
        ({"seeds": "five"}, r"seeds: expected an integer"),
        ({"protocol_preset": "dinov2"}, r"protocol_preset: unknown 'dinov2' \(choose from grid, paper\)"),
        ({"encoders": [{"spec": "pixels:4"}, {"spec": "pixels:4"}]}, r"display names must differ"),
    ],
)
def test_bad_config_keys_fail_naming_the_key(tmp_path, data, capsys, extra, message):
    assert main(["bench", "--config", _yaml(tmp_path, data, **extra)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err


def test_display_names_are_readable():
    assert display_name("usjepa:runs/demo/salt/export") == "usjepa:salt"
    assert display_name("timm:vit_small_patch16_224@/w/vits.safetensors") == "timm:vit_small_patch16_224"
    assert display_name("effnet-lite0") == "effnet-lite0"
    assert BenchConfig([EncoderEntry("pixels:8", "Grey levels")], ["t"], "o").encoders[0].name == "Grey levels"


def test_grid_chooses_among_a_vits_poolings_and_robustness_reuses_the_choice(tmp_path, data):
    export = write_export(tmp_path / "export")
    tree = {
        "encoders": [{"name": "ViT", "spec": f"usjepa:{export}"}],
        "tasks": ["synthus_lesion"],
        "data_root": str(data),
        "protocols": ["linear", "robust"],
        "seeds": 2,
        "out": str(tmp_path / "out"),
        "corruptions": ["blur"],
        "severities": [3],
        "grid": {"lrs": [1e-2], "cs": [0.1, 10.0]},
    }
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(tree))
    assert main(["bench", "--config", str(tmp_path / "b.yaml")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["encoders"]["ViT"]["grid_poolings"] == ["cls", "cls+mean", "mean", "last4"]
    linear = {r["seed"]: r for r in results["rows"] if r["protocol"] == "linear"}
    robust = {r["seed"]: r for r in results["rows"] if r["protocol"] == "robust"}
    assert set(linear) == set(robust) == {0, 1}
    for seed, r in robust.items():  # the corrupted test set meets the clean run's chosen head
        assert r["pooling"] == linear[seed]["pooling"] in results["encoders"]["ViT"]["grid_poolings"]
        assert r["ci_low"] <= r["ci_high"] and "pred" not in r
