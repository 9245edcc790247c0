"""The bad-input table: each row of docs/bad_inputs.md is a Case here, triggered and checked by one test.

A trigger feeds the bad input to the real code and returns what a user sees: ``ErrorType: message`` for a
library error, ``exit CODE: last stderr line`` for the CLI, the logged warning for a counted skip, or a
description of what was accepted. The test asserts that it starts with the row's message, where ``{tmp}``
stands for the test's folder. ``python tests/test_bad_inputs.py`` rewrites the doc from CASES, and
test_doc_matches_cases fails whenever the two drift apart.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import json
import os
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from safetensors.torch import load_file, save_file

from usjepa.bench.tasks import load_task
from usjepa.checkpoint import load_checkpoint
from usjepa.cli import main
from usjepa.config import config_from_dict, load_config, save_config
from usjepa.data.corpus import FAULTS, build_pretrain_loader, open_sources
from usjepa.data.corruptions import corrupt
from usjepa.data.decode import read_image
from usjepa.data.sources import open_source
from usjepa.data.ultrabench import find_dataset, load_ultrabench
from usjepa.errors import UsjepaError
from usjepa.masking import MaskCollator
from usjepa.methods import build_method
from usjepa.train import Trainer
from usjepa.weights import file_sha256

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
SRC = Path(__file__).resolve().parents[1] / "src"


class Ctx:
    """What a trigger may use: the test's folder and, on demand, other pytest fixtures."""

    def __init__(self, request: pytest.FixtureRequest):
        self.request = request
        self.tmp: Path = request.getfixturevalue("tmp_path")

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    @property
    def tiny(self) -> list[str]:
        return self.fixture("tiny_overrides")

    @property
    def frames(self) -> Path:
        """64 B-mode-like PNGs in {tmp}/frames."""
        return self.fixture("image_folder")


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    input: str
    behaviour: str
    message: str  # the stable prefix of what the trigger returns
    trigger: Callable[[Ctx], str]


# ---- what a user sees ----------------------------------------------------------------------------------


def raised(fn: Callable, *args, **kwargs) -> str:
    """``ErrorType: message`` of the UsjepaError that ``fn`` raises (any other outcome fails the test)."""
    try:
        fn(*args, **kwargs)
    except UsjepaError as e:
        return f"{type(e).__name__}: {e}"
    raise AssertionError(f"{getattr(fn, '__name__', fn)} accepted a bad input")


def cli(*argv: str) -> str:
    """``exit CODE: last stderr line`` of ``usjepa ARGV`` (run in-process)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:  # argparse
            rc = e.code
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return f"exit {rc}: {(err.getvalue().strip().splitlines() or [''])[-1]}"


def pretrain(ctx: Ctx, *overrides: str) -> str:
    return cli(
        "pretrain",
        "--config",
        "tiny",
        *ctx.tiny,
        "method=vpixel",
        f"out={ctx.tmp / 'run'}",
        "data.num_workers=0",
        "optim.batch_size=8",
        *overrides,
    )


def tiny_cfg(ctx: Ctx, *overrides: str):
    return load_config(
        "tiny",
        ctx.tiny
        + [
            "method=vpixel",
            f"out={ctx.tmp / 'run'}",
            "data.num_workers=0",
            "optim.batch_size=8",
            "data.val_fraction=0",
            *overrides,
        ],
    )


def logged(ctx: Ctx, path: Path) -> str:
    """The one warning logged about ``path``."""
    msgs = [r.getMessage() for r in ctx.fixture("caplog").records if str(path) in r.getMessage()]
    assert len(msgs) == 1, msgs
    return msgs[0]


# ---- bad files ---------------------------------------------------------------------------------------------


def png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode).save(path)
    return path


def noise(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def nan_tiff(path: Path) -> Path:
    a = np.ones((8, 8), np.float32)
    a[3, 4] = np.nan
    return png(path, a, "F")


def decoded(a: np.ndarray) -> str:
    return f"accepted: {a.dtype} {a.shape}, {a.min()}..{a.max()}"


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def truncated_dicom(ctx: Ctx) -> str:
    dcm = truncate(Path(shutil.copy(get_testdata_file("US1_UNCR.dcm"), ctx.tmp / "us.dcm")))
    return raised(open_source(str(dcm)).load, 0)


def bomb_png(path: Path, w: int = 9000, h: int = 8000) -> Path:
    """A few hundred bytes that declare a w x h grayscale PNG."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def listing_fault(ctx: Ctx, name: str, content: bytes) -> str:
    """A folder of good frames plus ``name``: the source opens, ``name`` is left out and logged."""
    frames = ctx.frames
    (frames / name).write_bytes(content)
    (src,) = open_sources([str(frames)])
    assert len(src) == 64 and str(frames / name) not in {str(it.path) for it in src.items}
    return logged(ctx, frames / name)


def loader_skip(ctx: Ctx, name: str, write: Callable[[Path], object]) -> str:
    """64 good frames and one bad: every pretraining item still loads, the bad file is replaced by the
    next one, counted each time it comes up and logged once."""
    frames = ctx.frames
    write(frames / name)
    ds = build_pretrain_loader(tiny_cfg(ctx, f"data.sources=[{frames}]")).dataset
    for _ in range(2):
        assert all(ds[0, pos]["image"].isfinite().all() for pos in range(len(ds)))
    assert FAULTS[str(frames / name)] == 2
    return logged(ctx, frames / name)


def ultrabench(ctx: Ctx, train: list, validation: list, test: list) -> Path:
    """A release-layout folder; entries are (image name, label or None); one random PNG per name."""
    root = folder(ctx.tmp / "ub")
    for seed, (split, rows) in enumerate({"train": train, "validation": validation, "test": test}.items()):
        entries = []
        for i, (name, label) in enumerate(rows):
            if not (root / name).exists():
                png(root / name, np.random.default_rng([seed, i]).integers(0, 256, (16, 16), dtype=np.uint8))
            entries.append({"image": name, "patient": name} | ({} if label is None else {"label": label}))
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root


TWO_CLASSES = dict(train=[("a.png", 0), ("b.png", 1)], validation=[("c.png", 0), ("d.png", 1)])


def label_out_of_range(ctx: Ctx) -> str:
    return raised(load_task, str(ultrabench(ctx, **TWO_CLASSES, test=[("t.png", 7)])))


def leak_across_splits(ctx: Ctx) -> str:
    root = ultrabench(ctx, **TWO_CLASSES, test=[("t.png", 0)])
    shutil.copy(root / "a.png", root / "t.png")
    return raised(load_task, str(root))


# ---- models and checkpoints ------------------------------------------------------------------------------


def teacher_width_adapter(ctx: Ctx) -> str:
    """A ViT-S student (width 384) under a ViT-Tiny teacher (192): the predictor projects to the teacher's width."""
    cfg = load_config(
        "tiny",
        ctx.tiny
        + [
            "method=salt",
            f"teacher.source={ctx.fixture('stage1_run')}",
            "model.arch=vit_small_patch16_224",
            "model.depth=1",
        ],
    )
    salt = build_method(cfg)
    items = [
        {"image": torch.rand(1, 32, 32), "scan_mask": torch.ones(32, 32, dtype=torch.bool), "seed": i, "index": i}
        for i in range(2)
    ]
    loss, _ = salt(MaskCollator(cfg.mask, 32, 8, salt.mask_kind)(items))
    assert loss.isfinite()
    return (
        f"accepted: student width {salt.encoder.embed_dim}, predictor output width "
        f"{salt.predictor.proj.out_features} = teacher width {salt.teacher.embed_dim}"
    )


def teacher_on_student_grid(ctx: Ctx) -> str:
    cfg = load_config(
        "tiny", ctx.tiny + ["method=salt", "data.img_size=64", f"teacher.source={ctx.fixture('stage1_run')}"]
    )
    salt = build_method(cfg)
    grid = salt.teacher.frozen.model.patch_embed.grid_size
    assert salt.teacher(torch.rand(1, 1, 64, 64)).shape == (1, 64, 192)
    return f"accepted: teacher input {salt.teacher.size} px, {grid[0]} x {grid[1]} patch grid = the student's"


