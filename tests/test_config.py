import pytest

from usjepa.config import ConfigError, load_config, parse_overrides, save_config


def test_shipped_paper_recipe():
    cfg = load_config("salt_vitb16", ["teacher.source=runs/teacher"])
    assert cfg.model.arch == "vit_base_patch16_224"
    assert (cfg.model.pred_depth, cfg.model.pred_dim) == (12, 384)
    assert (cfg.optim.batch_size, cfg.optim.epochs, cfg.optim.lr) == (128, 100, 5e-5)
    assert (cfg.optim.weight_decay, cfg.optim.final_weight_decay) == (0.04, 0.4)
    assert cfg.mask.ctx_scale == (0.85, 1.0) and cfg.mask.tgt_scale == (0.075, 0.125) and cfg.mask.n_targets == 4


def test_base_inheritance_and_overrides():
    cfg = load_config("mae_vitb16", ["optim.lr=2e-4", "mask.random_ratio=0.6"])
    assert cfg.method == "mae" and cfg.model.dec_dim == 384 and cfg.optim.lr == 2e-4 and cfg.mask.random_ratio == 0.6


@pytest.mark.parametrize(
    "override, message",
    [
        (["optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["bogus=1"], "unknown config key 'bogus'"),
        (["optim.lr=fast"], "optim.lr: expected a number, got 'fast'"),
        (["optim.epochs=2.5"], "optim.epochs: expected an integer, got 2.5"),
        (["optim.lr=-1e-4"], "optim.lr: must be > 0, got -0.0001"),
        (["method=simclr"], "method: expected one of ['ijepa', 'mae', 'salt', 'vpixel'], got 'simclr'"),
        (["mask.tgt_scale=[0.2]"], "mask.tgt_scale: expected a list of 2 values"),
        (["method=salt", "teacher.source="], "teacher.source: method 'salt' needs a frozen teacher"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", override)
    assert message in str(e.value)


def test_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_overrides(["optim.lr"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("tiny", ["method=vpixel", "optim.lr=3e-4"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_every_number_key_has_a_range_that_its_default_satisfies():
    """Every int, float and (low, high) key of every section declares its allowed range (``ranged``), and the
    defaults lie in it: a value outside fails when the config is built, naming the key."""
    import dataclasses
    import typing

    from usjepa.config import Config, _check_range

    def walk(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                yield from walk(tp, f"{prefix}{f.name}.")
            elif tp in (int, float) or typing.get_origin(tp) is tuple:
                yield f"{prefix}{f.name}", f, tp

    keys = list(walk(Config))
    assert len(keys) >= 45
    for key, f, _ in keys:
        assert "range" in f.metadata, f"{key} has no allowed range"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        _check_range(f, default, key)


@pytest.mark.parametrize(
    "override, value",
    [
        ("data.sources=[a?organ=liver&fps=3, b]", ["a?organ=liver&fps=3", "b"]),
        ("data.sources=[dir/{000..009}.tar, 'x,y', \"q\"]", ["dir/{000..009}.tar", "x,y", "q"]),
        ("data.sources=[d/{a,b}.tar]", ["d/{a,b}.tar"]),
        ("data.sources=[]", []),
    ],
)
def test_list_overrides_keep_source_options_and_shard_braces(override, value):
    assert parse_overrides([override]) == {"data": {"sources": value}}


def test_string_keys_are_verbatim_and_yaml_keys_unique(tmp_path):
    assert parse_overrides(["out=2024", "teacher.source=null"]) == {"out": "2024", "teacher": {"source": "null"}}
    (tmp_path / "dup.yaml").write_text("model:\n  depth: 2\nmodel:\n  depth: 3\n")
    with pytest.raises(ConfigError, match="dup.yaml: not valid YAML \\(duplicated key 'model'.* at line 3"):
        load_config(tmp_path / "dup.yaml")
