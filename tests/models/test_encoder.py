import torch

from usjepa.masking import predictor_attn_mask
from usjepa.models.encoder import Encoder, create_vit, gather
from usjepa.models.predictor import Predictor


def _vit(**kw):
    torch.manual_seed(0)
    return create_vit("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, in_chans=1, num_classes=0, **kw)


def test_full_image_matches_timm_forward_features():
    vit = _vit().eval()
    img = torch.randn(2, 1, 32, 32)
    ours = Encoder(vit)(img)
    ref = vit.forward_features(img)[:, vit.num_prefix_tokens :]
    assert ours.shape == (2, 16, 192)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_padding_never_changes_the_kept_tokens():
    enc = Encoder(_vit()).eval()
    img = torch.randn(1, 1, 32, 32)
    idx = torch.tensor([[0, 3, 5, 9]])
    alone = enc(img, idx)
    padded_idx = torch.tensor([[0, 3, 5, 9, 0, 0]])
    keep = torch.tensor([[True, True, True, True, False, False]])
    padded = enc(img, padded_idx, keep)
    torch.testing.assert_close(padded[:, :4], alone, rtol=1e-5, atol=1e-5)


def test_models_without_cls_token():
    vit = create_vit(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=0, class_token=False, global_pool="avg"
    ).eval()
    img = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(Encoder(vit)(img), vit.forward_features(img), rtol=1e-5, atol=1e-5)


def test_predictor_blocks_are_independent():
    torch.manual_seed(0)
    pred = Predictor((4, 4), in_dim=16, dim=32, depth=2, heads=2, out_dim=24).eval()
    ctx = torch.randn(1, 5, 16)
    ctx_idx = torch.tensor([[0, 1, 2, 3, 4]])
    ctx_keep = torch.ones(1, 5, dtype=torch.bool)
    both = pred(ctx, ctx_idx, ctx_keep, torch.tensor([[10, 11, 14, 15]]), torch.tensor([[0, 0, 1, 1]]))
    only0 = pred(ctx, ctx_idx, ctx_keep, torch.tensor([[10, 11]]), torch.tensor([[0, 0]]))
    assert both.shape == (1, 4, 24)
    torch.testing.assert_close(both[:, :2], only0, rtol=1e-5, atol=1e-5)


def test_gather_and_mask_shapes():
    x = torch.arange(12.0).view(1, 4, 3)
    assert gather(x, torch.tensor([[2, 0]])).tolist() == [[[6, 7, 8], [0, 1, 2]]]
    assert predictor_attn_mask(torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.long)).shape == (
        2,
        1,
        7,
        7,
    )
