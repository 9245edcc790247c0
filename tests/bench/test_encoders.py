"""Encoder registry: usjepa exports, random and pixel baselines, EfficientNet-Lite0's real weights, the USFM, URFM and
DINO layouts, and the error messages."""

from __future__ import annotations

import json
import sys

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data

from usjepa.encoders import registry
from usjepa.errors import CheckpointError, ConfigError

from .conftest import write_export


def test_usjepa_export_and_poolings(export_dir):
    enc = registry.load(f"usjepa:{export_dir}")
    assert (enc.img_size, enc.in_chans, enc.mean, enc.pooling) == (32, 1, (0.5,), "mean")
    x = enc.normalise(torch.rand(2, 1, 32, 32))
    dims = {p: enc.features(x, p).shape for p in enc.poolings}
    assert dims == {
        "cls": (2, 192),
        "mean": (2, 192),
        "cls+mean": (2, 384),
        "last4": (2, 5 * 192),
        "cls+mean-last4": (2, 4 * 384),
        "head": (2, 192),
    }
    assert enc.features(x, "cls+mean")[:, 192:].allclose(enc.features(x, "mean"))
    assert registry.load(f"usjepa:{export_dir}").fingerprint == enc.fingerprint
    with pytest.raises(ConfigError, match="pooling 'max' not offered"):
        enc.features(x, "max")


def test_random_baseline_takes_the_export_architecture(export_dir):
    rnd, trained = registry.load(f"random:{export_dir}"), registry.load(f"usjepa:{export_dir}")
    assert (
        rnd.fingerprint != trained.fingerprint and rnd.fingerprint == registry.load(f"random:{export_dir}").fingerprint
    )
    assert (rnd.img_size, rnd.in_chans, rnd.weights_sha256) == (32, 1, None)
    assert registry.load("random:resnet10t").poolings == ("head",)


def test_grayscale_is_replicated_for_three_channel_encoders():
    enc = registry.load("effnet-lite0:64")
    x = torch.rand(2, 1, 8, 8)
    out = enc.normalise(x)
    assert out.shape == (2, 3, 8, 8) and torch.allclose(out[:, 0] * 0.229 + 0.485, x[:, 0])


def test_pixels_baseline_is_pooled_grey_levels():
    enc = registry.load("pixels:4")
    x = torch.rand(2, 1, 224, 224)
    feats = enc.features(enc.normalise(x))
    assert (enc.img_size, enc.in_chans, feats.shape) == (224, 1, (2, 16))
    assert torch.allclose(feats[:, 0], (x[:, 0, :56, :56].mean((1, 2)) - 0.5) / 0.25, atol=1e-5)  # top-left cell
    assert enc.fingerprint != registry.load("pixels:8").fingerprint  # each grid has its own feature cache


def test_effnet_lite0_real_weights_see_espresso():
    enc = registry.load("effnet-lite0")
    img = torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        logits = enc.model(enc.normalise(x).contiguous(memory_format=torch.channels_last))
    assert logits.argmax().item() == 967  # ImageNet "espresso"
    assert enc.features(enc.normalise(x)).shape == (1, 1280)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        (
            "usfm:/nope/usfm.safetensors",
            CheckpointError,
            r"usfm:/nope/usfm.safetensors: weights file /nope/usfm.safetensors not "
            r"found; expected the USFM ViT-B/16 weights .*github.com/openmedlab/USFM",
        ),
        (
            "urfm:/nope/urfm.pth",
            CheckpointError,
            r"weights file /nope/urfm.pth not found; expected the URFM ViT-B/16 weights",
        ),
        (
            "timm:vit_small_patch16_224@/nope/w.safetensors",
            CheckpointError,
            r"weights file /nope/w.safetensors not found.*huggingface.co/timm/vit_small_patch16_224",
        ),
        ("usjepa:/nope/run", CheckpointError, r"/nope/run: not found; expected a usjepa export dir"),
        (
            "hf:/nope/dinov2",
            CheckpointError,
            r"/nope/dinov2/config.json not found; expected a folder written by transformers",
        ),
        ("dinov9:x", ConfigError, r"encoder 'dinov9:x': expected one of"),
        ("effnet-lite0:big", ConfigError, r"effnet-lite0\[:SIZE\] takes an image size in pixels"),
        ("random:no_such_arch", ConfigError, r"random:no_such_arch: unknown timm architecture"),
        ("pixels:0", ConfigError, r"encoder 'pixels:0': pixels:K takes a grid size K from 1 to 64"),
        ("pixels:eight", ConfigError, r"pixels:K takes a grid size"),
    ],
)
def test_missing_weights_and_bad_specs_say_what_is_expected(spec, error, message):
    with pytest.raises(error, match=message):
        registry.load(spec)


