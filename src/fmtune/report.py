"""Human-readable views of results.json."""

from __future__ import annotations

import html
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fmtune import run_state
from fmtune.results import Results, TrialRecord
from fmtune.run_state import RunState
from fmtune.text import format_values


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}s"


def trial_cells(rank: int, trial: TrialRecord) -> list[str]:
    """#, trial, status, objective, best epoch, worker, time, hyperparameters."""
    return [
        str(rank),
        trial.trial_id,
        trial.status.lower(),
        "" if trial.score is None else f"{trial.score:.4f}",
        "" if trial.best_epoch is None else str(trial.best_epoch + 1),
        trial.worker or "",
        _seconds(trial.seconds),
        format_values(trial.hyperparameters),
    ]


def trial_table(res: Results, top: int = 0) -> Table:
    name = res.objective.name
    table = Table(title=escape(f"{res.experiment}: {res.algorithm} search over {res.family} on {res.dataset}"))
    for column in ("#", "trial", "status", name, "epoch", "worker", "time", "hyperparameters"):
        table.add_column(column, overflow="fold", justify="right" if column in ("#", name, "epoch", "time") else "left")
    rows = res.ranked()
    for rank, trial in enumerate(rows[:top] if top else rows, start=1):
        # Text, not markup: worker ids and hyperparameter values may hold "[" and "]".
        table.add_row(*(Text(cell) for cell in trial_cells(rank, trial)))
    return table


def print_results(res: Results, top: int = 0, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 200)
    console.print(trial_table(res, top))
    shown = f" (top {top} of {len(res.trials)})" if top and top < len(res.trials) else ""
    console.print(f"{len(res.trials)} trials{shown}, tuning {res.tuning_seconds:.0f}s", highlight=False)
    if res.best_hyperparameters is not None:
        best = escape(f"best trial {res.best_trial_id}: {format_values(res.best_hyperparameters)}")
        console.print(best, highlight=False)
    if res.retrain is not None:
        console.print(
            f"retrained {res.retrain.epochs_run} epochs in {res.retrain.seconds:.0f}s on {res.retrain.train_samples} "
            f"images; test accuracy [bold]{res.retrain.test_accuracy:.4f}[/]; "
            f"exported version {res.exported_version} to {escape(str(res.export_path))}",
            highlight=False,
        )


def report_state(res: Results | RunState, folder: Path) -> RunState:
    """The state a report draws: the run's state.json beside it when it belongs to this run, else
    one rebuilt from results.json (the dashboard draws the same, so the two never disagree)."""
    if isinstance(res, RunState):
        return res
    state = run_state.load(folder)
    if state is not None and state.config_digest == res.config_digest and state.trials:
        return state
    return run_state.from_results(res)


def _plain(label: Any) -> str:
    """A chart label for matplotlib: plotly's escaping undone, and "$" kept from mathtext."""
    raw = label.get("text", "") if isinstance(label, dict) else str(label or "")
    return html.unescape(raw).replace("$", r"\$")


def _xs(values: list[Any]) -> list[Any]:
    if values and isinstance(values[0], str):
        return [datetime.fromisoformat(v) for v in values]
    return values


