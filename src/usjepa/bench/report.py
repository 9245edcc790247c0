"""Benchmark outputs: results.json, results.csv, leaderboard.md, plots, and one self-contained report.html."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

MAP_NEIGHBOURS = 10  # the t-SNE panels' label agreement: neighbours asked per point
PROBE_MARKERS = "o^sDvP"  # the t-SNE panels' marker per probe kind
NEAR_CHANCE = 5.0  # points of macro-F1 above chance below which a relative change is flagged
CSV_FIELDS = (
    "encoder",
    "task",
    "protocol",
    "seed",
    "fraction",
    "corruption",
    "severity",
    "macro_f1",
    "ci_low",
    "ci_high",
    "acc",
    "bal_acc",
    "auroc",
    "relative_drop",
    "effective_rank",
    "val_macro_f1",
    "best_epoch",
    "lr",
    "pooling",
    "weights_fingerprint",
    "split_hash",
)
ALPHA = 0.05  # paired tests: Holm-adjusted p below this is "significantly better"
TIED = "≈"  # beside a cell indistinguishable from its column's bold best


class TsneMap(NamedTuple):
    """One encoder's t-SNE of one task's test features: points, their labels and, where the records name it,
    their probe kind (an index), to show whether the map groups by the label or by the acquisition."""

    xy: np.ndarray
    y: np.ndarray
    probe: np.ndarray | None = None
    kinds: tuple[str, ...] = ()  # the probe kinds' names, by index


@dataclass
class Table:
    """Cells are (mean, sd), (mean, (ci_low, ci_high)), (value, None) for a single number, text, or None; the best
    unflagged numeric cell of a column is bold."""

    title: str
    columns: list[str]
    rows: dict[str, list[tuple[float, float | tuple[float, float] | None] | str | None]]
    flagged: dict[str, list[bool]] = field(default_factory=dict)  # cells marked with a dagger, explained in the title
    tied: dict[str, list[bool]] = field(default_factory=dict)  # cells marked TIED: not significantly below the best

    def _unflagged(self) -> dict[str, list[tuple[float, float | None] | None]]:
        return {
            name: [
                None if f or isinstance(v, str) else v
                for v, f in zip(vals, self.flagged.get(name, [False] * len(vals)))
            ]
            for name, vals in self.rows.items()
        }

    def best(self) -> list[float | None]:
        """The best mean of each column, among cells that are not flagged."""
        return [max((c[0] for c in col if c is not None), default=None) for col in zip(*self._unflagged().values())]

    def cells(self) -> list[list[tuple[str, bool]]]:
        """Formatted cells with a bold flag, one list per row (encoder first)."""
        best, unflagged = self.best(), self._unflagged()
        out = []
        for name, vals in self.rows.items():
            row = [(name, False)]
            for v, u, b, tie in zip(vals, unflagged[name], best, self.tied.get(name, [False] * len(vals))):
                bold = u is not None and b is not None and bool(np.isclose(u[0], b))
                mark = (
                    "†" if v is not None and u is None and not isinstance(v, str) else TIED if tie and not bold else ""
                )
                row.append((_format(v) + mark, bold))
            out.append(row)
        return out


def _format(v: tuple[float, float | tuple[float, float] | None] | str | None) -> str:
    if v is None or isinstance(v, str):
        return v or "–"
    if v[1] is None:
        return f"{v[0]:.1f}"
    if isinstance(v[1], tuple):
        return f"{v[0]:.1f} [{v[1][0]:.1f}, {v[1][1]:.1f}]"
    return f"{v[0]:.1f}±{v[1]:.1f}"


def _stats(rows: list[dict], metric: str = "macro_f1") -> tuple[float, float] | None:
    """Mean and sd in percent."""
    vals = [r[metric] for r in rows if r.get(metric) is not None and not np.isnan(r[metric])]
    return (100 * float(np.mean(vals)), 100 * float(np.std(vals))) if vals else None


def _single(rows: list[dict], metric: str) -> tuple[float, None] | None:
    """A value that every row repeats (a property of the features, not of a seed)."""
    return (float(rows[0][metric]), None) if rows and rows[0].get(metric) is not None else None


def _select(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


TITLES = {"linear": "Linear probe", "knn": "kNN (cosine, k = 20)", "finetune": "Full fine-tuning (layer-wise lr decay)"}


def preset_label(results: dict) -> str:
    """Which probe protocol produced the probe tables (linear, few-shot, robustness)."""
    proto = results.get("protocol")
    if not proto:
        return ""
    g = proto["grid"]
    lrs, pools = ", ".join(f"{v:g}" for v in g["lrs"]), ", ".join(g["poolings"]) or "each encoder's own"
    cs = f" x L2 C {{{', '.join(f'{v:g}' for v in g['cs'])}}}" if g.get("cs") else ""
    stop = "early stopping on validation" if g["probe"]["early_stopping"] else "last epoch kept"
    return (
        f"probe preset '{proto['preset']}': lr {{{lrs}}}{cs} x pooling {{{pools}}}, {stop}, chosen per seed on "
        "validation"
    )


INCOMPLETE = "‡"  # marks a task scored although a split lacks a class (bench --allow-incomplete-tasks)


def task_columns(results: dict) -> list[str]:
    """Task names as column headers; a task scored with a warning carries INCOMPLETE."""
    return [t + (INCOMPLETE if info.get("warning") else "") for t, info in results["tasks"].items()]


def warnings_note(results: dict) -> list[str]:
    return [
        f"{INCOMPLETE} {info['warning']}: scored anyway, not comparable"
        for info in results["tasks"].values()
        if info.get("warning")
    ]


def tables(results: dict) -> list[Table]:
    rows, encs, tasks = results["rows"], list(results["encoders"]), list(results["tasks"])
    columns = [*task_columns(results), "mean"]
    out = [score_table(results, proto) for proto in TITLES if _select(rows, protocol=proto)]
    if any("effective_rank" in r for r in _select(rows, protocol="linear")):
        ranks = {
            e: [_single(_select(rows, protocol="linear", encoder=e, task=t), "effective_rank") for t in tasks]
            for e in encs
        }  # one value per encoder x task: every seed's row carries the same features' rank
        out.append(
            Table(
                "Feature effective rank (RankMe of the standardised train features, at most the feature width; "
                "collapse shows as a low rank)",
                columns,
                {e: [*v, _mean_of(v)] for e, v in ranks.items()},
            )
        )
    fractions = sorted({r["fraction"] for r in _select(rows, protocol="fewshot")})
    if fractions:
        out.append(
            Table(
                "Few-shot: test macro-F1 % by label fraction (mean ± sd over tasks and seeds; "
                f"{preset_label(results)})",
                [f"{f:.0%}" for f in fractions],
                {
                    e: [_stats(_select(rows, protocol="fewshot", encoder=e, fraction=f)) for f in fractions]
                    for e in encs
                },
            )
        )
    conds = sorted({(r["corruption"], r["severity"]) for r in _select(rows, protocol="robust")})
    if conds:
        out.append(
            Table(
                "Robustness: relative change of test macro-F1 % vs clean (mean ± sd over tasks and seeds)",
                [f"{c}@{s}" for c, s in conds],
                {
                    e: [
                        _stats(_select(rows, protocol="robust", encoder=e, corruption=c, severity=s), "relative_drop")
                        for c, s in conds
                    ]
                    for e in encs
                },
            )
        )
    near_chance = {e: [_near_chance(results, rows, e, t) for t in tasks] + [False] for e in encs}
    for kind in sorted({c for c, _ in conds}):  # the strongest severity of each corruption, task by task
        top = max(s for c, s in conds if c == kind)
        cell = {
            e: [
                _stats(
                    _select(rows, protocol="robust", encoder=e, task=t, corruption=kind, severity=top), "relative_drop"
                )
                for t in tasks
            ]
            for e in encs
        }
        out.append(
            Table(
                f"Robustness, {kind}@{top} by task: relative change of test macro-F1 % vs clean "
                f"(mean ± sd over seeds; † clean score within {NEAR_CHANCE:g} points of chance, so the change "
                "is mostly noise)",
                columns,
                {e: [*v, _mean_of(v)] for e, v in cell.items()},
                near_chance,
            )
        )
    return out


# --- test-set uncertainty: CI cells, "indistinguishable from the best" marks, significance matrices ---


def score_table(results: dict, proto: str) -> Table:
    """One protocol's test macro-F1 by task: mean over seeds [95 % bootstrap CI over test images]; TIED marks the
    cells whose paired test against the column's best is not significant after Holm's correction."""
    rows, encs, tasks = results["rows"], list(results["encoders"]), list(results["tasks"])
    cells = {e: [_ci_cell(_select(rows, protocol=proto, encoder=e, task=t)) for t in tasks] for e in encs}
    mean_ci = results.get("mean_ci", {}).get(proto, {})
    for e, per_task in cells.items():
        mean = _mean_of(per_task)
        per_task.append(mean if mean is None or e not in mean_ci else (mean[0], tuple(100 * v for v in mean_ci[e])))
    table = Table("", [*task_columns(results), "mean"], cells)
    best = table.best()
    table.tied = {
        e: [_indistinguishable(results, proto, t, e, b, cells) for t, b in zip(tasks, best)] + [False] for e in encs
    }
    preset = f"; {preset_label(results)}" if proto == "linear" and preset_label(results) else ""
    spread = "[95 % bootstrap CI over test images, seeds pooled]" if "ci_low" in (rows[0] if rows else {}) else "± sd"
    table.title = (
        f"{TITLES[proto]}: test macro-F1 %, mean over seeds {spread}; bold: best, {TIED}: not significantly "
        f"below the best (paired permutation test, Holm-adjusted p ≥ {ALPHA:g}){preset}"
    )
    return table


def _ci_cell(rows: list[dict]) -> tuple[float, tuple[float, float] | float] | None:
    st = _stats(rows)
    if st is None or rows[0].get("ci_low") is None:
        return st
    return st[0], (100 * rows[0]["ci_low"], 100 * rows[0]["ci_high"])


def _comparison(results: dict, proto: str, task: str, a: str, b: str) -> dict | None:
    """The paired comparison of a and b, oriented as a minus b."""
    for c in results.get("comparisons", []):
        if c["protocol"] == proto and c["task"] == task and {c["a"], c["b"]} == {a, b}:
            flip = c["a"] != a
            lo, hi = (-c["ci_high"], -c["ci_low"]) if flip else (c["ci_low"], c["ci_high"])
            return c | {"a": a, "b": b, "diff": -c["diff"] if flip else c["diff"], "ci_low": lo, "ci_high": hi}
    return None


def _indistinguishable(results: dict, proto: str, task: str, enc: str, best: float | None, cells: dict) -> bool:
    leader = next(
        (
            e
            for e, v in cells.items()
            if best is not None
            and v[list(results["tasks"]).index(task)] is not None
            and np.isclose(v[list(results["tasks"]).index(task)][0], best)
        ),
        None,
    )
    if leader is None or leader == enc:
        return False
    c = _comparison(results, proto, task, enc, leader)
    return c is not None and c["p_holm"] >= ALPHA


def significance_tables(results: dict) -> list[Table]:
    """Per protocol and task: row minus column in macro-F1 points [95 % paired CI], Holm-adjusted p; ▲ where the row
    is significantly better than the column, ▼ where significantly worse."""
    encs, out = list(results["encoders"]), []
    for proto, title in TITLES.items():
        for task in results["tasks"]:
            if not any(c["protocol"] == proto and c["task"] == task for c in results.get("comparisons", [])):
                continue
            cells: dict[str, list] = {}
            for a in encs:
                cells[a] = []
                for b in encs:
                    c = None if a == b else _comparison(results, proto, task, a, b)
                    cells[a].append("" if c is None else _matrix_cell(c))
            out.append(
                Table(
                    f"{title}, {task}: significantly better than? Row minus column, test macro-F1 "
                    f"points [95 % paired bootstrap CI], Holm-adjusted permutation p over the task's pairs; "
                    f"▲ row significantly better (p < {ALPHA:g}), ▼ significantly worse",
                    encs,
                    cells,
                )
            )
    return out


def _matrix_cell(c: dict) -> str:
    sig = c["p_holm"] < ALPHA
    mark = ("▲ " if c["diff"] > 0 else "▼ ") if sig else ""
    return f"{mark}{100 * c['diff']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] p={c['p_holm']:.3g}"


def _near_chance(results: dict, rows: list[dict], encoder: str, task: str) -> bool:
    """Is the encoder's clean linear-probe score on the task within NEAR_CHANCE points of the featureless one?"""
    clean = _stats(_select(rows, protocol="linear", encoder=encoder, task=task))
    return clean is not None and clean[0] < 100 * results["tasks"][task]["chance_macro_f1"] + NEAR_CHANCE