def test_hf_without_transformers_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ConfigError, match="need the `transformers` package, which is not installed"):
        registry.load(f"hf:{tmp_path}")


@pytest.mark.parametrize("family, registers", [("dinov2", 0), ("dinov3", 4)])
def test_hf_dino_saved_locally_loads_with_its_input_size_and_register_tokens(tmp_path, family, registers):
    import transformers  # in the test extra

    small = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)
    if family == "dinov2":
        model = transformers.Dinov2Model(transformers.Dinov2Config(image_size=28, patch_size=14, **small))
    else:
        model = transformers.DINOv3ViTModel(
            transformers.DINOv3ViTConfig(image_size=32, patch_size=16, num_register_tokens=registers, **small)
        )
    model.eval().save_pretrained(tmp_path)
    size = model.config.image_size
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {"crop_size": {"height": size, "width": size}, "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.2, 0.2]}
        )
    )
    enc = registry.load(f"hf:{tmp_path}")
    assert (enc.img_size, enc.in_chans, enc.mean, enc.pooling) == (size, 3, (0.4, 0.5, 0.6), "cls")
    x = torch.rand(2, 3, size, size)
    with torch.inference_mode():
        tokens = model(pixel_values=x).last_hidden_state
        assert torch.allclose(enc.features(x, "cls"), tokens[:, 0], atol=1e-5)
        assert torch.allclose(enc.features(x, "mean"), tokens[:, 1 + registers :].mean(1), atol=1e-5)  # patches only
        last4 = enc.features(x, "cls+mean-last4")  # the per-block variant; last4 is DINOv2's (tests/encoders)
        assert last4.shape == (2, 4 * 2 * 32)
        assert torch.allclose(
            last4[:, -64:], torch.cat([tokens[:, 0], tokens[:, 1 + registers :].mean(1)], 1), atol=1e-5
        )


