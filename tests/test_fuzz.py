"""Fuzzing the two readers of user files: random mutations of a valid config and of a valid UltraBench split
file either load or raise usjepa's own error (a UsjepaError naming the key or file), never another exception."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from usjepa.bench.tasks import load_task
from usjepa.config import Config, load_config, to_dict
from usjepa.data.ultrabench import read_record
from usjepa.errors import UsjepaError

EXAMPLES = settings(
    max_examples=500, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Values a user (or a broken tool) may write anywhere: every JSON/YAML type, odd numbers and odd strings.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e-3",
            "nan",
            "inf",
            "vit_tiny_patch16_224",
            "salt",
            "[1, 2]",
            "a\x00b",
            "../escape.png",
            "/abs.png",
            "x" * 300,
            "images/../../etc",
            "images/0.png",
        ]
    ),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def loads_or_own_error(fn, *args):
    try:
        return fn(*args)
    except UsjepaError:
        return None


def paths_of(tree, prefix=()):
    """Every key path of a nested dict / list, sections and leaves."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += paths_of(v, (*prefix, k))
    return out


@st.composite
def mutated(draw, tree, extra_keys: tuple[str, ...]):
    """``tree`` after 1-4 random edits: a value replaced, a key deleted, a key added, an entry duplicated."""
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, 4))):
        paths = paths_of(tree)
        op = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "whole"]))
        if op == "whole" or not paths:
            tree = draw(VALUES)
            continue
        path = draw(st.sampled_from(paths))
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        if op == "replace":
            parent[path[-1]] = draw(VALUES)
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(extra_keys) | st.text(max_size=8))] = draw(VALUES)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    return tree


@st.composite
def text_mutated(draw, text: str) -> str:
    """``text`` with 1-3 characters inserted, deleted or replaced (YAML or JSON syntax faults)."""
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(st.sampled_from(list(":-[]{},'\"#&*!|>?%@ \n\t0") + ["\x00", "é"]))
        text = (
            text[:i] + ch + text[i:] if op == "insert" else text[:i] + (ch if op == "replace" else "") + text[i + 1 :]
        )
    return text


# ---- the config loader ---------------------------------------------------------------------------------------

TINY = [
    "model.arch=vit_tiny_patch16_224",
    "model.patch_size=8",
    "model.depth=2",
    "data.img_size=32",
    "model.pred_dim=48",
    "model.pred_heads=2",
    "model.dec_dim=48",
    "model.dec_heads=2",
    "mask.min_keep=2",
    "method=vpixel",
    "data.sources=[frames?organ=liver]",
]
VALID = to_dict(load_config("tiny", TINY))
SECTIONS = tuple(VALID) + ("base", "lr", "unknown")


@EXAMPLES
@given(mutated(VALID, SECTIONS))
def test_config_tree_mutations_load_or_raise_config_error(tree):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "run.yaml"
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        cfg = loads_or_own_error(load_config, path)
    assert cfg is None or isinstance(cfg, Config)


@EXAMPLES
@given(text_mutated(yaml.safe_dump(VALID, sort_keys=False)))
def test_config_file_mutations_load_or_raise_config_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "run.yaml"
        path.write_text(text)
        cfg = loads_or_own_error(load_config, path)
    assert cfg is None or isinstance(cfg, Config)


@EXAMPLES
@given(
    st.lists(
        st.tuples(
            st.sampled_from([".".join(map(str, p)) for p in paths_of(VALID)] + ["base", "optim.lrr"]),
            st.text(max_size=16) | st.sampled_from(["[a?organ=liver&fps=3, b]", "[1,", "{a: 1}", "nan"]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_override_mutations_load_or_raise_config_error(pairs):
    cfg = loads_or_own_error(load_config, "tiny", TINY + [f"{k}={v}" for k, v in pairs])
    assert cfg is None or isinstance(cfg, Config)


# ---- the UltraBench reader -----------------------------------------------------------------------------------


def write_images(root: Path) -> dict[str, list[dict]]:
    """12 train_val images (6 patients, 2 classes) and 4 test images, each with a scan mask; their split entries."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    splits = {"train_val": [], "test": []}
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "masks" / f"{i}.png")
        splits["train_val" if i < 12 else "test"].append(
            {"image": f"images/{i}.png", "scan_mask": f"masks/{i}.png", "label": i % 2, "patient": i // 2}
        )
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "small.png")  # a mask of the wrong size
    return splits


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fuzz") / "task"
    return root, write_images(root)


def check_reader(root: Path, texts: dict[str, str], allow_incomplete: bool) -> None:
    """Write both split files, then load the task and decode the first record of each split."""
    for name, text in texts.items():
        (root / f"{name}.json").write_text(text)
    loaded = loads_or_own_error(load_task, str(root), None, 0, 0.25, allow_incomplete)
    if loaded is not None:
        for recs in loaded.splits.values():
            loads_or_own_error(read_record, recs[0])


ENTRY_KEYS = ("image", "scan_mask", "label", "patient", "source", "class")


@EXAMPLES
@given(data=st.data())
def test_split_file_mutations_load_or_raise_data_error(task, data):
    root, valid = task
    m = data.draw(mutated(valid, ENTRY_KEYS))  # may delete a split, or replace the whole thing
    splits = {
        name: m.get(name, entries) if isinstance(m, dict) else m if name == "train_val" else entries
        for name, entries in valid.items()
    }
    check_reader(root, {name: json.dumps(entries) for name, entries in splits.items()}, data.draw(st.booleans()))


@EXAMPLES
@given(data=st.data())
def test_split_file_text_mutations_load_or_raise_data_error(task, data):
    root, valid = task
    which = data.draw(st.sampled_from(["train_val", "test"]))
    texts = {name: json.dumps(entries) for name, entries in valid.items()}
    texts[which] = data.draw(text_mutated(texts[which]))
    check_reader(root, texts, data.draw(st.booleans()))
