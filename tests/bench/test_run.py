"""`usjepa bench` end to end: every protocol, every artefact, the cache, --verify, and clear CLI errors."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from usjepa.bench.finetune import Classifier, FinetuneConfig, _optimizer
from usjepa.cli import main
from usjepa.encoders import registry

from .conftest import write_export, write_task

PROTOCOLS = "linear,fewshot,robust,knn,finetune"


def _bench(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["bench", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    write_task(root / "data" / "synthus_lesion", seed=0)
    write_task(root / "data" / "synthus_organ", seed=1, probes=("linear", "convex"))  # the t-SNE's probe line
    return {"root": root, "data": root / "data", "export": write_export(root / "export")}


@pytest.fixture(scope="module")
def first_run(inputs) -> dict:
    encoders = f"usjepa:{inputs['export']},random:{inputs['export']},effnet-lite0:32"
    args = [
        "--encoders",
        encoders,
        "--tasks",
        "synthus_lesion,synthus_organ",
        "--protocol",
        PROTOCOLS,
        "--data-root",
        str(inputs["data"]),
        "--out",
        str(inputs["root"] / "out"),
        "--seeds",
        "2",
        "--fractions",
        "0.1,0.5,1.0",
        "--finetune-epochs",
        "1",
        "--protocol-preset",
        "paper",
    ]  # grid: test_bench_config
    assert main(["bench", *args]) == 0
    return {"args": args, "out": inputs["root"] / "out"}


def test_every_artefact_and_row(first_run):
    out = first_run["out"]
    for name in (
        "results.json",
        "results.csv",
        "leaderboard.md",
        "report.html",
        "plots/fewshot.png",
        "plots/tsne.png",
        "plots/robust_blur.png",
        "plots/robust_contrast.png",
        "plots/robust_speckle.png",
    ):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    rows = list(csv.DictReader(open(out / "results.csv")))
    per_pair = {"linear": 2, "fewshot": 2 * 3, "robust": 2 * 9, "knn": 1, "finetune": 1}
    assert len(rows) == len(results["rows"]) == 3 * 2 * sum(per_pair.values())
    for proto, n in per_pair.items():
        assert sum(r["protocol"] == proto for r in rows) == 3 * 2 * n
    assert {r["seed"] for r in rows if r["protocol"] == "linear"} == {"0", "1"}
    assert all(r["weights_fingerprint"] and r["split_hash"] for r in rows)
    ranks = [float(r["effective_rank"]) for r in rows if r["protocol"] == "linear"]
    assert len(ranks) == 3 * 2 * 2 and all(1.0 <= v <= 1280 for v in ranks)  # 1 <= rank <= feature dims
    for enc in results["encoders"]:  # noise vs blob vs stripes: learnable from every encoder's features (chance 0.33)
        assert (
            sum(r["macro_f1"] for r in results["rows"] if r["protocol"] == "linear" and r["encoder"] == enc) / 4 > 0.5
        )
    prov, cfg = results["provenance"], results["config"]
    assert (
        prov["usjepa_version"]
        and "git_commit" in prov
        and cfg["seeds"] == 2
        and cfg["protocols"] == PROTOCOLS.split(",")
    )
    assert set(results["encoders"]["effnet-lite0:32"]) >= {"fingerprint", "weights_sha256", "img_size", "pooling"}
    assert results["tasks"]["synthus_lesion"]["sizes"] == {"train": 60, "val": 12, "test": 24}


def test_leaderboard_and_self_contained_html(first_run):
    md = (first_run["out"] / "leaderboard.md").read_text()
    for title in ("Linear probe", "kNN", "Full fine-tuning", "Feature effective rank", "Few-shot", "Robustness"):
        assert f"### {title}" in md
    assert md.count("**") >= 2 * 5
    per_task = md.split("### Robustness, speckle@")[1].split("###")[0]  # the strongest speckle, task by task
    assert "| encoder | synthus_lesion |" in per_task and per_task.count("\n| ") == 1 + 3  # header + 3 encoders
    rank = md.split("### Feature effective rank")[1].split("###")[0]
    for line in rank.splitlines()[4:7]:  # per task one value (no spread over seeds); the mean column has one over tasks
        *per_task_cells, mean = [c.strip("* ") for c in line.strip("|").split("|")[1:]]
        assert all(re.fullmatch(r"\d+\.\d", c) for c in per_task_cells) and re.fullmatch(r"\d+\.\d±\d+\.\d", mean), line
    page = (first_run["out"] / "report.html").read_text()
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>", page)
    assert {name for name, _ in images} == {"fewshot", "tsne", "robust_blur", "robust_contrast", "robust_speckle"}
    assert all(base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n" for _, b64 in images)
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # nothing external


def test_second_run_reuses_every_cached_result(first_run, capsys):
    rc, out, _ = _bench(capsys, *first_run["args"])
    assert rc == 0 and re.search(r"cache: \d+ hits, 0 misses", out)


def test_verify_detects_a_changed_weights_byte_and_a_changed_label(first_run, inputs, capsys):
    results = str(first_run["out"] / "results.json")
    rc, out, _ = _bench(capsys, "--verify", results)
    assert rc == 0 and "all inputs unchanged" in out and out.count(": unchanged") == 5
    weights = inputs["export"] / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    rc, out, _ = _bench(capsys, "--verify", results)
    weights.write_bytes(original)
    assert rc == 1 and re.search(rf"encoder usjepa:{inputs['export']}: changed: fingerprint", out)
    assert f"encoder random:{inputs['export']}: unchanged" in out  # same architecture, weights not used
    test_json = inputs["data"] / "synthus_organ" / "test.json"
    original = test_json.read_text()
    entries = json.loads(original)
    entries[0]["label"] = (entries[0]["label"] + 1) % 3
    test_json.write_text(json.dumps(entries))
    rc, out, _ = _bench(capsys, "--verify", results)
    test_json.write_text(original)
    assert rc == 1 and "task synthus_organ: changed: split hash" in out and "task synthus_lesion: unchanged" in out


@pytest.mark.parametrize(
    "fault, message",
    [
        ("missing_task", r"task 'synthus_fatty': no folder .*synthus_fatty or .*synthus_fatty_v<version>"),
        ("malformed_json", r"synthus_lesion/test.json: malformed JSON \("),
        ("label_out_of_range", r"task 'synthus_lesion': test.json entry 0: label 7 out of range"),
        ("missing_weights", r"usfm:/nope/usfm.pth: weights file /nope/usfm.pth not found"),
        ("input_size_mismatch", r"encoder rejects its declared input 1x40x40 \(input-size mismatch"),
    ],
)
def test_cli_errors_name_the_thing_without_traceback(fault, message, inputs, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(inputs["data"] / "synthus_lesion", data / "synthus_lesion")
    encoder, tasks = f"usjepa:{inputs['export']}", "synthus_lesion"
    test_json = data / "synthus_lesion" / "test.json"
    if fault == "missing_task":
        tasks = "synthus_lesion,synthus_fatty"
    elif fault == "malformed_json":
        test_json.write_text(test_json.read_text()[:-20])
    elif fault == "label_out_of_range":
        test_json.write_text(test_json.read_text().replace('"label": 0', '"label": 7', 1))
    elif fault == "missing_weights":
        encoder = "usfm:/nope/usfm.pth"
    else:
        encoder = f"usjepa:{write_export(tmp_path / 'export', card_img_size=40)}"
    rc, _, err = _bench(
        capsys,
        "--encoders",
        encoder,
        "--tasks",
        tasks,
        "--data-root",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--seeds",
        "1",
    )
    assert rc == 2 and re.search(message, err) and "Traceback" not in err


def test_finetune_uses_layer_wise_lr_decay(inputs):
    enc = registry.load(f"usjepa:{inputs['export']}")
    opt = _optimizer(Classifier(enc, 3, "mean"), FinetuneConfig(lr=1e-3, layer_decay=0.5))
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales == [0.5**k for k in (4, 3, 2, 1, 0)]  # deeper blocks learn faster; head and final norm at 1
    assert max(g["lr"] for g in opt.param_groups) == pytest.approx(1e-3)


def test_device_cuda_without_a_gpu_is_a_clear_error(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    rc, _, err = _bench(
        capsys,
        "--encoders",
        "pixels:4",
        "--tasks",
        "synthus_lesion",
        "--data-root",
        str(inputs["data"]),
        "--out",
        str(tmp_path / "out"),
        "--seeds",
        "1",
        "--device",
        "cuda",
    )
    assert rc == 2 and "'cuda' was requested but no CUDA GPU is available" in err and "Traceback" not in err
