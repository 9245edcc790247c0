"""Test-set uncertainty for a benchmark's result rows: CIs per row group, paired comparisons per task.

Rows arrive with their per-image test predictions (``pred``, one list per seed row). A row group is one encoder x
task x protocol (x label fraction x corruption); its seeds' predictions are pooled into one bootstrap CI of the
seed-averaged macro-F1 (``usjepa.bench.stats``), which every row of the group carries as ci_low / ci_high. The
encoders' mean over tasks gets a CI too: per task the same stratified resamples, averaged over tasks. Each
task's encoder pairs are compared on the same test images, Holm-corrected across that task's pairs.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np

from usjepa.bench.stats import (
    RESAMPLES,
    holm,
    interval,
    macro_f1_draws,
    paired_test,
    stratified_counts,
)

COMPARED = ("linear", "knn", "finetune")  # protocols with one clean test score per encoder x task
GROUP = ("encoder", "task", "protocol", "fraction", "corruption", "severity")


def split_predictions(rows: list[dict]) -> tuple[list[dict], dict[tuple, np.ndarray]]:
    """Rows without their ``pred`` lists, and the predictions [seeds, N] of each row group (in row order)."""
    preds: dict[tuple, list] = defaultdict(list)
    clean = []
    for r in rows:
        r = dict(r)
        pred = r.pop("pred", None)
        if pred is not None:
            preds[tuple(r.get(k) for k in GROUP)].append(pred)
        clean.append(r)
    return clean, {k: np.asarray(v, dtype=np.int64) for k, v in preds.items()}


def annotate(
    rows: list[dict],
    preds: dict[tuple, np.ndarray],
    labels: dict[str, np.ndarray],
    n_classes: dict[str, int],
    resamples: int = RESAMPLES,
) -> dict:
    """Set ci_low / ci_high on every row that has predictions; return the comparisons and the mean-over-task CIs."""
    counts = {t: stratified_counts(y, resamples, np.random.default_rng(0)) for t, y in labels.items()}
    draws = {k: macro_f1_draws(labels[k[1]], p, n_classes[k[1]], counts[k[1]]) for k, p in preds.items()}
    ci = {k: interval(d) for k, d in draws.items()}
    for r in rows:
        k = tuple(r.get(f) for f in GROUP)
        if k in ci:
            r["ci_low"], r["ci_high"] = ci[k]
    return {"comparisons": _comparisons(preds, labels, n_classes, resamples), "mean_ci": _mean_ci(draws, list(labels))}


def _clean_groups(preds: dict[tuple, np.ndarray], protocol: str, task: str) -> dict[str, np.ndarray]:
    return {
        k[0]: p for k, p in preds.items() if k[1] == task and k[2] == protocol and k[3] in (None, 1.0) and k[4] is None
    }


def _comparisons(
    preds: dict[tuple, np.ndarray], labels: dict[str, np.ndarray], n_classes: dict[str, int], resamples: int
) -> list[dict]:
    out = []
    for protocol in COMPARED:
        for task, y in labels.items():
            groups = _clean_groups(preds, protocol, task)
            pairs = [(a, b) for a, b in combinations(groups, 2) if groups[a].shape == groups[b].shape]
            tests = [paired_test(y, groups[a], groups[b], n_classes[task], resamples) for a, b in pairs]
            for (a, b), t, p_holm in zip(pairs, tests, holm([t.p for t in tests]) if tests else []):
                out.append(
                    {
                        "task": task,
                        "protocol": protocol,
                        "a": a,
                        "b": b,
                        "diff": t.diff,
                        "ci_low": t.ci_low,
                        "ci_high": t.ci_high,
                        "p": t.p,
                        "p_holm": float(p_holm),
                    }
                )
    return out


def _mean_ci(draws: dict[tuple, np.ndarray], tasks: list[str]) -> dict[str, dict[str, list[float]]]:
    """protocol -> encoder -> CI of the mean over tasks (only where the encoder has every task)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for protocol in COMPARED:
        by_encoder: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        for k, d in draws.items():
            if k[2] == protocol and k[3] in (None, 1.0) and k[4] is None:
                by_encoder[k[0]][k[1]] = d
        for enc, per_task in by_encoder.items():
            if set(per_task) == set(tasks):
                out[protocol][enc] = list(interval(np.mean([per_task[t] for t in tasks], 0)))
    return dict(out)
