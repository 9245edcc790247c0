"""Pooling names mean what they say: lastN is DINOv2's linear-eval input, the older per-block variant keeps another
name, and hf: folders default to their family's own pooling."""

from __future__ import annotations

import pytest
import timm
import torch

from usjepa.encoders import load
from usjepa.encoders.frozen import TimmViT, token_poolings


def create_linear_input(x_tokens_list, use_n_blocks, use_avgpool):
    """dinov2/eval/linear.py#L171-L183, as written there (x_tokens_list: (patch tokens, class token) per block)."""
    intermediate_output = x_tokens_list[-use_n_blocks:]
    output = torch.cat([class_token for _, class_token in intermediate_output], dim=-1)
    if use_avgpool:
        output = torch.cat((output, torch.mean(intermediate_output[-1][0], dim=1)), dim=-1)
        output = output.reshape(output.shape[0], -1)
    return output.float()


@pytest.mark.parametrize("registers", [0, 4])
def test_last4_on_a_saved_dinov2_is_create_linear_input(tmp_path, registers):
    transformers = pytest.importorskip("transformers")
    if registers:
        config = transformers.Dinov2WithRegistersConfig(
            image_size=28,
            patch_size=7,
            hidden_size=32,
            num_hidden_layers=5,
            num_attention_heads=2,
            intermediate_size=64,
            num_register_tokens=registers,
        )
        model = transformers.Dinov2WithRegistersModel(config)
    else:
        config = transformers.Dinov2Config(
            image_size=28,
            patch_size=7,
            hidden_size=32,
            num_hidden_layers=5,
            num_attention_heads=2,
            intermediate_size=64,
        )
        model = transformers.Dinov2Model(config)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / "dino")
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = model.eval()(pixel_values=x, output_hidden_states=True).hidden_states[1:]  # each block's output
        normed = [model.layernorm(h) for h in hidden]  # get_intermediate_layers(norm=True)
        blocks = [(h[:, 1 + registers :], h[:, 0]) for h in normed]  # (patch tokens, class token), registers left out
        enc = load(f"hf:{tmp_path / 'dino'}")
        assert enc.pooling == "cls"
        for n in (1, 4):
            torch.testing.assert_close(
                enc.features(x, f"last{n}"), create_linear_input(blocks, n, True), atol=1e-5, rtol=1e-5
            )
        per_block = torch.cat([torch.cat([h[:, 0], h[:, 1 + registers :].mean(1)], 1) for h in normed[-4:]], 1)
        torch.testing.assert_close(enc.features(x, "cls+mean-last4"), per_block, atol=1e-5, rtol=1e-5)


def test_timm_last4_is_create_linear_input():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, num_classes=0)
    enc = TimmViT("test", model, 32, 3, (0.5,) * 3, (0.5,) * 3, "cls", token_poolings(model))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        blocks = model.forward_intermediates(
            x, indices=4, norm=True, return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True
        )
        expected = create_linear_input([(patches, prefix[:, 0]) for patches, prefix in blocks], 4, True)
        torch.testing.assert_close(enc.features(x, "last4"), expected, atol=1e-5, rtol=1e-5)
        assert enc.features(x, "last4").shape == (2, 5 * 192)
        assert enc.features(x, "cls+mean-last4").shape == (2, 4 * 2 * 192)


def test_hf_pooling_defaults_follow_the_model_family(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BeitConfig(
        image_size=32,
        patch_size=8,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        use_mean_pooling=True,
        use_relative_position_bias=True,
        use_absolute_position_embeddings=False,
    )
    transformers.BeitModel(config).save_pretrained(tmp_path / "beit")
    enc = load(f"hf:{tmp_path / 'beit'}")
    assert enc.pooling == "head"  # BEiT with mean pooling: its pooler (layernorm of the patch mean)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.features(x), enc.model(pixel_values=x).pooler_output)