def pickle_checkpoint(ctx: Ctx) -> str:
    marker = ctx.tmp / "pwned"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    torch.save({"format": "usjepa-checkpoint/1", "model": Payload()}, ctx.tmp / "evil.pt")
    msg = raised(load_checkpoint, ctx.tmp / "evil.pt")
    assert not marker.exists(), "the pickle ran"
    assert "save_file(" in msg  # the conversion command
    return msg


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


# ---- the training loop -------------------------------------------------------------------------------------


def disk_full_keeps_previous_checkpoint(ctx: Ctx) -> str:
    """Acceptance 3: the disk fills while step 3's checkpoint is written; the run stops with the error, no
    temporary file is left, and step 2's checkpoint loads and resumes."""
    cfg = tiny_cfg(ctx, f"data.sources=[{ctx.frames}]", "method=mae", "ckpt_every=1", "optim.epochs=2")
    trainer, real_save = Trainer(cfg), torch.save

    def save(obj, f, *args, **kwargs):
        if trainer.step < 3:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with ctx.fixture("monkeypatch").context() as m:
        m.setattr(torch, "save", save)
        msg = raised(trainer.fit)
    ckpts = ctx.tmp / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.pt"]
    assert load_checkpoint(ckpts / "last.pt")["step"] == 2 and Trainer(cfg).step == 2
    return msg


def nan_steps_are_skipped_then_stop(ctx: Ctx) -> str:
    """A NaN gradient at step 1 and NaN losses from step 3 on: each bad step is skipped (weights untouched)
    and counted, a good step resets the count, the second bad step in a row stops the run, and the last
    checkpoint holds the last good weights."""
    capsys = ctx.fixture("capsys")
    trainer = Trainer(
        tiny_cfg(ctx, f"data.sources=[{ctx.frames}]", "method=mae", "ckpt_every=1", "max_bad_steps=2", "optim.epochs=1")
    )
    w = trainer.method.encoder.vit.patch_embed.proj.weight
    forward, poison = trainer.method.forward, {1: "grad", 3: "loss", 4: "loss"}
    weights, bad = {}, {}

    def poisoned(batch):
        weights[trainer.step], bad[trainer.step] = w.detach().clone(), trainer.bad
        loss, logs = forward(batch)
        if poison.get(trainer.step) == "grad":
            loss = loss + torch.sqrt(w.sum() * 0)  # adds 0 to the loss, NaN to the gradient
        elif poison.get(trainer.step) == "loss":
            loss = loss * float("nan")
        return loss, logs

    trainer.method.forward = poisoned
    msg = raised(trainer.fit)
    assert [bad[s] for s in range(5)] == [0, 0, 1, 0, 1]
    assert torch.equal(weights[1], weights[2]) and not torch.equal(weights[2], weights[3])
    assert "step 1: non-finite loss or gradient, step skipped (1 in a row)" in capsys.readouterr().out
    last = load_checkpoint(ctx.tmp / "run" / "checkpoints" / "last.pt")
    assert last["step"] == 4 and last["bad_steps"] == 1
    assert torch.equal(last["model"]["encoder.vit.patch_embed.proj.weight"], weights[3])
    return msg


def cuda_without_gpu(ctx: Ctx) -> str:
    ctx.fixture("monkeypatch").setattr(torch.cuda, "is_available", lambda: False)
    return pretrain(ctx, "device=cuda")


def unwritable_run_dir(ctx: Ctx) -> str:
    (ctx.tmp / "file").write_text("a file where a folder should be")
    return pretrain(ctx, f"out={ctx.tmp / 'file' / 'run'}")


def world_larger_than_data(ctx: Ctx) -> str:
    cfg = tiny_cfg(ctx, f"data.sources=[{ctx.frames}]", "optim.batch_size=128")
    return raised(build_pretrain_loader, cfg, "train", 0, 128)


# ---- config faults raised as ConfigError naming the key (issue 15) -----------------------------------------


def data_shrank_since_checkpoint(ctx: Ctx) -> str:
    """A run checkpointed at step 5 of an 8-step epoch, resumed on a 16-frame source (2 steps per epoch)."""
    frames, few = ctx.frames, folder(ctx.tmp / "few")
    for p in sorted(frames.iterdir())[:16]:
        shutil.copy(p, few / p.name)
    Trainer(tiny_cfg(ctx, f"data.sources=[{frames}]", "method=mae", "max_steps=5")).fit()
    return raised(Trainer(tiny_cfg(ctx, f"data.sources=[{few}]", "method=mae")).fit)


def corruption(kind: str, eps: int) -> str:
    return raised(corrupt, torch.rand(1, 8, 8), torch.ones(1, 8, 8, dtype=torch.bool), kind, eps)


# ---- the table -------------------------------------------------------------------------------------------

CFG, DATA, BENCH, CKPT, TRAIN, CLI = "Config", "Data", "Benchmark tasks", "Checkpoints and models", "Training", "CLI"
EXIT2 = "CLI: exit 2, no traceback"

