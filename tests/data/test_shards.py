"""Shard writing/reading, and streaming under a 2-process torchrun."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from usjepa.data.sample import Sample
from usjepa.data.shards import encode_sample, write_shard
from usjepa.data.sources import open_source

SIZES = {"echo": 36, "thyroid": 12}  # with N_t = 20: an epoch holds 20 + 12


def _write(out: Path) -> None:
    rng = np.random.default_rng(0)
    samples = []
    for name, n in SIZES.items():
        for i in range(n):
            img = rng.integers(0, 255, (32, 32)).astype(np.uint8)
            mask = np.zeros((32, 32), bool)
            mask[4:28, 2:30] = True
            meta = {"source": name, "organ": "heart" if name == "echo" else "thyroid", "group": f"{name}{i}"}
            samples.append(encode_sample(f"{name}-{i:08d}", Sample(img, mask, i % 3, meta)))
    for k in range(0, len(samples), 10):
        write_shard(out / f"shard-{k // 10:06d}.tar", samples[k : k + 10])


def test_roundtrip_and_split_by_source(tmp_path):
    _write(tmp_path)
    src = open_source(str(tmp_path / "shard-{000000..000004}.tar"))
    assert len(src) == 48 and src.faults == []
    parts = src.by_source()
    assert [(p.name, p.opts.organ, len(p)) for p in parts] == [("echo", "heart", 36), ("thyroid", "thyroid", 12)]
    s = parts[1].load(3)
    assert s.image.shape == (32, 32) and s.label == 0 and s.scan_mask.sum() == 24 * 28
    assert s.meta["group"] == "thyroid3" and s.meta["preprocessed"]


@pytest.mark.slow
def test_torchrun_two_ranks_disjoint_capped_mixture(tmp_path):
    _write(tmp_path)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).with_name("ddp_stream.py")),
        str(tmp_path / "*.tar"),
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, env=env, timeout=100, capture_output=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    keys = [{tuple(x) for x in r["seen"]} for r in ranks]
    assert ranks[0]["batches"] == ranks[1]["batches"] == 8  # 32 samples / 2 ranks / 2 per rank-batch
    assert len(keys[0]) == len(ranks[0]["seen"]) == 16 and not keys[0] & keys[1]
    counts = Counter(src for src, _ in keys[0] | keys[1])
    assert counts == {name: min(n, 20) for name, n in SIZES.items()}
