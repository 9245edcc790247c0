"""Does an encoder's t-SNE group SynthUS images by label, or by probe kind? (issue 16, acceptance 3)

Per task, on the train split of a seed's SynthUS (design work: it never reads the test split), it prints the
share of points whose 10 nearest neighbours in the report's t-SNE mostly carry their label, and their probe kind,
beside the commonest share (what a map blind to that variable scores): for the encoder's pooled features, for the
mean-pooled map of each of its stages (--stages), and for a t-SNE of each probe kind's images alone.
`--crop inscribed` feeds the encoder each image's largest rectangle inside its scan region instead, resized: no
fan outline and no black surround, so what the probe kind still groups comes from inside the scan region.

    python benchmarks/map_grouping.py --seed 7                       # EfficientNet-Lite0, as the demo runs it
    python benchmarks/map_grouping.py --seed 7 --no-stages --crop inscribed
    python benchmarks/map_grouping.py --seed 7 --encoder random:runs/demo/salt/export --no-stages
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from usjepa import encoders
from usjepa.bench.features import loader
from usjepa.bench.report import MAP_NEIGHBOURS, label_agreement
from usjepa.bench.run import tsne_2d
from usjepa.bench.tasks import ALLOW_FLAG, Task, load_task
from usjepa.data.ultrabench import Record, read_record
from usjepa.synthus import write_suite


def inscribed_rectangle(mask: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns of the largest axis-aligned rectangle of True pixels in a 2-D mask (ties: the first found).
    Per row, the run of True above each pixel is a histogram; a stack finds its largest rectangle in one pass."""
    best, where = 0, (slice(0, 0), slice(0, 0))
    heights = np.zeros(mask.shape[1] + 1, np.int64)  # a zero sentinel closes every open bar at the row's end
    for r, row in enumerate(mask):
        heights[:-1] = np.where(row, heights[:-1] + 1, 0)
        stack: list[int] = []
        for c, h in enumerate(heights):
            while stack and heights[stack[-1]] >= h:
                top = heights[stack.pop()]
                left = stack[-1] + 1 if stack else 0
                if top * (c - left) > best:
                    best, where = top * (c - left), (slice(r - top + 1, r + 1), slice(left, c))
            stack.append(c)
    return where


def inscribed_batches(records: list[Record], size: int, batch: int):
    """[B, 1, size, size] in [0, 1]: each image's inscribed scan-region rectangle, resized."""
    for i in range(0, len(records), batch):
        crops = []
        for rec in records[i : i + batch]:
            s = read_record(rec)
            rows, cols = inscribed_rectangle(s.scan_mask)
            x = torch.from_numpy(s.image[rows, cols]).float().div_(255)[None, None]
            crops.append(F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
        yield torch.cat(crops), None


@torch.no_grad()
def features(enc: encoders.FrozenEncoder, task: Task, size: int, stages: bool, crop: str) -> dict[str, np.ndarray]:
    """'pooled' (the encoder's own pooling) and, with stages, 'stage K' (stage K's map, mean-pooled)."""
    out: dict[str, list[torch.Tensor]] = {}
    records = task.splits["train"]
    batches = inscribed_batches(records, size, 64) if crop == "inscribed" else loader(records, size, 64)
    for x, _ in batches:
        x = enc.normalise(x)
        out.setdefault("pooled", []).append(enc.features(x))
        for k in range(len(enc.model.feature_info)) if stages else ():
            out.setdefault(f"stage {k}", []).append(enc.patch_map(x, k).mean((2, 3)))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def agreement(xy: np.ndarray, y: np.ndarray) -> str:
    return f"{100 * label_agreement(xy, y):3.0f} % (commonest {100 * np.bincount(y).max() / len(y):.0f} %)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7, help="simulation seed (a dev seed: this reads no test split)")
    ap.add_argument("--size", type=int, default=64, help="image size (the demo's SynthUS is 64 px)")
    ap.add_argument("--n", type=int, default=600, help="images per task")
    ap.add_argument("--tasks", default="lesion,organ,texture")
    ap.add_argument("--encoder", default="effnet-lite0:112", help="any zoo spec (`usjepa bench --help`)")
    ap.add_argument(ALLOW_FLAG, action="store_true", help="score tasks whose small splits lack a class (smoke runs)")
    ap.add_argument("--no-stages", action="store_true", help="pooled features only (ViTs: stages are timm CNNs')")
    ap.add_argument(
        "--crop", choices=("none", "inscribed"), default="none", help="inscribed: the scan region's largest rectangle"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    enc = encoders.load(args.encoder)
    stages = not args.no_stages and hasattr(enc.model, "feature_info")
    names = [f"synthus_{t}" for t in args.tasks.split(",")]
    crop = ", each image's inscribed scan-region rectangle" if args.crop == "inscribed" else ""
    print(f"{args.encoder}, SynthUS seed {args.seed}, {args.size} px{crop}, {MAP_NEIGHBOURS}-NN agreement in the t-SNE")
    with tempfile.TemporaryDirectory() as tmp:
        folders = write_suite(
            Path(tmp), img_size=args.size, n_per_task=args.n, corpus_size=0, seed=args.seed, tasks=names
        )
        for name, folder in folders.items():
            task = load_task(str(folder), allow_incomplete=args.allow_incomplete_tasks)
            y, probe = task.labels("train"), task.probe_kinds("train")
            feats = features(enc, task, enc.img_size, stages, args.crop)
            for what, x in feats.items():
                xy = tsne_2d(x)
                kinds = "one probe kind only" if probe is None else f"probe kind {agreement(xy, probe)}"
                print(f"{name:16s} {what:8s} label {agreement(xy, y)}  {kinds}")
            if probe is None:
                continue
            within = []
            for k, kind in enumerate(task.probe_kind_names("train")):
                one = probe == k
                within.append(f"{kind} {agreement(tsne_2d(feats['pooled'][one]), y[one]).strip()}, n {one.sum()}")
            print(f"{name:16s} label within one probe kind's map: " + "; ".join(within), flush=True)


if __name__ == "__main__":
    main()
