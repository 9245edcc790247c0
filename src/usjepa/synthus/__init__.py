"""SynthUS: a physics B-mode simulator (physics), phantoms, labelled and segmentation tasks whose labels live in
anatomy, morphology and texture (tasks), the UltraBench-layout writer (writer) and `usjepa simulate` (cli)."""

from usjepa.synthus.tasks import CORPUS, MASKS, SEGMENTATION, TASKS, Item, items, render
from usjepa.synthus.writer import write_preview, write_suite, write_task

__all__ = [
    "CORPUS",
    "MASKS",
    "SEGMENTATION",
    "TASKS",
    "Item",
    "items",
    "render",
    "write_preview",
    "write_suite",
    "write_task",
]
