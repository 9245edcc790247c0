"""Leaderboard tables: single-number cells, and robustness changes flagged where the clean score is near chance."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from usjepa.bench.report import TsneMap, label_agreement, tables, tsne_figure


def _results() -> dict:
    rows = []
    for enc, clean, drop in (("near", 0.52, 0.30), ("far", 0.90, -0.10)):
        for seed in range(2):
            rows += [
                {
                    "encoder": enc,
                    "task": "t",
                    "protocol": "linear",
                    "seed": seed,
                    "macro_f1": clean,
                    "effective_rank": 7.0,
                },
                {
                    "encoder": enc,
                    "task": "t",
                    "protocol": "robust",
                    "seed": seed,
                    "corruption": "speckle",
                    "severity": 3,
                    "macro_f1": clean * (1 + drop),
                    "relative_drop": drop,
                },
            ]
    return {"rows": rows, "encoders": {"near": {}, "far": {}}, "tasks": {"t": {"chance_macro_f1": 0.5}}}


def test_a_change_from_a_near_chance_score_is_flagged_and_never_the_best():
    by_task = next(t for t in tables(_results()) if t.title.startswith("Robustness, speckle@3 by task"))
    cells = {row[0][0]: row[1] for row in by_task.cells()}
    assert cells["near"] == ("30.0±0.0†", False)  # the larger value, but 2 points above chance: noise, not robustness
    assert cells["far"] == ("-10.0±0.0", True)
    overall = next(t for t in tables(_results()) if t.title.startswith("Robustness: relative change"))
    assert {row[0][0]: row[1] for row in overall.cells()}["near"] == ("30.0±0.0", True)  # flags are per task only


def test_effective_rank_is_one_value_per_task():
    rank = next(t for t in tables(_results()) if t.title.startswith("Feature effective rank"))
    assert [c for c, _ in rank.cells()[0][1:]] == [
        "7.0",
        "7.0±0.0",
    ]  # the task's value; the mean column's sd is over tasks


def test_label_agreement_tells_a_map_grouped_by_label_from_one_grouped_by_something_else():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    by_label = rng.normal(size=(180, 2)) * 0.3 + np.array([[0, 0], [5, 0], [0, 5]])[y]
    assert label_agreement(by_label, y) == 1.0
    nuisance = rng.integers(3, size=180)  # clusters by a variable independent of the label
    by_nuisance = rng.normal(size=(180, 2)) * 0.3 + np.array([[0, 0], [5, 0], [0, 5]])[nuisance]
    assert abs(label_agreement(by_nuisance, y) - 1 / 3) < 0.12
    assert np.isnan(label_agreement(by_label[:1], y[:1]))  # no neighbour to ask


def test_the_tsne_figure_prints_each_maps_label_agreement():
    y = np.repeat([0, 1], 15)
    xy = np.random.default_rng(0).normal(size=(30, 2)) + 9 * y[:, None]
    fig = tsne_figure({("enc", "task"): TsneMap(xy, y)}, ["enc"], ["task"])
    assert fig.axes[0].get_xlabel() == "10-NN label agreement 100 % (commonest 50 %)"
    plt.close(fig)


def test_the_tsne_figure_says_when_a_map_groups_by_probe_kind_instead():
    rng = np.random.default_rng(0)
    y, probe = np.tile([0, 1], 20), np.repeat([0, 1, 2, 3], 10)  # the probe is independent of the label
    xy = rng.normal(size=(40, 2)) * 0.3 + 9 * np.stack([probe % 2, probe // 2], 1)  # four islands, one per probe
    fig = tsne_figure({("enc", "task"): TsneMap(xy, y, probe)}, ["enc"], ["task"])
    label_line, probe_line = fig.axes[0].get_xlabel().split("\n")
    assert probe_line == "probe kind 100 % (commonest 25 %)"
    assert int(label_line.split()[3]) <= 50, label_line  # each island holds both labels alike


def test_the_tsne_figure_marks_each_probe_kind_and_names_them_in_a_legend():
    y, probe = np.tile([0, 1], 15), np.repeat([0, 1, 2], 10)
    xy = np.random.default_rng(0).normal(size=(30, 2))
    kinds = ("convex", "linear", "phased")
    fig = tsne_figure({("enc", "task"): TsneMap(xy, y, probe, kinds)}, ["enc"], ["task"])
    points = fig.axes[0].collections
    assert [len(c.get_offsets()) for c in points] == [10, 10, 10]  # one scatter per probe kind
    assert len({c.get_paths()[0].vertices.tobytes() for c in points}) == 3  # with three different markers
    assert [c.get_array().tolist() for c in points] == [y[probe == k].tolist() for k in range(3)]  # colour: label
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "probe kind"
    assert [t.get_text() for t in legend.get_texts()] == list(kinds)
    plt.close(fig)
    plain = tsne_figure({("enc", "task"): TsneMap(xy, y)}, ["enc"], ["task"])
    assert len(plain.axes[0].collections) == 1 and not plain.legends  # no probe kinds: one scatter, no legend
    plt.close(plain)
