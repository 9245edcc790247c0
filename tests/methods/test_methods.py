import copy

import pytest
import torch

from usjepa.config import load_config
from usjepa.engine import param_groups
from usjepa.masking import MaskCollator
from usjepa.methods import build_method


def _batch(method, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = [
        {
            "image": torch.rand(1, 32, 32, generator=g),
            "scan_mask": torch.ones(32, 32, dtype=torch.bool),
            "seed": seed + i,
        }
        for i in range(n)
    ]
    return MaskCollator(method.cfg.mask, 32, 8, method.mask_kind)(items)


def test_salt_trains_only_student_and_predictor(stage1_run, tiny_overrides):
    cfg = load_config("tiny", tiny_overrides + [f"teacher.source={stage1_run}"])
    salt = build_method(cfg)
    before = {k: v.clone() for k, v in salt.teacher.state_dict().items()}
    opt = torch.optim.AdamW(param_groups(salt), lr=1e-2)
    trainable = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not trainable & {id(p) for p in salt.teacher.parameters()}
    for step in range(3):
        loss, logs = salt(_batch(salt, seed=step))
        loss.backward()
        for name, p in salt.named_parameters():
            assert (p.grad is not None) == (name.startswith(("encoder.", "predictor."))), name
        opt.step()
        opt.zero_grad()
    for k, v in salt.teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher weight {k} changed"


def test_ijepa_target_changes_only_through_ema(tiny_overrides):
    cfg = load_config("tiny", tiny_overrides + ["method=ijepa", "optim.ema=[0.9,1.0]"])
    m = build_method(cfg)
    assert all(not p.requires_grad for p in m.target_encoder.parameters())
    opt = torch.optim.AdamW(param_groups(m), lr=1e-2)
    loss, _ = m(_batch(m))
    loss.backward()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    tgt_before = copy.deepcopy(m.target_encoder.state_dict())
    opt.step()
    m.on_step_end(0.0)  # momentum 0.9 at the start
    for (k, t), s in zip(m.target_encoder.state_dict().items(), m.encoder.state_dict().values()):
        torch.testing.assert_close(t, 0.9 * tgt_before[k] + 0.1 * s)
    m.on_step_end(1.0)  # momentum 1: frozen
    after = copy.deepcopy(m.target_encoder.state_dict())
    m.on_step_end(1.0)
    assert all(torch.equal(after[k], v) for k, v in m.target_encoder.state_dict().items())


def test_pixel_methods_reconstruct_patches(tiny_overrides):
    for name, ctx_len in (("vpixel", None), ("mae", 4)):
        m = build_method(load_config("tiny", tiny_overrides + [f"method={name}"]))
        b = _batch(m)
        if ctx_len:
            assert b["ctx_idx"].shape[1] == ctx_len  # 25 % of 16 patches visible
        loss, _ = m(b)
        assert 0.5 < loss.item() < 3.0  # normalised pixels, random decoder
        loss.backward()
        assert m.decoder.proj.weight.grad is not None and m.encoder.vit.patch_embed.proj.weight.grad is not None


def test_the_registry_is_the_one_list_of_methods():
    """Every method module registers itself; configs are checked against the registry and its hooks."""
    from usjepa.config import load_config
    from usjepa.errors import ConfigError
    from usjepa.methods import method_class, method_names, register
    from usjepa.methods.base import Method

    assert method_names() == ["ijepa", "mae", "salt", "vpixel"]
    assert {n: method_class(n).export_role for n in method_names()} == {
        "ijepa": "student",
        "mae": "student",
        "salt": "student",
        "vpixel": "teacher",
    }
    with pytest.raises(ConfigError, match=r"method: expected one of \['ijepa', 'mae', 'salt', 'vpixel'\], got 'x'"):
        method_class("x")
    with pytest.raises(ConfigError, match="teacher.source: method 'salt' needs a frozen teacher"):
        load_config("tiny", ["method=salt"])
    assert load_config("tiny", ["method=ijepa"]).method == "ijepa"  # ijepa's targets need no teacher
    with pytest.raises(RuntimeError, match="method 'mae' is registered twice"):
        register("mae")(type("Other", (Method,), {}))
