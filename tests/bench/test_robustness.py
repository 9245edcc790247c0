"""The paper's corruptions on known inputs (usjepa.data.corruptions), and how the benchmark applies them."""

from __future__ import annotations

import pytest
import torch

from usjepa.bench.features import SplitImages
from usjepa.bench.robustness import conditions, relative_drop
from usjepa.bench.tasks import load_task
from usjepa.data.corruptions import corrupt
from usjepa.errors import ConfigError


def _impulse(size: int = 21) -> torch.Tensor:
    img = torch.zeros(1, size, size)
    img[0, size // 2, size // 2] = 1.0
    return img


@pytest.mark.parametrize("eps, radius", [(1, 2), (2, 4), (3, 6)])  # kernel 2*floor(2*eps)+1 = 5, 9, 13
def test_blur_is_gaussian_with_sigma_eps_and_the_papers_kernel(eps, radius):
    out = corrupt(_impulse(), torch.ones(1, 21, 21, dtype=torch.bool), "blur", eps)[0]
    row = out[10]
    assert row[10 + radius] > 0 and row[10 + radius + 1] == 0 and out.sum().item() == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    gauss = torch.exp(-(offsets**2) / (2 * eps**2))
    expected = torch.outer(gauss, gauss) / gauss.sum() ** 2
    torch.testing.assert_close(
        out[10 - radius : 11 + radius, 10 - radius : 11 + radius], expected, atol=1e-6, rtol=1e-4
    )


@pytest.mark.parametrize("eps, alpha", [(1, 0.7), (2, 0.5), (3, 0.3)])
def test_contrast_shrinks_toward_the_scan_median(eps, alpha):
    img = torch.tensor([[[0.1, 0.2, 0.4, 0.9, 1.0]]])
    mask = torch.tensor([[[True, True, True, True, False]]])
    out = corrupt(img, mask, "contrast", eps)
    median = 0.2  # torch's lower median of the 4 values inside the scan
    torch.testing.assert_close(out[..., :4], median + alpha * (img[..., :4] - median))
    assert out[0, 0, 4] == 1.0  # outside the scan region: untouched


@pytest.mark.parametrize("eps", [1, 2])
def test_speckle_is_multiplicative_correlated_with_sigma_0_35_eps(eps):
    img = torch.full((1, 128, 128), 0.3)
    mask = torch.zeros(1, 128, 128, dtype=torch.bool)
    mask[:, :, :100] = True
    out = corrupt(img, mask, "speckle", eps, generator=torch.Generator().manual_seed(0))
    noise = (out / img - 1)[0, :, :100]
    unclipped = noise[(out[0, :, :100] > 0) & (out[0, :, :100] < 1)]
    assert abs(noise.mean()) < 0.02
    assert unclipped.std().item() == pytest.approx(0.35 * eps, rel=0.15 if eps == 1 else 0.35)
    lag1 = torch.corrcoef(torch.stack([noise[:, :-1].reshape(-1), noise[:, 1:].reshape(-1)]))[0, 1]
    assert lag1 > 0.3  # spatially correlated, not white
    assert (out[..., 100:] == 0.3).all()


@pytest.mark.parametrize("kind", ["blur", "contrast", "speckle"])
def test_severity_zero_is_the_identity(kind):
    img = torch.rand(1, 16, 16)
    assert torch.equal(corrupt(img, torch.ones_like(img, dtype=torch.bool), kind, 0), img)


def test_conditions_and_relative_drop():
    assert conditions(("blur",), (1, 3)) == [("blur", 1), ("blur", 3)]
    assert len(conditions()) == 9
    assert relative_drop(0.8, 0.4) == pytest.approx(-0.5)
    with pytest.raises(ConfigError, match="unknown corruption or severity fog, 4"):
        conditions(("blur", "fog"), (1, 4))


def test_corruption_applies_at_native_size_before_resize_and_is_seeded(task_root):
    recs = load_task("synthus_lesion", task_root).splits["test"][:2]
    clean, noisy = SplitImages(recs, 16), SplitImages(recs, 16, ("speckle", 3))
    assert not torch.equal(clean[0][0], noisy[0][0]) and clean[0][1] == noisy[0][1]
    assert torch.equal(noisy[1][0], SplitImages(recs, 16, ("speckle", 3))[1][0])
    assert noisy[0][0].shape == (1, 16, 16)