CASES = [
    Case(
        "unknown-config-key",
        CFG,
        "`usjepa pretrain ... optim.lrr=0.1`",
        f"ConfigError before any work; {EXIT2}",
        "exit 2: usjepa pretrain: error: unknown config key 'optim.lrr' (valid: ",
        lambda ctx: pretrain(ctx, "optim.lrr=0.1"),
    ),
    Case(
        "wrong-type",
        CFG,
        "`optim.batch_size=eight`",
        f"ConfigError naming the key; {EXIT2}",
        "ConfigError: optim.batch_size: expected an integer, got 'eight'",
        lambda ctx: raised(load_config, "tiny", ["optim.batch_size=eight"]),
    ),
    Case(
        "negative-lr",
        CFG,
        "`optim.lr=-0.001`",
        f"ConfigError naming the key; {EXIT2}",
        "ConfigError: optim.lr: must be > 0, got -0.001",
        lambda ctx: raised(load_config, "tiny", ["optim.lr=-0.001"]),
    ),
    Case(
        "override-without-value",
        CFG,
        "`optim.lr` (no `=`)",
        f"ConfigError; {EXIT2}",
        "ConfigError: override 'optim.lr' must look like key.sub=value",
        lambda ctx: raised(load_config, "tiny", ["optim.lr"]),
    ),
    Case(
        "missing-config-file",
        CFG,
        "`--config nope.yaml`",
        f"ConfigError; {EXIT2}",
        "ConfigError: config file not found: nope.yaml",
        lambda ctx: raised(load_config, "nope.yaml"),
    ),
    Case(
        "salt-without-teacher",
        CFG,
        "`method=salt` with no `teacher.source`",
        f"ConfigError; {EXIT2}",
        "ConfigError: teacher.source: method 'salt' needs a frozen teacher",
        lambda ctx: raised(load_config, "tiny", ["method=salt"]),
    ),
    Case(
        "cuda-without-gpu",
        CFG,
        "`device=cuda` on a machine without a CUDA GPU",
        f"ConfigError; {EXIT2}",
        "exit 2: usjepa pretrain: error: device: 'cuda' was requested but no CUDA GPU is available (use device=cpu or "
        "auto)",
        cuda_without_gpu,
    ),
    Case(
        "unwritable-run-dir",
        CFG,
        "`out=` below a regular file (a run directory that cannot be created)",
        f"ConfigError before training; {EXIT2}",
        "exit 2: usjepa pretrain: error: out: run directory {tmp}/file/run is not writable (Not a directory)",
        unwritable_run_dir,
    ),
    Case(
        "world-larger-than-data",
        CFG,
        "128 processes (`WORLD_SIZE=128`) on a 64-image source",
        f"DataError when the loader is built; {EXIT2}",
        "DataError: data.sources: the train split holds 64 item(s), fewer than the 128 process(es); every rank needs "
        "at least one",
        world_larger_than_data,
    ),
    Case(
        "missing-data-root",
        DATA,
        "`data.sources=[{tmp}/missing]`",
        f"DataError before training; {EXIT2}",
        "exit 2: usjepa pretrain: error: source '{tmp}/missing': {tmp}/missing not found (expected a folder, ",
        lambda ctx: pretrain(ctx, f"data.sources=[{ctx.tmp / 'missing'}]"),
    ),
    Case(
        "empty-folder",
        DATA,
        "`data.sources=[{tmp}/empty]`, an empty folder",
        f"DataError; {EXIT2}",
        "DataError: source(s) ['empty'] hold no readable items",
        lambda ctx: raised(open_sources, [str(folder(ctx.tmp / "empty"))]),
    ),
    Case(
        "unknown-source-option",
        DATA,
        "`data.sources=[{tmp}/frames?organn=liver]`",
        f"DataError; {EXIT2}",
        "DataError: source '{tmp}/frames?organn=liver': unknown option(s) ['organn'] (valid: name, organ, fps, "
        "max_frames)",
        lambda ctx: raised(open_source, f"{ctx.tmp / 'frames'}?organn=liver"),
    ),
    Case(
        "zero-byte-file",
        DATA,
        "a 0-byte `empty.png` in a source folder",
        "left out when the folder is listed, logged once; the other files train",
        "skipping {tmp}/frames/empty.png: {tmp}/frames/empty.png: empty file (0 bytes)",
        lambda ctx: listing_fault(ctx, "empty.png", b""),
    ),
    Case(
        "not-an-image",
        DATA,
        "`notes.txt` in a source folder",
        "left out when the folder is listed, logged once",
        "skipping {tmp}/frames/notes.txt: {tmp}/frames/notes.txt: not an image, DICOM or video file (expected one of ",
        lambda ctx: listing_fault(ctx, "notes.txt", b"scan notes"),
    ),
    Case(
        "corrupt-png",
        DATA,
        "a PNG cut in half among pretraining frames",
        "counted skip: replaced by the next item, counted each time, logged once",
        "item skipped (frames): {tmp}/frames/bad.png: corrupt or truncated image (image file is truncated)",
        lambda ctx: loader_skip(ctx, "bad.png", lambda p: truncate(png(p, noise(40, 40)))),
    ),
    Case(
        "truncated-dicom",
        DATA,
        "a real ultrasound DICOM (`US1_UNCR.dcm`) cut in half",
        "DataError naming the file (a counted skip in pretraining, a reported skip in ingest)",
        "DataError: {tmp}/us.dcm: cannot decode DICOM pixel data (",
        truncated_dicom,
    ),
    Case(
        "16-bit-png",
        DATA,
        "a 16-bit grayscale PNG",
        "accepted: min-max rescaled to 8 bits",
        "accepted: uint8 (40, 40), 0..255",
        lambda ctx: decoded(read_image(png(ctx.tmp / "16.png", np.arange(0, 64000, 40, np.uint16).reshape(40, 40)))),
    ),
    Case(
        "rgba-png",
        DATA,
        "an RGBA PNG",
        "accepted: alpha dropped, RGB kept",
        "accepted: uint8 (40, 40, 3), 0..255",
        lambda ctx: decoded(read_image(png(ctx.tmp / "rgba.png", noise(40, 40, 4), "RGBA"))),
    ),
    Case(
        "decompression-bomb",
        DATA,
        "a 300-byte PNG declaring 9000 x 8000 pixels",
        "DataError from the header, before any pixel is decoded",
        "DataError: {tmp}/bomb.png: image too large (9000x8000 pixels > 64000000); refusing a possible decompression "
        "bomb",
        lambda ctx: raised(read_image, bomb_png(ctx.tmp / "bomb.png")),
    ),
    Case(
        "nan-pixels",
        DATA,
        "a float TIFF with a NaN pixel",
        "DataError naming the file (a counted skip in pretraining)",
        "DataError: {tmp}/nan.tif: 1 NaN or infinite pixel(s); expected finite intensities",
        lambda ctx: raised(read_image, nan_tiff(ctx.tmp / "nan.tif")),
    ),
    Case(
        "all-black-frame",
        DATA,
        "an all-black frame among pretraining frames",
        "counted skip: replaced by the next item, counted each time, logged once (ingest: reported as `blank frame`)",
        "item skipped (frames): {tmp}/frames/black.png: blank frame (every pixel is 0); expected speckle inside the "
        "scan region",
        lambda ctx: loader_skip(ctx, "black.png", lambda p: png(p, np.zeros((40, 40), np.uint8))),
    ),
    Case(
        "missing-benchmark-root",
        BENCH,
        "a data root `{tmp}/missing` (bench `--data-root`) that does not exist",
        f"DataError; {EXIT2}",
        "DataError: {tmp}/missing: data root not found",
        lambda ctx: raised(find_dataset, ctx.tmp / "missing", "busbra"),
    ),
    Case(
        "json-missing-label",
        BENCH,
        "an UltraBench `train.json` whose entry 1 has no `label`",
        f"DataError naming the file and entry; {EXIT2}",
        "DataError: {tmp}/ub/train.json: entry 1 has no 'label' while other entries of the dataset have one",
        lambda ctx: raised(
            load_ultrabench, ultrabench(ctx, [("a.png", 0), ("b.png", None)], [("c.png", 1)], [("t.png", 0)])
        ),
    ),
    Case(
        "label-out-of-range",
        BENCH,
        "a test label 7 in a 2-class task",
        f"DataError naming the file and entry; {EXIT2}",
        "DataError: task 'ub': test.json entry 0: label 7 out of range (task has 2 classes, labels 0..1)",
        label_out_of_range,
    ),
    Case(
        "duplicate-across-splits",
        BENCH,
        "a test image with the same bytes as a training image",
        f"DataError naming both files; {EXIT2}",
        "DataError: task 'ub': train/test leak: test image {tmp}/ub/t.png has the same bytes as training image "
        "{tmp}/ub/a.png",
        leak_across_splits,
    ),
    Case(
        "teacher-width-mismatch",
        CKPT,
        "a ViT-S student (width 384) with a ViT-Tiny teacher (width 192)",
        "accepted: the predictor's output projection adapts to the teacher's width",
        "accepted: student width 384, predictor output width 192 = teacher width 192",
        teacher_width_adapter,
    ),
    Case(
        "patch-grid-mismatch",
        CKPT,
        "a teacher trained at 32 px (4 x 4 patches) for a 64 px student (8 x 8)",
        "accepted: the teacher sees the image at grid x patch px (its position embeddings resampled)",
        "accepted: teacher input 64 px, 8 x 8 patch grid = the student's",
        teacher_on_student_grid,
    ),
    Case(
        "teacher-grid-impossible",
        CKPT,
        "`teacher.source=pixels:8` (a fixed 8 x 8 map) for a 4 x 4 student grid",
        f"ConfigError when the method is built; {EXIT2}",
        "ConfigError: teacher.source: pixels:8 gives a 8x8 map at 112 px (stride 28), not the student's 4x4 grid; "
        "no input size gives that grid",
        lambda ctx: raised(build_method, load_config("tiny", ctx.tiny + ["method=salt", "teacher.source=pixels:8"])),
    ),
    Case(
        "missing-checkpoint",
        CKPT,
        "`usjepa export {tmp}/run` with no checkpoint in it",
        "CheckpointError; exit 2",
        "exit 2: usjepa export: error: {tmp}/run/checkpoints/best.pt: no 'best' checkpoint in run directory {tmp}/run",
        lambda ctx: cli("export", str(ctx.tmp / "run")),
    ),
    Case(
        "truncated-checkpoint",
        CKPT,
        "a checkpoint cut in half",
        f"CheckpointError; {EXIT2}",
        "CheckpointError: {tmp}/stage1/checkpoints/best.pt: cannot read a usjepa checkpoint: it is truncated or not a "
        "PyTorch file (",
        lambda ctx: raised(load_checkpoint, truncate(ctx.fixture("stage1_run") / "checkpoints" / "best.pt")),
    ),
    Case(
        "zero-byte-checkpoint",
        CKPT,
        "a 0-byte checkpoint",
        f"CheckpointError; {EXIT2}",
        "CheckpointError: {tmp}/last.pt: file is empty (0 bytes); expected a usjepa checkpoint",
        lambda ctx: raised(load_checkpoint, empty_file(ctx.tmp / "last.pt")),
    ),
    Case(
        "pickle-only-checkpoint",
        CKPT,
        "a checkpoint holding a pickled object (code runs on full unpickling)",
        f"refused without running it, with how to convert it to safetensors; {EXIT2}",
        "CheckpointError: {tmp}/evil.pt: refused: this file needs full unpickling, which can execute code (",
        pickle_checkpoint,
    ),
    Case(
        "full-disk",
        TRAIN,
        "the disk fills (ENOSPC) while a checkpoint is written",
        f"CheckpointError; the temporary file is removed and the previous checkpoint loads and resumes; {EXIT2}",
        "CheckpointError: {tmp}/run/checkpoints/last.pt: cannot write checkpoint (the disk is full); the previous "
        "checkpoint is kept",
        disk_full_keeps_previous_checkpoint,
    ),
    Case(
        "nan-loss",
        TRAIN,
        "a NaN/Inf loss or gradient on `max_bad_steps` (here 2) steps in a row",
        "each bad step skipped and counted; the K-th in a row stops the run; the last checkpoint holds the last good "
        f"weights; {EXIT2}",
        "TrainingStopped: stopping after 2 consecutive non-finite steps (max_bad_steps=2); the last good checkpoint is "
        "{tmp}/run/checkpoints/last.pt",
        nan_steps_are_skipped_then_stop,
    ),
    Case(
        "unknown-command",
        CLI,
        "`usjepa pretrian`",
        "argparse usage error; exit 2",
        "exit 2: usjepa: error: argument COMMAND: invalid choice: 'pretrian' (choose from ",
        lambda ctx: cli("pretrian"),
    ),
    # ---- config faults raised as ConfigError naming the key (issue 15) ----
    Case(
        "unknown-method",
        CFG,
        "`method=simclr`",
        f"ConfigError listing the registered methods; {EXIT2}",
        "ConfigError: method: expected one of ['ijepa', 'mae', 'salt', 'vpixel'], got 'simclr'",
        lambda ctx: raised(load_config, "tiny", ["method=simclr"]),
    ),
    Case(
        "image-not-multiple-of-patch",
        CFG,
        "`data.img_size=36` with 8-pixel patches",
        f"ConfigError before training; {EXIT2}",
        "ConfigError: data.img_size: 36 is not a multiple of the patch size 8 (model.patch_size, or the arch's own)",
        lambda ctx: raised(MaskCollator, tiny_cfg(ctx).mask, 36, 8),
    ),
    Case(
        "no-sources",
        CFG,
        "`data.sources=[]`",
        f"ConfigError before training; {EXIT2}",
        "ConfigError: data.sources: is empty; give at least one folder, manifest, DICOM, video or shard spec",
        lambda ctx: raised(open_sources, []),
    ),
    Case(
        "batch-smaller-than-world",
        CFG,
        "`optim.batch_size=8` on 16 processes",
        f"ConfigError when the loader is built; {EXIT2}",
        "ConfigError: optim.batch_size: 8 gives no sample per rank for 16 ranks x 1 accumulation steps",
        lambda ctx: raised(build_pretrain_loader, tiny_cfg(ctx, f"data.sources=[{ctx.frames}]"), "train", 0, 16),
    ),
    Case(
        "data-shrank-since-checkpoint",
        CFG,
        "a run resumed on fewer samples than its checkpoint was trained on",
        f"ConfigError naming the checkpoint, at the resumed epoch; {EXIT2}",
        "ConfigError: data.sources: the loader ended before epoch 0 was complete: the sources hold fewer samples "
        "than when {tmp}/run/checkpoints/last.pt was written; use a new out= directory",
        data_shrank_since_checkpoint,
    ),
    Case(
        "unknown-corruption",
        BENCH,
        "bench corruption `fog`",
        f"ConfigError; {EXIT2}",
        "ConfigError: corruptions: unknown corruption 'fog' (expected blur, contrast or speckle)",
        lambda ctx: corruption("fog", 1),
    ),
    Case(
        "unknown-severity",
        BENCH,
        "bench severity 5",
        f"ConfigError; {EXIT2}",
        "ConfigError: severities: 5 is not a severity (expected one of [0, 1, 2, 3])",
        lambda ctx: corruption("blur", 5),
    ),
    # ---- end of issue 15's rows ----
]


