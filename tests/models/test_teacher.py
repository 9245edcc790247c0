import csv
import json
import math

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from usjepa.checkpoint import load_checkpoint
from usjepa.cli import main
from usjepa.config import load_config
from usjepa.encoders import registry
from usjepa.errors import CheckpointError, ConfigError
from usjepa.methods import build_method, salt
from usjepa.modelio import CARD, FROZEN, WEIGHTS, export_run
from usjepa.models.encoder import create_vit
from usjepa.models.teacher import load_teacher


def test_teacher_is_frozen_and_stays_in_eval(stage1_run):
    t = load_teacher(str(stage1_run), "layernorm", (4, 4))
    assert not any(p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training and not t.model.training
    out = t(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 16, 192) and not out.is_inference()
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 16), atol=1e-5, rtol=0)  # layer-norm targets


def test_teacher_sources_agree(stage1_run):
    """A stage-1 run dir, its checkpoint file and its export give the same teacher."""
    img = torch.rand(1, 1, 32, 32)
    a = load_teacher(str(stage1_run), "none", (4, 4))(img)
    b = load_teacher(str(stage1_run / "checkpoints" / "best.pt"), "none", (4, 4))(img)
    c = load_teacher(str(export_run(stage1_run)), "none", (4, 4))(img)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_teacher_of_another_grid_sees_the_image_resized(stage1_run):
    """A 32 px patch-8 teacher (4 x 4) under a 64 px student (8 x 8) runs at 64 px, position embeddings resampled."""
    t = load_teacher(str(stage1_run), "none", (8, 8))
    assert t.size == 64 and t.frozen.model.patch_embed.grid_size == (8, 8)
    assert not any(p.requires_grad for p in t.parameters())  # the resampled embedding stays frozen
    assert t(torch.rand(2, 1, 64, 64)).shape == (2, 64, 192)


def test_impossible_grid_is_a_clear_error():
    with pytest.raises(
        ConfigError,
        match=r"teacher.source: pixels:8 gives a 8x8 map at 112 px \(stride 28\), not the "
        r"student's 4x4 grid; no input size gives that grid",
    ):
        load_teacher("pixels:8", "none", (4, 4))


def test_timm_teacher_with_other_width_feeds_salt(tmp_path, tiny_overrides):
    """A 3-channel ViT-S teacher (width 384) from a local safetensors file; student width 192."""
    # timm:NAME@FILE builds the arch's defaults, so the file holds the real arch (a .pth, read weights-only).
    full = create_vit("vit_small_patch16_224", depth=12, num_classes=0)
    torch.save(full.state_dict(), tmp_path / "vits.pth")
    enc = registry.load(f"timm:vit_small_patch16_224@{tmp_path / 'vits.pth'}")
    assert enc.in_chans == 3 and enc.features(torch.zeros(1, 3, 224, 224)).shape == (1, 384)
    cfg = load_config(
        "tiny",
        tiny_overrides
        + [
            f"teacher.source=timm:vit_small_patch16_224@{tmp_path / 'vits.pth'}",
            "data.img_size=224",
            "model.patch_size=16",
        ],
    )
    salt = build_method(cfg)
    assert salt.predictor.proj.out_features == 384
    with pytest.raises(CheckpointError, match="does not fit timm model"):
        registry.load(f"timm:vit_base_patch16_224@{tmp_path / 'vits.pth'}")


def test_pickle_only_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused: this file needs full unpickling"):
        registry.load(f"timm:vit_tiny_patch16_224@{tmp_path / 'evil.pth'}")


def test_teacher_runs_frozen_in_inference_mode():
    t = load_teacher("effnet-lite0", "layernorm", (4, 4), layer=3)
    seen = []
    t.model.conv_stem.register_forward_hook(lambda *_: seen.append(torch.is_inference_mode_enabled()))
    t.train()
    out = t(torch.rand(2, 1, 32, 32))
    assert seen == [True] and not t.model.training and not any(p.requires_grad for p in t.parameters())
    assert out.shape == (2, 16, 112) and not out.is_inference() and out.grad_fn is None  # stride 16 at 64 px


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        (
            "effnet-lite0",
            ["teacher.layer=7"],
            r"teacher.source: effnet-lite0: no stage 7; its stages are 0: 16 ch at stride 2",
        ),
        ("effnet-lite0", ["teacher.last_k=2"], r"last_k 2: a CNN's stages differ in shape"),
        ("dinov9:x", [], r"teacher.source: encoder 'dinov9:x': expected one of effnet-lite0\[:SIZE\], hf:DIR"),
    ],
)
def test_bad_teacher_choices_name_the_key(tiny_overrides, spec, extra, message):
    with pytest.raises(ConfigError, match=message):
        build_method(load_config("tiny", tiny_overrides + [f"teacher.source={spec}", *extra]))


@pytest.mark.parametrize("teacher", ["effnet-lite0", "vit-patch16"])
def test_pretrained_teacher_trains_a_salt_student_from_the_cli(
    tmp_path, image_folder, tiny_overrides, monkeypatch, teacher
):
    """EfficientNet-Lite0's stride-16 stage, or a patch-16 ViT (mean of its last 2 blocks), teaches a patch-8
    student on its 4 x 4 grid: both see the 32 px image at 64 px. The teacher comes out bit-identical, stays out of
    the checkpoint, and the export loads in timm."""
    if teacher == "effnet-lite0":
        spec, extra, width = "effnet-lite0", ["teacher.layer=3"], 112
    else:
        torch.manual_seed(0)
        save_file(
            timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict(), str(tmp_path / "vit.safetensors")
        )
        spec, extra, width = f"timm:vit_tiny_patch16_224@{tmp_path / 'vit.safetensors'}", ["teacher.last_k=2"], 192
    built = []
    monkeypatch.setattr(salt, "load_teacher", lambda *a: built.append(load_teacher(*a)) or built[-1])
    run = tmp_path / "salt"
    assert (
        main(
            [
                "pretrain",
                "--config",
                "tiny",
                *tiny_overrides,
                f"out={run}",
                f"data.sources=[{image_folder}]",
                "data.num_workers=0",
                "optim.batch_size=16",
                "optim.epochs=1",
                "max_steps=3",
                "log_every=1",
                "data.val_fraction=0.2",
                f"teacher.source={spec}",
                *extra,
            ]
        )
        == 0
    )
    (t,) = built
    assert (t.size, t.embed_dim) == (64, width)
    fresh = load_teacher(spec, "layernorm", (4, 4), t.layer, t.last_k).model.state_dict()
    after = t.model.state_dict()
    assert after.keys() == fresh.keys() and all(torch.equal(after[k], fresh[k]) for k in fresh), "the teacher changed"
    with open(run / "metrics.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert not any(k.startswith(FROZEN) for k in load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    card = json.loads((run / "export" / CARD).read_text())
    vit = timm.create_model(card["arch"], **card["timm_kwargs"])
    vit.load_state_dict(load_file(run / "export" / WEIGHTS), strict=True)  # the student alone
    assert card["role"] == "student" and vit.embed_dim == 192
