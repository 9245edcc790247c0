"""The published ultrasound families on checkpoints fabricated in their own layouts: each loads, its features equal a
reference forward written from the model's own code, a missing tensor fails naming it, and dropped tensors are named."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from usjepa.encoders import load
from usjepa.errors import CheckpointError

from .conftest import (
    HEADS,
    IMG,
    global_pool_reference,
    images,
    mae_linprobe_reference,
    mae_state_dict,
    save,
    tinyusfm_state_dict,
    ultrafedfm_checkpoint,
    ultrasam_checkpoint,
    ultrasam_reference,
    usfm_reference,
    usfm_state_dict,
    vit_tokens,
)


def _features(spec: str, size: int = IMG, **kw) -> tuple[object, torch.Tensor]:
    enc = load(spec)
    with torch.no_grad():
        return enc, enc.features(images(size=size, **kw))


def _missing_key_fails(tmp_path, spec: str, obj: dict, key: str, inner: str | None = None) -> None:
    sd = obj[inner] if inner else obj
    del sd[key]
    path = save(obj, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing: " + re.escape(key)):
        load(f"{spec}:{path}")


def test_usf_mae_loads_the_whole_mae_and_equals_mae_linear_probe_features(tmp_path):
    sd = mae_state_dict()
    enc, feats = _features(f"usf-mae:{save(dict(sd), tmp_path / 'usf_mae.pth')}")
    assert (enc.img_size, enc.in_chans, enc.pooling) == (IMG, 3, "cls") and enc.mean == (0.485, 0.456, 0.406)
    torch.testing.assert_close(feats, mae_linprobe_reference(sd, images()), atol=1e-5, rtol=1e-5)
    assert "mask_token" in enc.load_report and "decoder_pred.weight" in enc.load_report
    assert "decoder_blocks.0.attn.qkv.weight" in enc.load_report and "dropped 20:" in enc.load_report
    _missing_key_fails(tmp_path, "usf-mae", mae_state_dict(), "blocks.1.attn.proj.weight")
    with pytest.raises(CheckpointError, match=r"not found.*github.com/Yusufii9/USF-MAE"):
        load(f"usf-mae:{tmp_path / 'absent.pth'}")


def test_tinyusfm_runs_twelve_heads_and_a_three_head_load_differs(tmp_path):
    sd = tinyusfm_state_dict()
    plain = {k.removeprefix("module.model."): v for k, v in sd.items()}
    enc, feats = _features(f"tinyusfm:{save(sd, tmp_path / 'tinyusfm.pth')}")
    assert all(b.attn.num_heads == HEADS == 12 for b in enc.model.blocks)
    reference = global_pool_reference(plain, images(), heads=12, fc_norm=plain)
    torch.testing.assert_close(feats, reference, atol=1e-5, rtol=1e-5)
    three = global_pool_reference(plain, images(), heads=3, fc_norm=plain)  # timm vit_tiny's head count
    assert (three - reference).abs().max() > 1e-2
    assert "module.model.head.weight" in enc.load_report and "TinyUSFM layout" in enc.load_report
    _, feats2 = _features(f"tinyusfm:{save({'module.' + k: v for k, v in plain.items()}, tmp_path / 't2.pth')}")
    torch.testing.assert_close(feats2, feats)  # the 'module.' prefix alone, as its loader also strips
    _missing_key_fails(tmp_path, "tinyusfm", tinyusfm_state_dict(), "module.model.fc_norm.weight")


def test_ultrafedfm_pickle_is_refused_with_a_conversion_that_then_loads(tmp_path):
    ckpt = ultrafedfm_checkpoint()
    raw = save(ckpt, tmp_path / "checkpoint-299.pth")
    with pytest.raises(CheckpointError, match="refused") as e:
        load(f"ultrafedfm:{raw}")
    command = re.search(r'python -c "(.*?)"', str(e.value)).group(1)
    out = tmp_path / "ultrafedfm.safetensors"
    subprocess.run(
        [sys.executable, "-c", command.replace("IN.pth", str(raw)).replace("OUT.safetensors", str(out))],
        check=True,
        cwd=tmp_path,
    )
    enc, feats = _features(f"ultrafedfm:{out}")
    assert enc.pooling == "head"
    torch.testing.assert_close(feats, global_pool_reference(ckpt["model"], images()), atol=1e-5, rtol=1e-5)
    assert "norm.weight" in enc.load_report and "decoder_embed.weight" in enc.load_report
    assert isinstance(ckpt["args"], argparse.Namespace) and shlex.split(command)  # the command is one shell word
    sd = dict(ckpt["model"])
    del sd["blocks.0.mlp.fc2.bias"]
    save_file(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing: blocks\.0\.mlp\.fc2\.bias"):
        load(f"ultrafedfm:{tmp_path / 'broken.safetensors'}")


def test_ultrasam_maps_mmpretrain_vitsam_onto_timm_samvit(tmp_path):
    ckpt = ultrasam_checkpoint()
    enc, feats = _features(f"ultrasam:{save(ckpt, tmp_path / 'UltraSam.pth')}", size=64)
    assert (enc.img_size, enc.pooling) == (64, "mean")
    torch.testing.assert_close(feats, ultrasam_reference(ckpt, images(size=64)), atol=1e-5, rtol=1e-5)
    for dropped in (
        "backbone.channel_reduction.*.weight (x4)",
        "prompt_encoder.label_encoder.label_embedding.weight",
        "bbox_head.output_upscaling.0.weight",
    ):
        assert dropped in enc.load_report
    with torch.no_grad():
        assert enc.patch_map(images(size=64)).shape == (2, 48, 8, 8) and enc.stride() == 8
    _missing_key_fails(tmp_path, "ultrasam", ultrasam_checkpoint(), "backbone.layers.2.attn.rel_pos_w", "state_dict")


@pytest.mark.parametrize("layout", ["release", "finetuned"])
def test_usfm_both_layouts_equal_usfm_forward(tmp_path, layout):
    sd = usfm_state_dict(layout)
    enc, feats = _features(f"usfm:{save(dict(sd), tmp_path / 'USFM_latest.pth')}")
    torch.testing.assert_close(feats, usfm_reference(sd, images()), atol=1e-5, rtol=1e-5)
    assert enc.pooling == "head" and enc.mean == (0.485, 0.456, 0.406)
    if layout == "release":
        assert "rel_pos_bias.relative_position_index" in enc.load_report and "norm.weight" in enc.load_report
        missing = "blocks.1.gamma_2"
    else:
        assert "blocks.*.attn.relative_position_index (x2)" in enc.load_report and "head.weight" in enc.load_report
        missing = "blocks.0.attn.q_bias"
    _missing_key_fails(tmp_path, "usfm", usfm_state_dict(layout), missing)


def test_usfm_reads_the_transformers_port(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BeitConfig(
        image_size=IMG,
        patch_size=8,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=12,
        intermediate_size=192,
        use_relative_position_bias=True,
        use_absolute_position_embeddings=False,
        use_mean_pooling=True,
        layer_scale_init_value=0.1,
        layer_norm_eps=1e-6,
    )
    torch.manual_seed(0)
    port = transformers.BeitModel(config).eval()
    with torch.no_grad():
        for p in port.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # tables and norms start at zeros and ones
        expected = port(pixel_values=images()).pooler_output
    port.save_pretrained(tmp_path / "usfm-port")
    enc, feats = _features(f"usfm:{tmp_path / 'usfm-port'}")
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)
    assert "transformers port" in enc.load_report


def test_urfm_says_which_layout_it_found(tmp_path):
    plain = mae_state_dict()
    plain = {k: v for k, v in plain.items() if not k.startswith(("decoder", "mask_token"))}
    enc, feats = _features(f"urfm:{save(dict(plain), tmp_path / 'urfm.pth')}")
    assert "plain ViT layout" in enc.load_report and enc.pooling == "mean"
    tokens = F.layer_norm(vit_tokens(plain, images(), HEADS), (48,), plain["norm.weight"], plain["norm.bias"], 1e-6)
    torch.testing.assert_close(feats, tokens[:, 1:].mean(1), atol=1e-5, rtol=1e-5)
    sd = usfm_state_dict("release")
    enc, feats = _features(f"urfm:{save(dict(sd), tmp_path / 'urfm_beit.pth')}")
    assert "BEiT layout" in enc.load_report
    torch.testing.assert_close(feats, usfm_reference(sd, images()), atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match=r"not found.*huggingface.co/QingboKang/URFM"):
        load(f"urfm:{tmp_path / 'absent.safetensors'}")


@pytest.mark.parametrize("family", ["usf-mae", "ultrafedfm", "tinyusfm", "ultrasam", "usfm", "urfm"])
def test_each_published_layout_is_a_salt_teacher(tmp_path, family):
    from usjepa.models.teacher import load_teacher

    fabricated = {
        "usf-mae": mae_state_dict(),
        "ultrafedfm": ultrafedfm_checkpoint()["model"],
        "tinyusfm": tinyusfm_state_dict(),
        "ultrasam": ultrasam_checkpoint()["state_dict"],
        "usfm": usfm_state_dict("release"),
        "urfm": mae_state_dict(),
    }[family]
    save_file({k: v.contiguous() for k, v in fabricated.items()}, str(tmp_path / "w.safetensors"))
    teacher = load_teacher(f"{family}:{tmp_path / 'w.safetensors'}", "layernorm", (4, 4))
    targets = teacher(torch.rand(2, 1, 40, 40))
    assert targets.shape == (2, 16, 48) and torch.isfinite(targets).all()
    assert not any(p.requires_grad for p in teacher.parameters())