# ---- issue 23: bad inputs found by a red-team (simulate, ingest, pretrain, bench, export) -----------------------
# Each row below was a traceback or a silent wrong result before issue 23.


def yaml_file(ctx: Ctx, name: str, text: str) -> Path:
    (ctx.tmp / name).write_text(text)
    return ctx.tmp / name


def file_in_the_way(ctx: Ctx) -> Path:
    (ctx.tmp / "file").write_text("a file where a folder should be")
    return ctx.tmp / "file"


def folder_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def resumed_with(ctx: Ctx, *overrides: str) -> str:
    """Restart the stage-1 V-Pixel run (its last.pt) with other settings: refused, and no file of the run changes."""
    run = ctx.fixture("stage1_run")
    shutil.copy(run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt")
    save_config(config_from_dict(load_checkpoint(run / "checkpoints" / "last.pt")["config"]), run / "config.yaml")
    before = folder_hashes(run)
    msg = cli(
        "pretrain",
        "--config",
        "tiny",
        *ctx.tiny,
        "method=vpixel",
        f"out={run}",
        f"data.sources=[{ctx.frames}]",
        "data.num_workers=0",
        "optim.batch_size=8",
        *overrides,
    )
    assert folder_hashes(run) == before
    return msg


GOOD_SPLITS = {
    "train": [("a.png", 0), ("b.png", 1)],
    "validation": [("c.png", 0), ("d.png", 1)],
    "test": [("t.png", 0), ("u.png", 1)],
}


def bench(ctx: Ctx, *argv: str, encoder: str = "pixels:2", task: Path | None = None) -> str:
    task = task or ultrabench(ctx, **GOOD_SPLITS)
    return cli(
        "bench",
        "--encoders",
        encoder,
        "--tasks",
        str(task),
        "--seeds",
        "1",
        "--fractions",
        "1.0",
        "--out",
        str(ctx.tmp / "bench"),
        *argv,
    )


def incomplete_task_marked(ctx: Ctx) -> str:
    """A test split without class 1, benchmarked with --allow-incomplete-tasks: scored, and every row, the
    leaderboard and the report say so."""
    task = ultrabench(ctx, **TWO_CLASSES, test=[("t.png", 0), ("u.png", 0)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench(ctx, "--allow-incomplete-tasks", task=task).startswith("exit 0")
    results = json.loads((ctx.tmp / "bench" / "results.json").read_text())
    assert results["rows"] and all("lacks class(es) [1]" in r["task_warning"] for r in results["rows"])
    board = (ctx.tmp / "bench" / "leaderboard.md").read_text()
    assert "| ub‡ |" in board and "‡ task 'ub': the test split lacks class(es) [1]" in board
    assert "the test split lacks class(es) [1]" in (ctx.tmp / "bench" / "report.html").read_text()
    return "accepted: " + out.getvalue().strip().splitlines()[0]


def small_simulation_refused(ctx: Ctx) -> str:
    """`usjepa simulate --n-per-task 20` writes tasks whose splits lack classes; bench refuses them."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "simulate",
                    "--out",
                    str(ctx.tmp / "sim"),
                    "--img-size",
                    "16",
                    "--n-per-task",
                    "20",
                    "--corpus",
                    "0",
                    "--workers",
                    "1",
                    "--tasks",
                    "lesion",
                ]
            )
            == 0
        )
    return bench(ctx, task=ctx.tmp / "sim" / "synthus_lesion")


def healed_cache(ctx: Ctx) -> str:
    """Every cache entry cut in half after a first run: the second run recomputes each (said once per entry) and
    gives the same results."""
    task, caplog = ultrabench(ctx, **GOOD_SPLITS), ctx.fixture("caplog")
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench(ctx, task=task).startswith("exit 0")
        first = json.loads((ctx.tmp / "bench" / "results.json").read_text())["rows"]
        entries = [p for p in (ctx.tmp / "bench" / "cache").rglob("*") if p.is_file()]
        assert {p.suffix for p in entries} == {".json", ".safetensors"}
        for p in entries:
            truncate(p)
        assert bench(ctx, task=task).startswith("exit 0")
    again = json.loads((ctx.tmp / "bench" / "results.json").read_text())["rows"]
    assert [r["macro_f1"] for r in again] == [r["macro_f1"] for r in first]
    said = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(said) == len(entries) == len({m.split()[2] for m in said})
    return f"accepted: {len(entries)} unreadable cache entries recomputed, each said once; the same results"


def nan_export(ctx: Ctx) -> Path:
    from usjepa.export import export_run

    run = ctx.fixture("stage1_run")
    out = export_run(run)
    sd = load_file(str(out / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in sd.items()}, str(out / "model.safetensors"))
    return out


def nan_checkpoint(ctx: Ctx) -> Path:
    run = ctx.fixture("stage1_run")
    path = run / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(path)
    ckpt["model"] = {k: v.float().fill_(float("nan")) for k, v in ckpt["model"].items()}
    torch.save(ckpt, path)
    return run


def multipage_tiff(ctx: Ctx) -> str:
    folder(ctx.tmp / "cine")
    pages = [Image.fromarray(np.full((16, 16), 40 * i, np.uint8)) for i in range(5)]
    pages[0].save(ctx.tmp / "cine" / "cine.tif", save_all=True, append_images=pages[1:])
    src = open_source(str(ctx.tmp / "cine"))
    means = [int(src.load(i).image.mean()) for i in range(len(src))]
    assert means == [0, 40, 80, 120, 160] and len({src.group(i) for i in range(len(src))}) == 1
    return f"accepted: {len(src)} frames of one clip from a {len(pages)}-page TIFF"


def source_options_on_cli(ctx: Ctx) -> str:
    spec = f"{ctx.frames}?organ=liver&fps=3&name=abdomen"
    cfg = tiny_cfg(ctx, f"data.sources=[{spec}, {ctx.frames}]")
    (src, _) = open_sources(cfg.data.sources)
    assert cfg.data.sources == [spec, str(ctx.frames)]
    return f"accepted: source '{src.name}', organ {src.opts.organ}, fps {src.opts.fps}"


def source_options_in_yaml(ctx: Ctx) -> str:
    path = yaml_file(ctx, "run.yaml", f"base: tiny\ndata:\n  sources:\n    - {ctx.frames}?organ=liver\n")
    (src,) = open_sources(load_config(path, ["method=vpixel"]).data.sources)
    return f"accepted: organ {src.opts.organ}"


def dicom_without_pixels(ctx: Ctx) -> Path:
    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    for k in ("PixelData", "Rows", "Columns"):
        delattr(ds, k)
    ds.save_as(ctx.tmp / "nopix.dcm")
    return ctx.tmp / "nopix.dcm"


def one_group_task(ctx: Ctx) -> Path:
    root = folder(ctx.tmp / "og")
    entries = []
    for i in range(6):
        png(root / f"{i}.png", noise(16, 16) // (i + 1))
        entries.append({"image": f"{i}.png", "label": i % 2, "patient": "p0"})
    (root / "train_val.json").write_text(json.dumps(entries))
    (root / "test.json").write_text(json.dumps([{"image": "0.png", "label": 0}]))
    return root


def sim(ctx: Ctx, *argv: str) -> str:
    return cli("simulate", "--out", str(ctx.tmp / "sim"), "--img-size", "16", "--corpus", "0", "--workers", "1", *argv)


def ingest(ctx: Ctx, *argv: str, src: str | None = None) -> str:
    return cli("ingest", src or str(ctx.frames), "--out", str(ctx.tmp / "shards"), *argv)


R23 = "issue 23 red-team: "  # the behaviour column says what the input did before
TB, SILENT = "was a traceback", "was accepted silently"
RANGE_ROWS = [  # (id, override, message): the key's allowed range, checked when the config is built
    ("ctx-scale-above-1", "mask.ctx_scale=[1.5,2]", "mask.ctx_scale: must lie in (0, 1] (each value), got [1.5, 2.0]"),
    (
        "tgt-scale-above-1",
        "mask.tgt_scale=[0.5,1.5]",
        "mask.tgt_scale: must lie in (0, 1] (each value), got [0.5, 1.5]",
    ),
    (
        "crop-scale-zero",
        "augment.crop_scale=[0,0]",
        "augment.crop_scale: must lie in (0, 1] (each value), got [0.0, 0.0]",
    ),
    (
        "crop-scale-reversed",
        "augment.crop_scale=[1.0,0.5]",
        "augment.crop_scale: must be [low, high] with low <= high, got [1.0, 0.5]",
    ),
    ("flip-probability-2", "augment.hflip=2", "augment.hflip: must lie in [0, 1], got 2.0"),
    (
        "blur-sigma-negative",
        "augment.blur_sigma=[-1,1]",
        "augment.blur_sigma: must lie in (0, 20] (each value), got [-1.0, 1.0]",
    ),
    ("contrast-negative", "augment.contrast_range=[-1,1]", "augment.contrast_range: must lie in (0, 10] (each value)"),
    ("betas-above-1", "optim.betas=[1.5,0.9]", "optim.betas: must lie in [0, 1) (each value), got [1.5, 0.9]"),
    ("ema-above-1", "optim.ema=[2,1]", "optim.ema: must lie in [0, 1] (each value), got [2.0, 1.0]"),
    ("negative-workers", "data.num_workers=-1", "data.num_workers: must lie in [0, 256], got -1"),
    ("drop-path-2", "model.drop_path=2", "model.drop_path: must lie in [0, 1), got 2.0"),
    ("log-every-0", "log_every=0", "log_every: must be >= 1, got 0"),
    ("negative-ckpt-every", "ckpt_every=-1", "ckpt_every: must be >= 0, got -1"),
    ("negative-start-lr", "optim.start_lr=-1", "optim.start_lr: must be >= 0, got -1.0"),
    ("negative-final-weight-decay", "optim.final_weight_decay=-1", "optim.final_weight_decay: must be >= 0, got -1.0"),
    ("min-keep-0", "mask.min_keep=0", "mask.min_keep: must be >= 1, got 0"),
    ("negative-steps-per-epoch", "data.steps_per_epoch=-1", "data.steps_per_epoch: must be >= 0, got -1"),
    ("negative-patch-size", "model.patch_size=-1", "model.patch_size: must lie in [0, 1024], got -1"),
    ("negative-depth", "model.depth=-2", "model.depth: must lie in [0, 256], got -2"),
    ("max-tries-0", "mask.max_tries=0", "mask.max_tries: must lie in [1, 100000], got 0"),
    ("pred-depth-0", "model.pred_depth=0", "model.pred_depth: must lie in [1, 256], got 0"),
    ("dec-dim-0", "model.dec_dim=0", "model.dec_dim: must lie in [1, 65536], got 0"),
    ("negative-seed", "seed=-1", "seed: must lie in [0, 4294967295], got -1"),
    ("infinite-lr", "optim.lr=.inf", "optim.lr: must be > 0, got inf"),
    ("nan-clip-grad", "optim.clip_grad=.nan", "optim.clip_grad: must be >= 0, got nan"),
    ("negative-max-steps", "max_steps=-1", "max_steps: must be >= 0, got -1"),
    ("zero-epochs", "optim.epochs=0", "optim.epochs: must be >= 1, got 0"),
    ("empty-out", "out=", "out: must name the run directory, got ''"),
    ("pred-heads-do-not-divide", "model.pred_heads=5", "model.pred_dim: 48 is not divisible by model.pred_heads=5"),
    (
        "min-keep-above-patches",
        "mask.min_keep=1000",
        "mask.min_keep: 1000 exceeds the 16 patches of a 32-px image with 8-px patches",
    ),
    (
        "img-size-not-multiple-of-patch",
        "data.img_size=36",
        "data.img_size: 36 is not a multiple of the patch size 8 (model.patch_size, or the arch's own)",
    ),
]
RANGE_TRACEBACKS = {
    "betas-above-1",
    "negative-workers",
    "drop-path-2",
    "log-every-0",
    "negative-steps-per-epoch",
    "max-tries-0",
    "dec-dim-0",
    "negative-seed",
    "pred-heads-do-not-divide",
    "img-size-not-multiple-of-patch",
}
ROBUST_CASES = [
    Case(
        f"range-{rid}",
        CFG,
        f"`{override}`",
        f"{R23}{TB if rid in RANGE_TRACEBACKS else SILENT}; "
        f"now ConfigError before any work, naming the key and its range; {EXIT2}",
        f"exit 2: usjepa pretrain: error: {msg}",
        lambda ctx, o=override: pretrain(ctx, o),
    )
    for rid, override, msg in RANGE_ROWS
] + [
    Case(
        "duplicated-yaml-key",
        CFG,
        "a config file giving `optim.lr` twice",
        f"{R23}{SILENT} (the last won); {EXIT2}",
        "ConfigError: {tmp}/dup.yaml: not valid YAML (duplicated key 'lr' (YAML would keep only the last value) at "
        "line 4",
        lambda ctx: raised(load_config, yaml_file(ctx, "dup.yaml", "base: tiny\noptim:\n  lr: 1.0e-3\n  lr: 1.0e-1\n")),
    ),
    Case(
        "base-cycle",
        CFG,
        "`a.yaml` with `base: b.yaml`, `b.yaml` with `base: a.yaml`",
        f"{R23}{TB} (RecursionError); {EXIT2}",
        "ConfigError: {tmp}/a.yaml: 'base' cycle ({tmp}/a.yaml -> {tmp}/b.yaml -> {tmp}/a.yaml)",
        lambda ctx: (
            yaml_file(ctx, "b.yaml", "base: a.yaml\n")
            and raised(load_config, yaml_file(ctx, "a.yaml", "base: b.yaml\n"))
        ),
    ),
    Case(
        "base-not-a-string",
        CFG,
        "`base: 5`",
        f"{R23}{TB}; {EXIT2}",
        "ConfigError: {tmp}/b.yaml: 'base' must be the name or path of another config, got 5",
        lambda ctx: raised(load_config, yaml_file(ctx, "b.yaml", "base: 5\n")),
    ),
    Case(
        "base-a-list",
        CFG,
        "`base: [tiny]`",
        f"{R23}{TB}; {EXIT2}",
        "ConfigError: {tmp}/b.yaml: 'base' must be the name or path of another config, got ['tiny']",
        lambda ctx: raised(load_config, yaml_file(ctx, "b.yaml", "base: [tiny]\n")),
    ),
    Case(
        "binary-config-file",
        CFG,
        "a config file that is not UTF-8 text",
        f"{R23}{TB} (UnicodeDecodeError); {EXIT2}",
        "ConfigError: {tmp}/bin.yaml: cannot read config file ('utf-8' codec can't decode byte 0xff",
        lambda ctx: (ctx.tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00x") and raised(load_config, ctx.tmp / "bin.yaml"),
    ),
    Case(
        "override-bad-yaml",
        CFG,
        "`optim.betas=[0.9,` (an unclosed list)",
        f"{R23}{TB} (PyYAML); {EXIT2}",
        "ConfigError: override 'optim.betas=[0.9,': not a valid value (",
        lambda ctx: raised(load_config, "tiny", ["optim.betas=[0.9,"]),
    ),
    Case(
        "source-options-on-cli",
        CFG,
        '`"data.sources=[DIR?organ=liver&fps=3&name=abdomen, DIR]"` on the command line',
        f"{R23}{TB} (PyYAML read the `?`); now list-of-string keys split at commas, without YAML",
        "accepted: source 'abdomen', organ liver, fps 3.0",
        source_options_on_cli,
    ),
    Case(
        "source-options-in-yaml",
        CFG,
        "a config file listing `- DIR?organ=liver` (block style, YAML-safe)",
        "accepted (in a flow list `[...]` in a file, quote the spec)",
        "accepted: organ liver",
        source_options_in_yaml,
    ),
    Case(
        "string-key-kept-verbatim",
        CFG,
        "`out=2024` (a run folder named by a number)",
        f"{R23}was an error (YAML read an integer); string keys now take the text as given",
        "accepted: out '2024'",
        lambda ctx: f"accepted: out {load_config('tiny', ['method=vpixel', 'out=2024']).out!r}",
    ),
    Case(
        "resume-other-method",
        TRAIN,
        "a V-Pixel run restarted with `method=mae`",
        f"{R23}{SILENT} (trained on and exported an 'mae' card); now refused, no file of the run folder changes; "
        f"{EXIT2}",
        "exit 2: usjepa pretrain: error: {tmp}/stage1/checkpoints/last.pt: cannot resume this run with another method "
        "or "
        "model (method: 'vpixel' -> 'mae'); nothing was changed: use a new out= directory",
        lambda ctx: resumed_with(ctx, "method=mae"),
    ),
    Case(
        "resume-refused-keeps-config",
        TRAIN,
        "a V-Pixel run restarted with `method=ijepa`",
        f"{R23}refused, but config.yaml was already overwritten; now nothing changes; {EXIT2}",
        "exit 2: usjepa pretrain: error: {tmp}/stage1/checkpoints/last.pt: cannot resume this run with another method "
        "or "
        "model (method: 'vpixel' -> 'ijepa')",
        lambda ctx: resumed_with(ctx, "method=ijepa"),
    ),
    Case(
        "resume-other-model",
        TRAIN,
        "a run restarted with `model.depth=3`",
        f"refused, no file changes; {EXIT2}",
        "exit 2: usjepa pretrain: error: {tmp}/stage1/checkpoints/last.pt: cannot resume this run with another method "
        "or "
        "model (model.depth: 2 -> 3)",
        lambda ctx: resumed_with(ctx, "model.depth=3"),
    ),
    Case(
        "resume-other-img-size",
        TRAIN,
        "a 32-px run restarted with `data.img_size=64`",
        f"{R23}{TB} (a state-dict size mismatch); now refused, no file changes; {EXIT2}",
        "exit 2: usjepa pretrain: error: {tmp}/stage1/checkpoints/last.pt: cannot resume this run with another method "
        "or "
        "model (data.img_size: 32 -> 64)",
        lambda ctx: resumed_with(ctx, "data.img_size=64"),
    ),
    Case(
        "resume-weights-only-checkpoint",
        TRAIN,
        "a `last.pt` holding weights but no optimizer state (as a converted or hand-made checkpoint)",
        f"{R23}{TB} (KeyError 'optimizer'); now refused, no file changes; {EXIT2}",
        "exit 2: usjepa pretrain: error: {tmp}/stage1/checkpoints/last.pt: holds weights but not the training state "
        "['optimizer', 'bad_steps', 'best_val', 'rng'] a resume needs",
        lambda ctx: resumed_with(ctx),
    ),
    Case(
        "torn-ingest-state",
        CLI,
        "`usjepa ingest` resumed over a truncated `ingest_state.json`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa ingest: error: {tmp}/shards/ingest_state.json: unreadable ingest state (JSONDecodeError: ",
        lambda ctx: (
            folder(ctx.tmp / "shards")
            and (ctx.tmp / "shards" / "ingest_state.json").write_text('{"args": {"sou')
            and ingest(ctx, "--size", "32")
        ),
    ),
    Case(
        "verify-empty-results",
        BENCH,
        "`usjepa bench --verify` of a results.json recording no encoders or tasks",
        f'{R23}{SILENT} ("all inputs unchanged", exit 0); {EXIT2}',
        "exit 2: usjepa bench: error: {tmp}/r.json: records no encoders or no tasks; nothing to verify",
        lambda ctx: (
            (ctx.tmp / "r.json").write_text('{"config": {}, "encoders": {}, "tasks": {}}')
            and cli("bench", "--verify", str(ctx.tmp / "r.json"))
        ),
    ),
    Case(
        "teacher-is-csv",
        CKPT,
        "`teacher.source=` a CSV file",
        f"{R23}{TB} (IndexError in torch.load); {EXIT2}",
        "CheckpointError: teacher.source: {tmp}/t.csv: this is a text file (CSV, JSON or similar), not a usjepa "
        "checkpoint",
        lambda ctx: (
            (ctx.tmp / "t.csv").write_text("a,b\n1,2\n")
            and raised(build_method, tiny_cfg(ctx, "method=salt", f"teacher.source={ctx.tmp / 't.csv'}"))
        ),
    ),
    Case(
        "teacher-is-png",
        CKPT,
        "`teacher.source=` a PNG image",
        f'{R23}named the wrong problem ("needs full unpickling"); {EXIT2}',
        "CheckpointError: teacher.source: {tmp}/t.png: this is a PNG image, not a usjepa checkpoint",
        lambda ctx: raised(
            build_method, tiny_cfg(ctx, "method=salt", f"teacher.source={png(ctx.tmp / 't.png', noise(8, 8))}")
        ),
    ),
    Case(
        "teacher-is-data-folder",
        CKPT,
        "`teacher.source=` an image folder",
        f'{R23}said "not found" of a folder that exists; {EXIT2}',
        "CheckpointError: teacher.source: {tmp}/frames: is a folder without card.json or checkpoints/",
        lambda ctx: raised(build_method, tiny_cfg(ctx, "method=salt", f"teacher.source={ctx.frames}")),
    ),
    Case(
        "export-nan-weights",
        CKPT,
        "`usjepa export` of a run whose weights are NaN",
        f"{R23}{SILENT} (exported NaN weights); {EXIT2}",
        "exit 2: usjepa export: error: {tmp}/stage1/checkpoints/best.pt: 30 weight tensor(s) hold NaN or infinite "
        "values",
        lambda ctx: cli("export", str(nan_checkpoint(ctx))),
    ),
    Case(
        "bench-nan-weights",
        CKPT,
        "`usjepa bench` of an export whose weights are NaN",
        f"{R23}{TB} (an SVD error from the effective rank); {EXIT2}",
        "exit 2: usjepa bench: error: {tmp}/stage1/export/model.safetensors: 30 weight tensor(s) hold NaN or infinite "
        "values",
        lambda ctx: bench(ctx, encoder=f"usjepa:{nan_export(ctx)}"),
    ),
    Case(
        "checkpoint-without-config",
        CKPT,
        "a usjepa-format checkpoint without its `config`",
        f"{R23}{TB} (KeyError); {EXIT2}",
        "CheckpointError: {tmp}/c.pt: usjepa checkpoint without 'config'; it was not written by usjepa pretrain",
        lambda ctx: (
            torch.save({"format": "usjepa-checkpoint/1", "model": {}}, ctx.tmp / "c.pt")
            or raised(load_checkpoint, ctx.tmp / "c.pt")
        ),
    ),
    Case(
        "export-out-is-file",
        CLI,
        "`usjepa export RUN --out FILE`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa export: error: --out: cannot use {tmp}/file as an output folder (File exists)",
        lambda ctx: cli("export", str(ctx.fixture("stage1_run")), "--out", str(file_in_the_way(ctx))),
    ),
    Case(
        "simulate-out-is-file",
        CLI,
        "`usjepa simulate --out FILE`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa simulate: error: --out: cannot use {tmp}/file as an output folder (File exists)",
        lambda ctx: cli("simulate", "--out", str(file_in_the_way(ctx))),
    ),
    Case(
        "ingest-out-is-file",
        CLI,
        "`usjepa ingest SRC --out FILE`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa ingest: error: --out: cannot use {tmp}/file as an output folder (File exists)",
        lambda ctx: cli("ingest", str(ctx.frames), "--out", str(file_in_the_way(ctx))),
    ),
    Case(
        "demo-out-is-file",
        CLI,
        "`usjepa demo --out FILE`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa demo: error: --out: cannot use {tmp}/file as an output folder (File exists)",
        lambda ctx: cli("demo", "--out", str(file_in_the_way(ctx))),
    ),
    Case(
        "bench-out-is-file",
        CLI,
        "`usjepa bench ... --out FILE`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa bench: error: --out: cannot use {tmp}/file as an output folder (File exists)",
        lambda ctx: bench(ctx, "--out", str(file_in_the_way(ctx))),
    ),
    Case(
        "bench-cache-is-file",
        CLI,
        "`usjepa bench ... --cache FILE`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa bench: error: --cache: cannot use {tmp}/file as an output folder (File exists)",
        lambda ctx: bench(ctx, "--cache", str(file_in_the_way(ctx))),
    ),
    Case(
        "simulate-zero-images",
        CLI,
        "`usjepa simulate --n-per-task 0`",
        f"{R23}{SILENT} (wrote 0 images, exit 0); {EXIT2}",
        "exit 2: usjepa simulate: error: --n-per-task must be >= 1, got 0",
        lambda ctx: sim(ctx, "--n-per-task", "0"),
    ),
    Case(
        "simulate-negative-corpus",
        CLI,
        "`usjepa simulate --corpus -1`",
        f"{R23}{SILENT}; {EXIT2}",
        "exit 2: usjepa simulate: error: --corpus must be >= 0, got -1",
        lambda ctx: sim(ctx, "--corpus", "-1"),
    ),
    Case(
        "simulate-negative-workers",
        CLI,
        "`usjepa simulate --workers -2`",
        f"{R23}{SILENT}; {EXIT2}",
        "exit 2: usjepa simulate: error: --workers must be >= 0, got -2",
        lambda ctx: sim(ctx, "--workers", "-2"),
    ),
    Case(
        "ingest-negative-size",
        CLI,
        "`usjepa ingest SRC --size -5`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa ingest: error: --size must lie in [16, 8192], got -5",
        lambda ctx: ingest(ctx, "--size", "-5"),
    ),
    Case(
        "ingest-size-0",
        CLI,
        "`usjepa ingest SRC --size 0`",
        f"{R23}{SILENT}; {EXIT2}",
        "exit 2: usjepa ingest: error: --size must lie in [16, 8192], got 0",
        lambda ctx: ingest(ctx, "--size", "0"),
    ),
    Case(
        "ingest-shard-size-0",
        CLI,
        "`usjepa ingest SRC --shard-size 0`",
        f"{R23}{SILENT} (one-sample shards); {EXIT2}",
        "exit 2: usjepa ingest: error: --shard-size must lie in [1, 10000000], got 0",
        lambda ctx: ingest(ctx, "--shard-size", "0"),
    ),
    Case(
        "ingest-dedup-above-64",
        CLI,
        "`usjepa ingest SRC --dedup 65` (a perceptual hash has 64 bits)",
        f"{R23}{SILENT}; {EXIT2}",
        "exit 2: usjepa ingest: error: --dedup must lie in [0, 64], got 65",
        lambda ctx: ingest(ctx, "--dedup", "65"),
    ),
    Case(
        "ingest-empty-folder",
        CLI,
        "`usjepa ingest EMPTY_FOLDER`",
        f"{R23}{SILENT} (0 shards, exit 0); {EXIT2}",
        "exit 2: usjepa ingest: error: source '{tmp}/empty': holds no images, DICOMs or videos",
        lambda ctx: ingest(ctx, src=str(folder(ctx.tmp / "empty"))),
    ),
    Case(
        "source-fps-negative",
        DATA,
        "`SRC?fps=-3`",
        f"{R23}{SILENT}; {EXIT2}",
        "DataError: source '{tmp}/frames?fps=-3': fps must be a number > 0 and max_frames an integer >= 1",
        lambda ctx: raised(open_source, f"{ctx.frames}?fps=-3"),
    ),
    Case(
        "source-max-frames-0",
        DATA,
        "`SRC?max_frames=0`",
        f"{R23}{SILENT}; {EXIT2}",
        "DataError: source '{tmp}/frames?max_frames=0': fps must be a number > 0 and max_frames an integer >= 1",
        lambda ctx: raised(open_source, f"{ctx.frames}?max_frames=0"),
    ),
    Case(
        "multipage-tiff-cine",
        DATA,
        "a 5-page TIFF (a cine)",
        f"{R23}cut to its first frame without notice; now a clip "
        "of frames like a DICOM or video cine (sampled by fps / max_frames)",
        "accepted: 5 frames of one clip from a 5-page TIFF",
        multipage_tiff,
    ),
    Case(
        "lone-dicom-without-pixels",
        DATA,
        "`usjepa pretrain ... data.sources=[nopix.dcm]`, a DICOM without pixel data",
        f"{R23}said the source holds no items, without the cause; {EXIT2}",
        "exit 2: usjepa pretrain: error: source(s) ['nopix'] hold no readable items ({tmp}/nopix.dcm: DICOM without "
        "image pixels (no Rows attribute))",
        lambda ctx: pretrain(ctx, f"data.sources=[{dicom_without_pixels(ctx)}]"),
    ),
    Case(
        "unknown-source-option-cli",
        DATA,
        '`usjepa pretrain ... "data.sources=[DIR?organn=liver]"`',
        f"{R23}a PyYAML traceback (the row above calls open_source, never the command line); {EXIT2}",
        "exit 2: usjepa pretrain: error: source '{tmp}/frames?organn=liver': unknown option(s) ['organn'] (valid: ",
        lambda ctx: pretrain(ctx, f"data.sources=[{ctx.frames}?organn=liver]"),
    ),
    Case(
        "task-lacks-class",
        BENCH,
        "a task whose test split holds only class 0 of 2",
        f"{R23}{SILENT} (scored 100.0 ± 0.0); now DataError naming the task and the counts; {EXIT2}",
        "exit 2: usjepa bench: error: task 'ub': the test split lacks class(es) [1] (images per class: "
        "{'train': [1, 1], "
        "'val': [1, 1], 'test': [2, 0]}); its macro-F1 would mislead. Give it more images per class",
        lambda ctx: bench(ctx, task=ultrabench(ctx, **TWO_CLASSES, test=[("t.png", 0), ("u.png", 0)])),
    ),
    Case(
        "one-class-task",
        BENCH,
        "a task whose every label is 0",
        f"{R23}{SILENT} (scored 100.0 ± 0.0); {EXIT2}",
        "DataError: task 'ub': only one class (label 0) in its training split; a classification task needs at least 2",
        lambda ctx: raised(load_task, str(ultrabench(ctx, [("a.png", 0)], [("c.png", 0)], [("t.png", 0)]))),
    ),
    Case(
        "small-simulation",
        BENCH,
        "`usjepa simulate --n-per-task 20`, then `usjepa bench` on its lesion task",
        f"{R23}{SILENT}; {EXIT2}",
        "exit 2: usjepa bench: error: task 'synthus_lesion': the ",
        small_simulation_refused,
    ),
    Case(
        "incomplete-task-allowed",
        BENCH,
        "the same task with `--allow-incomplete-tasks`",
        "scored; every row carries `task_warning`, the leaderboard and report mark the task with ‡",
        "accepted: warning: task 'ub': the test split lacks class(es) [1]",
        incomplete_task_marked,
    ),
    Case(
        "empty-test-split",
        BENCH,
        "an empty `test.json` (`[]`)",
        f"{R23}{TB} (torch.cat of nothing); {EXIT2}",
        "DataError: task 'ub': test.json in {tmp}/ub hold(s) no entries",
        lambda ctx: raised(load_task, str(ultrabench(ctx, **TWO_CLASSES, test=[]))),
    ),
    Case(
        "too-few-groups",
        BENCH,
        "a `train_val.json` whose images all belong to one patient",
        f"{R23}did not name the task; {EXIT2}",
        "DataError: task 'og': train_val.json: too few groups (1) to hold out a validation split",
        lambda ctx: raised(load_task, str(one_group_task(ctx))),
    ),
    Case(
        "unreadable-cache-entry",
        BENCH,
        "every feature and result cache entry cut in half",
        f"{R23}{TB} (JSONDecodeError); now a miss: recomputed, rewritten, said once per entry, same results",
        "accepted: 5 unreadable cache entries recomputed, each said once; the same results",
        healed_cache,
    ),
    Case(
        "lrs-negative",
        BENCH,
        "`usjepa bench --lrs -1`",
        f"{R23}{SILENT} (a probe trained by gradient ascent); {EXIT2}",
        "exit 2: usjepa bench: error: --lrs: probe learning rates must be finite and > 0, got [-1.0]",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--lrs", "-1"),
    ),
    Case(
        "lrs-zero",
        BENCH,
        "`usjepa bench --lrs 0`",
        f"{R23}{SILENT} (a probe that never trained); {EXIT2}",
        "exit 2: usjepa bench: error: --lrs: probe learning rates must be finite and > 0, got [0.0]",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--lrs", "0"),
    ),
    Case(
        "lrs-nan",
        BENCH,
        "`usjepa bench --lrs nan`",
        f"{R23}{SILENT}; {EXIT2}",
        "exit 2: usjepa bench: error: --lrs: probe learning rates must be finite and > 0, got [nan]",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--lrs", "nan"),
    ),
    Case(
        "lrs-not-a-number",
        BENCH,
        "`usjepa bench --lrs abc`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa bench: error: --lrs: 'abc' is not a number (expected a comma-separated list, e.g. 0.1,0.5,1.0)",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--lrs", "abc"),
    ),
    Case(
        "fractions-not-a-number",
        BENCH,
        "`usjepa bench --fractions 0.5,abc`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa bench: error: --fractions: 'abc' is not a number",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--fractions", "0.5,abc"),
    ),
    Case(
        "fractions-empty",
        BENCH,
        '`usjepa bench --fractions ""`',
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa bench: error: --fractions: '' is not a number",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--fractions", ""),
    ),
    Case(
        "bench-negative-workers",
        BENCH,
        "`usjepa bench --workers -1`",
        f"{R23}{SILENT} (with cached features); {EXIT2}",
        "exit 2: usjepa bench: error: --workers must be >= 0, got -1",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--workers", "-1"),
    ),
    Case(
        "finetune-zero-epochs",
        BENCH,
        "`usjepa bench --protocol finetune --finetune-epochs 0`",
        f"{R23}{TB}; {EXIT2}",
        "exit 2: usjepa bench: error: --finetune-epochs must be >= 1, got 0",
        lambda ctx: cli("bench", "--encoders", "pixels:2", "--protocol", "finetune", "--finetune-epochs", "0"),
    ),
]
CASES += ROBUST_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, request):
    ctx = Ctx(request)
    seen = case.trigger(ctx)
    assert seen.startswith(case.message.replace("{tmp}", str(ctx.tmp))), seen


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    out = [
        "# Bad inputs",
        "",
        "What usjepa does with each bad input, and the message a user sees. Generated from "
        "`tests/test_bad_inputs.py` (`python tests/test_bad_inputs.py` rewrites it); each row is one test there.",
        "",
        "Messages are stable prefixes. `ErrorType: ...` is raised by the library; the `usjepa` command prints "
        "`usjepa COMMAND: error: ...` for it and exits 2. `exit N: ...` is the command's exit code and last "
        "stderr line. `{tmp}` stands for the folder holding the input.",
        "",
    ]
    for area in dict.fromkeys(c.area for c in CASES):
        out += [f"## {area}", "", "| id | input | behaviour | message |", "|---|---|---|---|"]
        out += [
            f"| {c.id} | {cell(c.input)} | {cell(c.behaviour)} | `{cell(c.message)}` |" for c in CASES if c.area == area
        ]
        out.append("")
    return "\n".join(out)


def test_doc_matches_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert DOC.read_text() == render(), "docs/bad_inputs.md is stale: run python tests/test_bad_inputs.py"


def test_every_torch_load_is_weights_only():
    """Acceptance 5: every line of src/ with ``torch.load(`` is a call with weights_only=True, or lies inside a
    string (a docstring naming the call)."""
    calls = 0
    for p in SRC.rglob("*.py"):
        text = p.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                only = {k.arg: k.value for k in node.keywords}.get("weights_only")
                assert isinstance(only, ast.Constant) and only.value is True, f"{p}:{node.lineno}"
                calls += 1
        strings = {
            n
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            for n in range(node.lineno, node.end_lineno + 1)
        }
        for n, line in enumerate(text.splitlines(), 1):
            assert "torch.load(" not in line or "weights_only=True" in line or n in strings, f"{p}:{n}: {line.strip()}"
    assert calls >= 1


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC} ({len(CASES)} rows)")
    sys.exit(0)
