import pytest
import torch

from usjepa.config import load_config
from usjepa.errors import CheckpointError
from usjepa.export import export_run, load_encoder
from usjepa.methods import build_method
from usjepa.models.encoder import create_vit
from usjepa.models.teacher import load_teacher


def test_teacher_is_frozen_and_stays_in_eval(stage1_run):
    t = load_teacher(str(stage1_run), "layernorm", (4, 4))
    assert not any(p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training and not t.encoder.training
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


def test_patch_grid_mismatch_is_a_clear_error(stage1_run):
    with pytest.raises(CheckpointError, match=r"patch grid \(4, 4\).*does not match the student's \(8, 8\)"):
        load_teacher(str(stage1_run), "none", (8, 8))


def test_timm_teacher_with_other_width_feeds_salt(tmp_path, tiny_overrides):
    """A 3-channel ViT-S teacher (width 384) from a local safetensors file; student width 192."""
    # timm:NAME@FILE builds the arch's defaults, so the file holds the real arch (a .pth, read weights-only).
    full = create_vit("vit_small_patch16_224", depth=12, num_classes=0)
    torch.save(full.state_dict(), tmp_path / "vits.pth")
    model, card = load_encoder(f"timm:vit_small_patch16_224@{tmp_path / 'vits.pth'}")
    assert card["embed_dim"] == 384 and card["in_chans"] == 3
    cfg = load_config("tiny", tiny_overrides + [f"teacher.source=timm:vit_small_patch16_224@{tmp_path / 'vits.pth'}",
                                                "data.img_size=224", "model.patch_size=16"])
    salt = build_method(cfg)
    assert salt.predictor.proj.out_features == 384
    with pytest.raises(CheckpointError, match="does not fit timm model"):
        load_encoder(f"timm:vit_base_patch16_224@{tmp_path / 'vits.pth'}")


def test_pickle_only_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused: this file needs full unpickling"):
        load_encoder(f"timm:vit_tiny_patch16_224@{tmp_path / 'evil.pth'}")
