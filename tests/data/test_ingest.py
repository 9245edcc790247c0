"""`usjepa ingest` over a folder of good and bad files; interrupted and re-run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

import usjepa
from usjepa.cli import main
from usjepa.data import ingest
from usjepa.data.shards import ShardSource
from usjepa.data.source import Options
from usjepa.data.sources import open_source

BAD = {
    "corrupt.png": "corrupt or truncated",
    "truncated.dcm": "cannot decode DICOM",
    "zero.png": "empty file",
    "notes.txt": "not an image",
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for i in range(5):
        a = np.zeros((120, 160), np.uint8)
        a[20:100, 30:130] = rng.integers(10, 250, (80, 100))
        Image.fromarray(a).save(d / f"good{i}.png")
    Image.fromarray(rng.integers(0, 65535, (100, 100)).astype(np.uint16)).save(d / "deep16.png")
    Image.fromarray(rng.integers(0, 255, (90, 120, 3)).astype(np.uint8)).save(d / "colour.jpg")
    (d / "corrupt.png").write_bytes((d / "good0.png").read_bytes()[:200])
    (d / "zero.png").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    us = Path(get_testdata_file("US1_UNCR.dcm")).read_bytes()
    (d / "truncated.dcm").write_bytes(us[: len(us) // 2])
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), d / "cine.dcm")  # 30 frames -> 3 sampled
    return d


def _tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


def test_ingest_keeps_good_reports_bad(mixed, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ingest", str(mixed), "--out", str(out), "--shard-size", "4", "--size", "64"]) == 0
    text = capsys.readouterr().out
    assert "empty file: 1, not an image: 1, unreadable: 2" in text and "mixed" in text
    report = dict(line.split("\t") for line in (out / "skipped.tsv").read_text().splitlines())
    assert {Path(p).name for p in report} == set(BAD)
    assert all(BAD[Path(p).name] in why for p, why in report.items())
    shards = open_source(str(out / "*.tar"))
    names = [Path(shards.load(i).meta["path"]).name for i in range(len(shards))]
    assert sorted(names) == sorted([f"good{i}.png" for i in range(5)] + ["deep16.png", "colour.jpg"] + ["cine.dcm"] * 3)
    s = shards.load(0)
    assert s.image.shape == (64, 64) and s.image.dtype == np.uint8 and s.scan_mask.any()
    assert len(_tars(out)) == 3  # shards of 4 (cine clip + colour.jpg), 4, and the last 2


def test_interrupted_rerun_gives_same_shards(mixed, tmp_path, monkeypatch):
    args = ["--shard-size", "4", "--size", "64"]
    main(["ingest", str(mixed), "--out", str(tmp_path / "ref"), *args])
    real, calls = ingest.write_shard, []

    def crash_on_second(path, samples):
        calls.append(path)
        if len(calls) == 2:
            path.with_name(f".{path.name}.12345.tmp").write_bytes(b"partial")  # as a SIGKILL mid-write leaves it
            raise KeyboardInterrupt
        real(path, samples)

    monkeypatch.setattr(ingest, "write_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        main(["ingest", str(mixed), "--out", str(tmp_path / "run"), *args])
    assert len(_tars(tmp_path / "run")) == 1
    monkeypatch.setattr(ingest, "write_shard", real)
    assert main(["ingest", str(mixed), "--out", str(tmp_path / "run"), *args]) == 0
    assert _tars(tmp_path / "run") == _tars(tmp_path / "ref")
    assert not list((tmp_path / "run").glob("*.tmp")) and not list((tmp_path / "run").glob(".*.tmp"))
    src = open_source(str(tmp_path / "run" / "*.tar"))
    assert len({it.extra["key"] for it in src.items}) == len(src) == 10
    assert (tmp_path / "run" / "skipped.tsv").read_text() == (tmp_path / "ref" / "skipped.tsv").read_text()
    assert main(["ingest", str(mixed), "--out", str(tmp_path / "run"), "--shard-size", "5"]) == 2  # other args


def _listed_shards_read(out: Path) -> int:
    """Every shard the state file lists exists and every sample in it decodes; returns how many it lists."""
    state = json.loads((out / ingest.STATE).read_text())
    listed = [out / f"shard-{i:06d}.tar" for i in range(state["shards"])]
    for p in listed:
        assert p.is_file(), f"{ingest.STATE} lists {p.name}, which is not on disk"
        src = ShardSource([str(p)], Options(p.stem))
        assert not src.faults and len(src) >= 1
        assert all(src.load(i).image.size for i in range(len(src)))
    return len(listed)


def test_sigkill_mid_ingest_leaves_only_whole_listed_shards(tmp_path):
    """Acceptance: SIGKILL ``usjepa ingest`` twice at arbitrary moments; each time every shard the state file
    lists is on disk and reads; the re-run then finishes with the shards of an uninterrupted run."""
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        a = np.zeros((48, 48), np.uint8)
        a[6:42, 6:42] = rng.integers(10, 250, (36, 36))
        Image.fromarray(a).save(frames / f"f{i:03d}.png")
    args = ["--shard-size", "1", "--size", "32"]
    assert main(["ingest", str(frames), "--out", str(tmp_path / "ref"), *args]) == 0
    out = tmp_path / "run"
    env = os.environ | {"PYTHONPATH": str(Path(usjepa.__file__).parents[1])}
    cmd = [sys.executable, "-m", "usjepa", "ingest", str(frames), "--out", str(out), *args]
    seen = []
    for target in (3, 3):  # at least this many more shards recorded before each kill
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start = seen[-1] if seen else 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                state = json.loads((out / ingest.STATE).read_text())
            except (OSError, json.JSONDecodeError):  # not written yet (an atomic write is never partial)
                state = {"shards": 0, "done": False}
            if state["shards"] >= start + target and not state["done"]:
                time.sleep(rng.uniform(0, 0.05))  # land anywhere in the next shard's write
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        assert proc.wait(timeout=60) == -signal.SIGKILL, f"ingest was not killed mid-run: {proc.stderr.read()}"
        seen.append(_listed_shards_read(out))
    assert seen[0] >= 3 and seen[1] >= seen[0] + 3
    assert main(["ingest", str(frames), "--out", str(out), *args]) == 0
    assert _listed_shards_read(out) == 60
    assert _tars(out) == _tars(tmp_path / "ref")
    assert not list(out.glob(".*.tmp"))


def test_ingest_records_mask_sources_and_writes_preview(tmp_path, capsys):
    d = tmp_path / "scans"
    d.mkdir()
    shutil.copy(get_testdata_file("OBXXXX1A.dcm"), d / "ob.dcm")  # DICOM regions cut to the fitted convex fan
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), d / "cine.dcm")  # stale regions: one fit per clip
    ramp = np.repeat(np.linspace(50, 60, 80)[None], 60, 0).round().astype(np.uint8)
    Image.fromarray(ramp).save(d / "ramp.png")  # no texture: the whole frame
    out = tmp_path / "out"
    assert main(["ingest", str(d), "--out", str(out), "--size", "32", "--masks-preview"]) == 0
    text = capsys.readouterr().out
    assert "scan masks of 3 file(s) or clip(s)" in text
    assert "dicom: 1, fit: 3, frame: 1" in text.splitlines()[-2]  # the total row of the summary
    sheet = Image.open(out / ingest.PREVIEW)
    assert sheet.size == (3 * 224, 224 + 24)
    shards = open_source(str(out / "*.tar"))
    got = {(Path(s.meta["path"]).name, s.mask_source, s.meta["fan"]) for s in shards}
    assert got == {("ob.dcm", "dicom", "convex"), ("cine.dcm", "fit", "phased"), ("ramp.png", "frame", "")}