def _mean_of(cells: list[tuple[float, float | None] | None]) -> tuple[float, float] | None:
    means = [c[0] for c in cells if c is not None]
    return (float(np.mean(means)), float(np.std(means))) if means and len(means) == len(cells) else None


def to_markdown(t: Table) -> str:
    lines = [f"### {t.title}", "", "| encoder | " + " | ".join(t.columns) + " |", "|---" * (len(t.columns) + 1) + "|"]
    for row in t.cells():
        lines.append("| " + " | ".join(f"**{s}**" if bold else s for s, bold in row) + " |")
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["encoder", *t.columns])
    body = "".join(
        "<tr>"
        + "".join(f"<td>{'<b>' if b else ''}{html.escape(s)}{'</b>' if b else ''}</td>" for s, b in row)
        + "</tr>"
        for row in t.cells()
    )
    return f"<h3>{html.escape(t.title)}</h3><table><tr>{head}</tr>{body}</table>"


def _curves(
    results: dict, points: Callable[[list[dict]], tuple[list[float], list]], title: Callable[[str], str], **axes_kw
) -> plt.Figure:
    """One panel per task, one line per encoder: mean ± sd of test macro-F1 at the points ``points`` picks."""
    tasks = list(results["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for enc in results["encoders"]:
            x, st = points(_select(results["rows"], task=task, encoder=enc))
            ax.errorbar(x, [s[0] for s in st], yerr=[s[1] for s in st], marker="o", capsize=3, label=enc)
        ax.set(title=title(task), ylabel="test macro-F1 (%)", **axes_kw)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fewshot_figure(results: dict) -> plt.Figure:
    def points(rows: list[dict]) -> tuple[list[float], list]:
        fractions = sorted({r["fraction"] for r in _select(rows, protocol="fewshot")})
        return [100 * f for f in fractions], [_stats(_select(rows, protocol="fewshot", fraction=f)) for f in fractions]

    return _curves(results, points, lambda task: task, xscale="log", xlabel="labels used (%)")


def robustness_figure(results: dict, corruption: str) -> plt.Figure:
    def points(rows: list[dict]) -> tuple[list[float], list]:
        sevs = sorted({r["severity"] for r in _select(rows, protocol="robust", corruption=corruption)})
        return [0, *sevs], [_stats(_select(rows, protocol="linear"))] + [
            _stats(_select(rows, protocol="robust", corruption=corruption, severity=s)) for s in sevs
        ]

    return _curves(results, points, lambda task: f"{task}: {corruption}", xlabel="severity ε", xticks=range(4))


def label_agreement(xy: np.ndarray, y: np.ndarray, k: int = MAP_NEIGHBOURS) -> float:
    """Share of points whose k nearest neighbours in the embedding (the point left out) mostly carry its label:
    how far a map groups by label (or by any per-point variable, such as the probe kind). A map that ignores it
    scores about the commonest value's share."""
    k = min(k, len(y) - 1)
    if k < 1:
        return float("nan")
    near = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy, return_distance=False)[:, 1:]
    votes = np.stack([np.bincount(row, minlength=int(y.max()) + 1) for row in y[near]])
    return float(np.mean(votes.argmax(1) == y))


def tsne_figure(maps: dict[tuple[str, str], TsneMap], encs: list[str], tasks: list[str]) -> plt.Figure:
    fig, axes = plt.subplots(len(tasks), len(encs), figsize=(2.6 * len(encs), 2.6 * len(tasks)), squeeze=False)
    kinds: dict[str, str] = {}  # probe kind -> its marker, for the legend
    for i, task in enumerate(tasks):
        for j, enc in enumerate(encs):
            ax, m = axes[i][j], maps[(enc, task)]
            probe = np.zeros(len(m.y), np.int64) if m.probe is None else m.probe
            for k in np.unique(probe):  # colour: the label; marker: the probe kind, where the records name it
                one = probe == k
                marker = PROBE_MARKERS[k % len(PROBE_MARKERS)]  # "o" for a map without probe kinds
                ax.scatter(m.xy[one, 0], m.xy[one, 1], c=m.y[one], cmap="tab10", s=6, vmin=0, vmax=9, marker=marker)
                if k < len(m.kinds):
                    kinds[m.kinds[k]] = marker
            lines = [_agreement_line(f"{MAP_NEIGHBOURS}-NN label agreement", m.xy, m.y)]
            lines += [] if m.probe is None else [_agreement_line("probe kind", m.xy, m.probe)]
            ax.set_xlabel("\n".join(lines), fontsize=5.5)  # under the map, clear of its points
            ax.set(xticks=[], yticks=[])
            ax.set_title(enc, fontsize=8) if i == 0 else None
            ax.set_ylabel(task, fontsize=8) if j == 0 else None
    title = (
        "t-SNE of clean test features, coloured by label; under each map, the share of points whose "
        f"{MAP_NEIGHBOURS} nearest neighbours mostly carry their label (and, where the records name it, their "
        "probe kind)"
    )
    fig.suptitle(textwrap.fill(title, 24 * len(encs)), fontsize=9)  # a 2.6-inch panel holds about 24 characters
    if kinds:
        handles = [Line2D([], [], marker=mk, color="grey", linestyle="", label=k) for k, mk in sorted(kinds.items())]
        fig.legend(handles=handles, title="probe kind", loc="lower center", ncol=len(handles), fontsize=7)
    fig.tight_layout(rect=(0, 0.06 if kinds else 0, 1, 1))
    return fig


def _agreement_line(what: str, xy: np.ndarray, y: np.ndarray) -> str:
    agree, share = 100 * label_agreement(xy, y), 100 * np.bincount(y).max() / len(y)
    return f"{what} {agree:.0f} % (commonest {share:.0f} %)"


def monitor_curves(results: dict) -> dict[str, dict[int, dict]]:
    """Training-monitor rows by step (rank, knn_TASK, linear_TASK) of each usjepa encoder whose run logged them."""
    curves = {}
    for name, info in results["encoders"].items():
        kind, _, arg = info["spec"].partition(":")
        run = Path(arg).parent if (Path(arg) / "card.json").is_file() else Path(arg)  # an export sits in its run
        if kind != "usjepa" or not (run / "metrics.csv").is_file():
            continue  # another kind of encoder, or a run from before the monitor
        with open(run / "metrics.csv") as f:
            rows = {int(r["step"]): r for r in csv.DictReader(f) if r.get("rank")}
        if rows:
            curves[name] = dict(sorted(rows.items()))
    return curves


def monitor_figure(curves: dict[str, dict[int, dict]]) -> plt.Figure:
    """Feature effective rank and online-probe validation macro-F1 (mean over the monitor's tasks) against the
    pretraining step, one line per pretrained encoder: linear probe solid, kNN dashed."""
    fig, (ax_rank, ax_probe) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, rows in curves.items():
        steps, first = list(rows), next(iter(rows.values()))
        (line,) = ax_rank.plot(steps, [float(r["rank"]) for r in rows.values()], marker=".", label=name)
        for probe, style in (("linear", "-"), ("knn", "--")):
            cols = [k for k in first if k.startswith(f"{probe}_")]
            if cols:
                ax_probe.plot(
                    steps,
                    [100 * np.mean([float(r[c]) for c in cols]) for r in rows.values()],
                    style,
                    marker=".",
                    color=line.get_color(),
                    label=f"{name} {probe}",
                )
    ax_rank.set(title="feature effective rank (held-out corpus images)", xlabel="pretraining step", ylabel="RankMe")
    ax_probe.set(
        title="online probe: linear (solid), kNN (dashed)", xlabel="pretraining step", ylabel="val macro-F1 (%)"
    )
    for ax in (ax_rank, ax_probe):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _png(fig: plt.Figure, path: Path) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def write_report(out: Path, results: dict, maps: dict[tuple[str, str], TsneMap]) -> dict[str, Path]:
    """Write every artefact into ``out``; returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    paths = {
        "json": out / "results.json",
        "csv": out / "results.csv",
        "md": out / "leaderboard.md",
        "html": out / "report.html",
    }
    paths["json"].write_text(json.dumps(results, indent=1))
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(results["rows"])
    tabs, matrices = tables(results), significance_tables(results)
    preset = f"Probe tables by the {preset_label(results)}.\n\n" if preset_label(results) else ""
    note = "".join(f"{line}\n\n" for line in warnings_note(results))
    paths["md"].write_text(
        "# Leaderboard\n\n"
        + preset
        + note
        + "\n".join(to_markdown(t) for t in tabs)
        + ("\n## Paired comparisons\n\n" + "\n".join(to_markdown(t) for t in matrices) if matrices else "")
    )
    figures = {"fewshot": fewshot_figure(results)} if _select(results["rows"], protocol="fewshot") else {}
    for c in sorted({r["corruption"] for r in _select(results["rows"], protocol="robust")}):
        figures[f"robust_{c}"] = robustness_figure(results, c)
    figures["tsne"] = tsne_figure(maps, list(results["encoders"]), list(results["tasks"]))
    if curves := monitor_curves(results):
        figures["monitor"] = monitor_figure(curves)
    images = {name: _png(fig, out / "plots" / f"{name}.png") for name, fig in figures.items()}
    paths |= {name: out / "plots" / f"{name}.png" for name in images}
    paths["html"].write_text(_html(results, tabs, matrices, images))
    return paths


def _html(results: dict, tabs: list[Table], matrices: list[Table], images: dict[str, bytes]) -> str:
    prov = results["provenance"]
    enc_rows = "".join(
        f"<tr><td>{html.escape(s)}</td><td><code>{html.escape(e.get('spec', s))}</code></td>"
        f"<td><code>{e['fingerprint'][:16]}</code></td>"
        f"<td><code>{(e['weights_sha256'] or '–')[:16]}</code></td><td>{e['in_chans']}×{e['img_size']}²</td>"
        f"<td>{e['pooling']}</td></tr>"
        for s, e in results["encoders"].items()
    )
    task_rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{t['n_classes']}</td><td>{t['sizes']['train']} / {t['sizes']['val']} / "
        f"{t['sizes']['test']}</td><td><code>{t['split_hash'][:16]}</code></td><td>{t['version'] or '–'}</td></tr>"
        for n, t in results["tasks"].items()
    )
    imgs = "".join(
        f"<h3>{html.escape(name)}</h3><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for name, png in images.items()
    )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}th{background:#eee}img{max-width:100%}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>usjepa "
        f"bench</title><style>{style}</style></head><body>"
        f"<h1>usjepa benchmark</h1><p>usjepa {prov['usjepa_version']} · commit {prov['git_commit'] or 'unknown'} · "
        f"{prov['created']} · seeds {results['config']['seeds']}</p><p>{html.escape(preset_label(results))}</p>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in warnings_note(results))
        + "".join(to_html(t) for t in tabs)
        + ("<h2>Paired comparisons</h2>" + "".join(to_html(t) for t in matrices) if matrices else "")
        + "<h2>Plots</h2>"
        + imgs
        + "<h2>Inputs</h2><table><tr><th>encoder</th><th>spec</th><th>weights fingerprint</th><th>file "
        "sha256</th><th>input</th>"
        f"<th>pooling</th></tr>{enc_rows}</table><table><tr><th>task</th><th>classes</th><th>train / val / test</th>"
        f"<th>split hash</th><th>UltraBench</th></tr>{task_rows}</table><h2>Resolved config</h2><pre>"
        + html.escape(json.dumps(results["config"], indent=1))
        + "</pre></body></html>"
    )
