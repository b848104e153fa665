"""Human-readable views of results.json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from fmtune.results import Results


def format_values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def format_metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={float(v):.4f}" for k, v in metrics.items() if k != "learning_rate")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}s"


def trial_table(res: Results, top: int = 0) -> Table:
    name = res.objective.name
    table = Table(title=f"{res.experiment}: {res.algorithm} search over {res.family} on {res.dataset}")
    for column in ("#", "trial", "status", name, "epoch", "worker", "time", "hyperparameters"):
        table.add_column(column, overflow="fold", justify="right" if column in ("#", name, "epoch", "time") else "left")
    rows = res.ranked()
    for rank, trial in enumerate(rows[:top] if top else rows, start=1):
        table.add_row(
            str(rank),
            trial.trial_id,
            trial.status.lower(),
            "" if trial.score is None else f"{trial.score:.4f}",
            "" if trial.best_epoch is None else str(trial.best_epoch + 1),
            trial.worker or "",
            _seconds(trial.seconds),
            format_values(trial.hyperparameters),
        )
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
