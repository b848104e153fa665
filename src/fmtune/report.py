"""Human-readable views of results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fmtune.results import Results, TrialRecord


def format_values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def format_metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={float(v):.4f}" for k, v in metrics.items() if k != "learning_rate")


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
    table = Table(title=f"{res.experiment}: {res.algorithm} search over {res.family} on {res.dataset}")
    for column in ("#", "trial", "status", name, "epoch", "worker", "time", "hyperparameters"):
        table.add_column(column, overflow="fold", justify="right" if column in ("#", name, "epoch", "time") else "left")
    rows = res.ranked()
    for rank, trial in enumerate(rows[:top] if top else rows, start=1):
        table.add_row(*trial_cells(rank, trial))
    return table


def print_results(res: Results, top: int = 0, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 200)
    console.print(trial_table(res, top))
    shown = f" (top {top} of {len(res.trials)})" if top and top < len(res.trials) else ""
    console.print(f"{len(res.trials)} trials{shown}, tuning {res.tuning_seconds:.0f}s", highlight=False)
    if res.best_hyperparameters is not None:
        console.print(f"best trial {res.best_trial_id}: {format_values(res.best_hyperparameters)}", highlight=False)
    if res.retrain is not None:
        console.print(
            f"retrained {res.retrain.epochs_run} epochs in {res.retrain.seconds:.0f}s on {res.retrain.train_samples} "
            f"images; test accuracy [bold]{res.retrain.test_accuracy:.4f}[/]; "
            f"exported version {res.exported_version} to {res.export_path}",
            highlight=False,
        )


def _numeric(values: list[Any]) -> tuple[list[float], list[str] | None]:
    """Positions to plot, and tick labels when the values are categorical."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = sorted({str(v) for v in values})
    return [float(labels.index(str(v))) for v in values], labels


def plot(res: Results, path: Path) -> Path:
    """Objective per trial over time with the best so far, and one scatter per hyperparameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    name, maximise = res.objective.name, res.objective.direction == "max"
    scored = sorted(
        (t for t in res.trials if t.score is not None and t.ended_at is not None), key=lambda t: t.ended_at or 0
    )
    names = sorted({k for t in scored for k in t.hyperparameters if not k.startswith("tuner/")})
    # A value every trial shares (a fixed hyperparameter) says nothing about the objective.
    names = [n for n in names if len({repr(t.hyperparameters.get(n)) for t in scored}) > 1]
    columns = 3
    rows = 1 + (len(names) + columns - 1) // columns
    fig = plt.figure(figsize=(5 * columns, 3.6 * rows), constrained_layout=True)
    grid = fig.add_gridspec(rows, columns)
    ax = fig.add_subplot(grid[0, :])
    if scored:
        ends = [t.ended_at for t in scored if t.ended_at is not None]
        start = min([t.started_at for t in scored if t.started_at is not None] + ends)
        minutes = [(end - start).total_seconds() / 60 for end in ends]
        scores = [t.score or 0.0 for t in scored]
        best, running = [], None
        for score in scores:
            running = score if running is None else (max(running, score) if maximise else min(running, score))
            best.append(running)
        colors = ["tab:blue" if t.status == "COMPLETED" else "tab:orange" for t in scored]
        ax.scatter(minutes, scores, c=colors, s=28, zorder=3, label="trial (orange: stopped early)")
        ax.step(minutes, best, where="post", color="tab:green", linewidth=2, label="best so far")
        for t, x, y in zip(scored, minutes, scores, strict=True):
            ax.annotate(t.trial_id, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color="0.35")
    ax.set_xlabel("minutes since the first trial started")
    ax.set_ylabel(name)
    ax.set_title(
        f"{res.experiment}: {res.algorithm} search over {res.family} on {res.dataset} ({len(res.trials)} trials)"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if maximise else "upper right", fontsize=8)
    for i, hp in enumerate(names):
        sub = fig.add_subplot(grid[1 + i // columns, i % columns])
        pairs = [(t.hyperparameters[hp], t.score or 0.0) for t in scored if hp in t.hyperparameters]
        xs, labels = _numeric([p[0] for p in pairs])
        sub.scatter(xs, [p[1] for p in pairs], s=22, alpha=0.8)
        if labels is not None:
            sub.set_xticks(range(len(labels)), labels)
        elif hp in ("learning_rate", "l2") and xs and min(xs) > 0:
            sub.set_xscale("log")
            sub.xaxis.set_minor_formatter(NullFormatter())
        sub.set_xlabel(hp)
        sub.set_ylabel(name)
        sub.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def html_report(res: Results, png: Path, path: Path) -> Path:
    """A self-contained page: summary, the plots (embedded), best hyperparameters, every trial."""
    import base64
    import html

    image = base64.b64encode(png.read_bytes()).decode()
    rows = []
    for rank, t in enumerate(res.ranked(), start=1):
        error = (t.message or "").strip().splitlines()[-1] if t.message else ""
        cells = [*trial_cells(rank, t), error]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    best = format_values(res.best_hyperparameters or {})
    retrain = ""
    if res.retrain is not None:
        retrain = (
            f"<p>Retrained {res.retrain.epochs_run} epochs in {res.retrain.seconds:.0f}s on "
            f"{res.retrain.train_samples} images: <b>test accuracy {res.retrain.test_accuracy:.4f}</b>; "
            f"exported version {res.exported_version}.</p>"
        )
    head = ["#", "trial", "status", res.objective.name, "epoch", "worker", "time", "hyperparameters", "error"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(res.experiment)}: fmtune report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(res.experiment)}</h1>
<p>{html.escape(res.algorithm)} search over {html.escape(res.family)} on {html.escape(res.dataset)}:
{len(res.trials)} trials, tuning {res.tuning_seconds:.0f}s.</p>
<p>Best trial {html.escape(str(res.best_trial_id))}: <code>{html.escape(best)}</code></p>
{retrain}
<img alt="objective per trial and per hyperparameter" src="data:image/png;base64,{image}">
<h2>Trials, best first</h2>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr>
{"".join(rows)}
</table></body></html>
"""
    path.write_text(page)
    return path
