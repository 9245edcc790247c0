"""Benchmark outputs: results.json, results.csv, leaderboard.md, plots, and one self-contained report.html."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

NEAR_CHANCE = 5.0  # points of macro-F1 above chance below which a relative change is flagged
CSV_FIELDS = ("encoder", "task", "protocol", "seed", "fraction", "corruption", "severity", "macro_f1", "acc", "bal_acc",
              "auroc", "relative_drop", "effective_rank", "val_macro_f1", "best_epoch", "lr", "weights_fingerprint",
              "split_hash")


@dataclass
class Table:
    """Cells are (mean, sd), (value, None) for a single number, or None; the best unflagged cell of a column is bold."""

    title: str
    columns: list[str]
    rows: dict[str, list[tuple[float, float | None] | None]]
    flagged: dict[str, list[bool]] = field(default_factory=dict)  # cells marked with a dagger, explained in the title

    def _unflagged(self) -> dict[str, list[tuple[float, float | None] | None]]:
        return {name: [None if f else v for v, f in zip(vals, self.flagged.get(name, [False] * len(vals)))]
                for name, vals in self.rows.items()}

    def best(self) -> list[float | None]:
        """The best mean of each column, among cells that are not flagged."""
        return [max((c[0] for c in col if c is not None), default=None) for col in zip(*self._unflagged().values())]

    def cells(self) -> list[list[tuple[str, bool]]]:
        """Formatted cells with a bold flag, one list per row (encoder first)."""
        best, unflagged = self.best(), self._unflagged()
        out = []
        for name, vals in self.rows.items():
            row = [(name, False)]
            for v, u, b in zip(vals, unflagged[name], best):
                text = "–" if v is None else f"{v[0]:.1f}" if v[1] is None else f"{v[0]:.1f}±{v[1]:.1f}"
                row.append((text + ("†" if v is not None and u is None else ""),
                            u is not None and b is not None and bool(np.isclose(u[0], b))))
            out.append(row)
        return out


def _stats(rows: list[dict], metric: str = "macro_f1") -> tuple[float, float] | None:
    """Mean and sd in percent."""
    vals = [r[metric] for r in rows if r.get(metric) is not None and not np.isnan(r[metric])]
    return (100 * float(np.mean(vals)), 100 * float(np.std(vals))) if vals else None


def _single(rows: list[dict], metric: str) -> tuple[float, None] | None:
    """A value that every row repeats (a property of the features, not of a seed)."""
    return (float(rows[0][metric]), None) if rows and rows[0].get(metric) is not None else None


def _select(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


INCOMPLETE = "‡"  # marks a task scored although a split lacks a class (bench --allow-incomplete-tasks)


def task_columns(results: dict) -> list[str]:
    """Task names as column headers; a task scored with a warning carries INCOMPLETE."""
    return [t + (INCOMPLETE if info.get("warning") else "") for t, info in results["tasks"].items()]


def warnings_note(results: dict) -> list[str]:
    return [f"{INCOMPLETE} {info['warning']}: scored anyway, not comparable" for info in results["tasks"].values()
            if info.get("warning")]


def tables(results: dict) -> list[Table]:
    rows, encs, tasks = results["rows"], list(results["encoders"]), list(results["tasks"])
    columns = [*task_columns(results), "mean"]
    out = []
    titles = {"linear": "Linear probe", "knn": "kNN (cosine, k = 20)", "finetune": "Full fine-tuning (layer-wise lr decay)"}
    for proto, title in titles.items():
        if _select(rows, protocol=proto):
            out.append(Table(f"{title}: test macro-F1 %, mean ± sd over seeds", columns,
                             {e: [_stats(_select(rows, protocol=proto, encoder=e, task=t)) for t in tasks]
                              + [_mean_of([_stats(_select(rows, protocol=proto, encoder=e, task=t)) for t in tasks])]
                              for e in encs}))
    if any("effective_rank" in r for r in _select(rows, protocol="linear")):
        ranks = {e: [_single(_select(rows, protocol="linear", encoder=e, task=t), "effective_rank") for t in tasks]
                 for e in encs}  # one value per encoder x task: every seed's row carries the same features' rank
        out.append(Table("Feature effective rank (RankMe of the standardised train features, at most the feature width; "
                         "collapse shows as a low rank)", columns, {e: [*v, _mean_of(v)] for e, v in ranks.items()}))
    fractions = sorted({r["fraction"] for r in _select(rows, protocol="fewshot")})
    if fractions:
        out.append(Table("Few-shot: test macro-F1 % by label fraction (mean ± sd over tasks and seeds)",
                         [f"{f:.0%}" for f in fractions],
                         {e: [_stats(_select(rows, protocol="fewshot", encoder=e, fraction=f)) for f in fractions] for e in encs}))
    conds = sorted({(r["corruption"], r["severity"]) for r in _select(rows, protocol="robust")})
    if conds:
        out.append(Table("Robustness: relative change of test macro-F1 % vs clean (mean ± sd over tasks and seeds)",
                         [f"{c}@{s}" for c, s in conds],
                         {e: [_stats(_select(rows, protocol="robust", encoder=e, corruption=c, severity=s), "relative_drop")
                              for c, s in conds] for e in encs}))
    near_chance = {e: [_near_chance(results, rows, e, t) for t in tasks] + [False] for e in encs}
    for kind in sorted({c for c, _ in conds}):  # the strongest severity of each corruption, task by task
        top = max(s for c, s in conds if c == kind)
        cell = {e: [_stats(_select(rows, protocol="robust", encoder=e, task=t, corruption=kind, severity=top),
                           "relative_drop") for t in tasks] for e in encs}
        out.append(Table(f"Robustness, {kind}@{top} by task: relative change of test macro-F1 % vs clean "
                         f"(mean ± sd over seeds; † clean score within {NEAR_CHANCE:g} points of chance, so the change "
                         "is mostly noise)", columns, {e: [*v, _mean_of(v)] for e, v in cell.items()}, near_chance))
    return out


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
    body = "".join("<tr>" + "".join(f"<td>{'<b>' if b else ''}{html.escape(s)}{'</b>' if b else ''}</td>" for s, b in row)
                   + "</tr>" for row in t.cells())
    return f"<h3>{html.escape(t.title)}</h3><table><tr>{head}</tr>{body}</table>"


def _curves(results: dict, points: Callable[[list[dict]], tuple[list[float], list]], title: Callable[[str], str],
            **axes_kw) -> plt.Figure:
    """One panel per task, one line per encoder: mean ± sd of test macro-F1 at the points ``points`` picks."""
    tasks = list(results["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for enc in results["encoders"]:
            x, st = points(_select(results["rows"], task=task, encoder=enc))
            ax.errorbar(x, [s[0] for s in st], yerr=[s[1] for s in st], marker="o", capsize=3, label=_short(enc))
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
        return [0, *sevs], [_stats(_select(rows, protocol="linear"))] + \
            [_stats(_select(rows, protocol="robust", corruption=corruption, severity=s)) for s in sevs]

    return _curves(results, points, lambda task: f"{task}: {corruption}", xlabel="severity ε", xticks=range(4))


def tsne_figure(embeddings: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], encs: list[str], tasks: list[str]) -> plt.Figure:
    fig, axes = plt.subplots(len(tasks), len(encs), figsize=(2.6 * len(encs), 2.6 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for j, enc in enumerate(encs):
            ax = axes[i][j]
            xy, y = embeddings[(enc, task)]
            ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", s=6, vmin=0, vmax=9)
            ax.set(xticks=[], yticks=[])
            ax.set_title(_short(enc), fontsize=8) if i == 0 else None
            ax.set_ylabel(task, fontsize=8) if j == 0 else None
    fig.suptitle("t-SNE of clean test features, coloured by label")
    fig.tight_layout()
    return fig


def _short(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    path = Path(arg.split("@")[0])
    name = path.parent.name if path.name == "export" else path.name  # a run's export/ is named by its run
    return spec if not arg else f"{kind}:{name or arg}"


def _png(fig: plt.Figure, path: Path) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def write_report(out: Path, results: dict, embeddings: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]) -> dict[str, Path]:
    """Write every artefact into ``out``; returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "leaderboard.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(results, indent=1))
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(results["rows"])
    tabs = tables(results)
    note = "".join(f"{line}\n\n" for line in warnings_note(results))
    paths["md"].write_text("# Leaderboard\n\n" + note + "\n".join(to_markdown(t) for t in tabs))
    figures = {"fewshot": fewshot_figure(results)} if _select(results["rows"], protocol="fewshot") else {}
    for c in sorted({r["corruption"] for r in _select(results["rows"], protocol="robust")}):
        figures[f"robust_{c}"] = robustness_figure(results, c)
    figures["tsne"] = tsne_figure(embeddings, list(results["encoders"]), list(results["tasks"]))
    images = {name: _png(fig, out / "plots" / f"{name}.png") for name, fig in figures.items()}
    paths |= {name: out / "plots" / f"{name}.png" for name in images}
    paths["html"].write_text(_html(results, tabs, images))
    return paths


