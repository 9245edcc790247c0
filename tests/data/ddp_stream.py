"""Run under torchrun (2 CPU processes, gloo): each rank writes the (source, key) of every sample it loads."""

import json
import sys

import torch.distributed as dist

from usjepa.config import load_config
from usjepa.data.corpus import build_pretrain_loader


def main(shards: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = load_config(
        "tiny",
        {
            "method": "vpixel",
            "data": {"sources": [shards], "num_workers": 0, "val_fraction": 0.0, "cap_per_source": 20},
            "optim": {"batch_size": 4},
        },
    )
    loader = build_pretrain_loader(cfg, "train", rank, world)
    ds = loader.dataset
    loader.set_epoch(2)
    seen = []
    for batch in loader:
        for pos in batch["index"].tolist():
            s, j = ds.plan(2)[pos]
            sample = ds.sources[s].load(int(ds.lists[s][j]))  # what was decoded at that position
            seen.append([sample.meta["source"], sample.meta["key"]])
    dist.barrier()
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"seen": seen, "batches": len(loader)}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