def _draw(ax: Any, figure: dict[str, Any]) -> None:
    """One dashboard figure (plotly's JSON) drawn with matplotlib: the same series, point for point."""
    layout = figure["layout"]
    ax.set_title(_plain(layout.get("title")), fontsize=10, loc="left")
    for trace in figure["data"]:
        kind = trace["type"]
        if kind == "scatter":
            xs, ys = _xs(trace["x"]), [math.nan if y is None else y for y in trace["y"]]
            color = (trace.get("line") or trace.get("marker") or {}).get("color")
            if "lines" in trace["mode"]:
                step = (trace.get("line") or {}).get("shape") == "hv"
                width = (trace.get("line") or {}).get("width", 1.5)
                ax.plot(
                    xs,
                    ys,
                    drawstyle="steps-post" if step else "default",
                    color=color,
                    linewidth=width,
                    alpha=trace.get("opacity", 1.0),
                    marker="o" if "markers" in trace["mode"] else None,
                    markersize=2.5,
                    label=_plain(trace.get("name")),
                )
            else:
                ax.scatter(xs, ys, s=18, color=color, zorder=3, label=_plain(trace.get("name")))
        elif kind == "bar":
            ax.barh([_plain(y) for y in trace["y"]], trace["x"], color="#1f77b4")
        elif kind == "parcoords":
            _parallel(ax, trace)
    for name, set_label in (("xaxis", ax.set_xlabel), ("yaxis", ax.set_ylabel)):
        if name in layout and "title" in layout[name]:
            set_label(_plain(layout[name]["title"]))
    if (
        layout.get("showlegend", True)
        and any(t["type"] == "scatter" for t in figure["data"])
        and len(figure["data"]) < 6
    ):
        ax.legend(fontsize=7, loc="best")
    if not figure["data"]:
        notes = [_plain(a["text"]) for a in layout.get("annotations", [])] or ["nothing yet"]
        ax.text(0.5, 0.5, notes[0], ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.grid(alpha=0.3)


def _parallel(ax: Any, trace: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    dims = trace["dimensions"]
    columns = []
    for dim in dims:
        values = [math.nan if v is None else float(v) for v in dim["values"]]
        finite = [v for v in values if v == v]
        low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
        columns.append([(v - low) / (high - low) if high > low and v == v else 0.5 for v in values])
        if "ticktext" in dim:
            for tick, text in zip(dim["tickvals"], dim["ticktext"], strict=True):
                y = (tick - low) / (high - low) if high > low else 0.5
                ax.annotate(
                    str(text).replace("$", r"\$"),
                    (len(columns) - 1, y),
                    fontsize=6,
                    xytext=(2, 0),
                    textcoords="offset points",
                    va="center",
                )
    colors = trace["line"]["color"]
    cmap = plt.get_cmap("viridis_r" if trace["line"].get("reversescale") else "viridis")
    low, high = (min(colors), max(colors)) if colors else (0.0, 1.0)
    for row in range(len(colors)):
        shade = (colors[row] - low) / (high - low) if high > low else 0.5
        ax.plot(range(len(columns)), [c[row] for c in columns], color=cmap(shade), alpha=0.7, linewidth=1)
    many = len(dims) > 6  # side by side, long names would run into each other
    ax.set_xticks(
        range(len(dims)),
        [_plain(d["label"]) for d in dims],
        fontsize=7,
        rotation=25 if many else 0,
        ha="right" if many else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks([])


def plot(res: Results | RunState, path: Path) -> Path:
    """The dashboard's charts, drawn from the same view: best so far, learning curves, importance,
    parallel coordinates, retraining."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmtune.dashboard import view

    figures = view.build(report_state(res, path.parent))["figures"]
    fig = plt.figure(figsize=(15, 17), constrained_layout=True)
    grid = fig.add_gridspec(4, 2)
    _draw(fig.add_subplot(grid[0, :]), figures["best"])
    _draw(fig.add_subplot(grid[1, 0]), figures["curves"])
    _draw(fig.add_subplot(grid[1, 1]), figures["importance"])
    _draw(fig.add_subplot(grid[2, :]), figures["parallel"])
    _draw(fig.add_subplot(grid[3, 0]), figures["retrain"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def html_report(res: Results | RunState, png: Path, path: Path) -> Path:
    """A self-contained page: summary, the charts (embedded), every trial as the dashboard lists it."""
    import base64

    from fmtune.dashboard import view

    built = view.build(report_state(res, path.parent))
    summary = built["summary"]
    image = base64.b64encode(png.read_bytes()).decode()
    sign = -1.0 if summary["direction"] == "max" else 1.0
    ranked = sorted(built["trials"], key=lambda t: (t["score"] is None, sign * (t["score"] or 0.0)))
    rows = []
    for rank, t in enumerate(ranked, start=1):
        cells = [
            str(rank),
            t["trial_id"],
            t["status"].lower()
            + (f" (re-queued from {', '.join(map(str, t['requeued_from']))})" if t["requeued_from"] else ""),
            "" if t["score"] is None else f"{t['score']:.4f}",
            "" if t["best_epoch"] is None else str(t["best_epoch"]),
            t["worker"] or "",
            _seconds(t["seconds"]),
            format_values(t["hyperparameters"]),
            t["error"],
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    best = format_values(summary["best_hyperparameters"] or {})
    retrain = ""
    if summary["retrain"] is not None and summary["test_accuracy"] is not None:
        r = summary["retrain"]
        retrain = (
            f"<p>Retrained {r['epochs_run']} epochs in {r['seconds']:.0f}s on {r['train_samples']} images: "
            f"<b>test accuracy {summary['test_accuracy']:.4f}</b>; exported version {summary['exported_version']}.</p>"
        )
    head = ["#", "trial", "status", summary["objective"], "epoch", "worker", "time", "hyperparameters", "error"]
    e = html.escape
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(summary["experiment"])}: fmtune report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{e(summary["experiment"])}</h1>
<p>{e(str(summary["algorithm"]))} search over {e(str(summary["family"]))} on {e(str(summary["dataset"]))}:
{len(built["trials"])} trials, phase {e(summary["phase"])}.</p>
<p>Best trial {e(str(summary["best_trial"]))}: <code>{e(best)}</code></p>
{retrain}
<img alt="best so far, learning curves, importance, parallel coordinates, retraining"
 src="data:image/png;base64,{image}">
<h2>Trials, best first</h2>
<table><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr>
{"".join(rows)}
</table></body></html>
"""
    path.write_text(page)
    return path