def _html(results: dict, tabs: list[Table], images: dict[str, bytes]) -> str:
    prov = results["provenance"]
    enc_rows = "".join(f"<tr><td>{html.escape(s)}</td><td><code>{e['fingerprint'][:16]}</code></td>"
                       f"<td><code>{(e['weights_sha256'] or '–')[:16]}</code></td><td>{e['in_chans']}×{e['img_size']}²</td>"
                       f"<td>{e['pooling']}</td></tr>" for s, e in results["encoders"].items())
    task_rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{t['n_classes']}</td><td>{t['sizes']['train']} / {t['sizes']['val']} / "
                        f"{t['sizes']['test']}</td><td><code>{t['split_hash'][:16]}</code></td><td>{t['version'] or '–'}</td></tr>"
                        for n, t in results["tasks"].items())
    imgs = "".join(f"<h3>{html.escape(name)}</h3><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                   for name, png in images.items())
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}th{background:#eee}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>usjepa bench</title><style>{style}</style></head><body>"
            f"<h1>usjepa benchmark</h1><p>usjepa {prov['usjepa_version']} · commit {prov['git_commit'] or 'unknown'} · "
            f"{prov['created']} · seeds {results['config']['seeds']}</p>"
            + "".join(f"<p>{html.escape(line)}</p>" for line in warnings_note(results))
            + "".join(to_html(t) for t in tabs) + "<h2>Plots</h2>" + imgs
            + "<h2>Inputs</h2><table><tr><th>encoder</th><th>weights fingerprint</th><th>file sha256</th><th>input</th>"
              f"<th>pooling</th></tr>{enc_rows}</table><table><tr><th>task</th><th>classes</th><th>train / val / test</th>"
              f"<th>split hash</th><th>UltraBench</th></tr>{task_rows}</table><h2>Resolved config</h2><pre>"
            + html.escape(json.dumps(results["config"], indent=1)) + "</pre></body></html>")