def test_weights_that_do_not_fit_name_the_tensor(tmp_path):
    save_file({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"w.safetensors: missing: pos_embed"):
        registry.load(f"urfm:{tmp_path / 'w.safetensors'}")


def test_input_size_mismatch_is_caught_before_any_work(tmp_path):
    bad = write_export(tmp_path / "bad", card_img_size=48)  # the card says 48 px, the model was built for 32
    with pytest.raises(
        CheckpointError, match=r"usjepa:.*bad: encoder rejects its declared input 1x48x48 \(input-size mismatch"
    ):
        registry.load(f"usjepa:{bad}")


def test_fingerprint_sees_one_changed_byte(export_dir, tmp_path):
    copy = write_export(tmp_path / "copy")
    before = registry.load(f"usjepa:{copy}")
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01
    weights.write_bytes(bytes(raw))
    after = registry.load(f"usjepa:{copy}")
    assert after.fingerprint != before.fingerprint and after.weights_sha256 != before.weights_sha256


def test_usfm_release_layout_loads_as_usfm_fine_tunes_it(tmp_path):
    """BEiT pretraining layout: one shared relative-position table, a final norm, MIM-only tensors, a wrapper prefix."""
    beit = dict(
        pretrained=False, num_classes=0, use_abs_pos_emb=False, use_rel_pos_bias=False, use_shared_rel_pos_bias=True
    )
    torch.manual_seed(0)
    pre = timm.create_model("beit_base_patch16_224", global_pool="token", **beit)
    with torch.no_grad():
        pre.rel_pos_bias.relative_position_bias_table.normal_()  # zeros at init: make copying it matter
    release = {f"net.backbone.{k}": v for k, v in pre.state_dict().items()}
    release |= {"net.backbone.mask_token": torch.zeros(1, 1, 768), "net.backbone.lm_head.weight": torch.zeros(8, 768)}
    save_file(release, str(tmp_path / "usfm.safetensors"))
    enc = registry.load(f"usfm:{tmp_path / 'usfm.safetensors'}")
    ref = timm.create_model("beit_base_patch16_224", global_pool="avg", **beit).eval()  # mean pooling, fresh fc_norm
    missing, _ = ref.load_state_dict(
        {k: v for k, v in pre.state_dict().items() if not k.startswith("norm.")}, strict=False
    )
    assert missing == ["fc_norm.weight", "fc_norm.bias"]
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(enc.features(x), ref.forward_head(ref.forward_features(x), pre_logits=True), atol=1e-4)


def test_urfm_weights_under_a_wrapper_load_with_mae_tensors_dropped(tmp_path):
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    sd = {f"module.{k}": v for k, v in vit.state_dict().items()}
    sd |= {"module.mask_token": torch.zeros(1, 1, 768), "module.decoder_embed.weight": torch.zeros(4, 768)}
    torch.save({"model": sd, "epoch": 400}, tmp_path / "urfm.pth")
    enc = registry.load(f"urfm:{tmp_path / 'urfm.pth'}")
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(enc.features(x, "mean"), vit.forward_features(x)[:, 1:].mean(1), atol=1e-5)


def test_patch_maps_leave_out_prefix_tokens_and_declare_their_stride(export_dir):
    vit = registry.load(f"usjepa:{export_dir}")
    x = vit.normalise(torch.rand(2, 1, 32, 32))
    with torch.inference_mode():
        tokens = vit.model.forward_features(x)[:, 1:]  # without the CLS token
        assert torch.equal(vit.patch_map(x), tokens.transpose(1, 2).reshape(2, 192, 4, 4))
        blocks = vit.model.forward_intermediates(x, indices=2, norm=True, intermediates_only=True)
        assert torch.allclose(vit.patch_map(x, last_k=2), (blocks[0] + blocks[1]) / 2)
    assert vit.stride() == 8
    cnn = registry.load("effnet-lite0:64")
    with torch.inference_mode():
        assert cnn.patch_map(cnn.normalise(torch.rand(1, 1, 64, 64)), layer=3).shape == (1, 112, 4, 4)
    assert (cnn.stride(3), cnn.stride()) == (16, 32)
    pixels = registry.load("pixels:4")
    assert pixels.patch_map(torch.rand(2, 1, 96, 96)).shape == (2, 1, 4, 4)  # fixed, whatever the input size


def test_hf_patch_map_drops_cls_and_register_tokens(tmp_path):
    import transformers

    model = transformers.DINOv3ViTModel(
        transformers.DINOv3ViTConfig(
            image_size=32,
            patch_size=16,
            num_register_tokens=4,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).eval()
    model.save_pretrained(tmp_path)
    enc = registry.load(f"hf:{tmp_path}")
    x = torch.rand(2, 3, 64, 64)  # RoPE: another input size gives a larger grid
    with torch.inference_mode():
        tokens = model(pixel_values=x).last_hidden_state[:, 5:]
        assert torch.allclose(enc.patch_map(x), tokens.transpose(1, 2).reshape(2, 32, 4, 4), atol=1e-6)
    assert enc.stride() == 16


@pytest.mark.parametrize("family", ["vit", "beit"])
def test_hf_vit_and_beit_take_another_input_size(tmp_path, family):
    """Position embeddings are interpolated (as a SALT teacher on another grid needs); native size unchanged."""
    import transformers  # in the test extra

    small = dict(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    if family == "vit":
        model = transformers.ViTModel(transformers.ViTConfig(intermediate_size=64, **small), add_pooling_layer=False)
    else:
        model = transformers.BeitModel(
            transformers.BeitConfig(intermediate_size=64, use_absolute_position_embeddings=True, **small)
        )
    model.eval().save_pretrained(tmp_path)  # no preprocessor_config.json: the model's own size is the input
    enc = registry.load(f"hf:{tmp_path}")
    assert enc.img_size == 32
    with torch.inference_mode():
        x = torch.rand(2, 3, 32, 32)
        native = model(pixel_values=x).last_hidden_state[:, 1:]
        assert torch.allclose(enc.patch_map(x), native.transpose(1, 2).reshape(2, 32, 2, 2), atol=1e-6)
        assert enc.patch_map(torch.rand(2, 3, 64, 64)).shape == (2, 32, 4, 4)
        assert enc.features(torch.rand(2, 3, 64, 64), "mean").shape == (2, 32)


def test_families_come_from_the_registry():
    assert {"effnet-lite0", "hf", "pixels", "random", "timm", "urfm", "usfm", "usjepa"} <= set(registry.families())
    assert registry.usage().startswith("effnet-lite0[:SIZE], hf:DIR")
    assert all(f.usage in registry.help_text() for f in registry.families().values())
