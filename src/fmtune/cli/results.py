"""The commands that look at runs on disk: ``results``, ``report`` and ``dashboard``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmtune.cli.common import fail


def show_results(path: Path, top: int) -> None:
    from fmtune import results
    from fmtune.report import print_results

    files = results.find(path)
    if not files:
        fail(f"no results.json under {path}")
    for file in files:
        print_results(results.load(file), top=top)


def results_cmd(
    path: Annotated[Path, typer.Argument(help="a work dir, an experiment dir, or a results.json")] = Path("runs"),
    top: Annotated[int, typer.Option(help="rows to show (0: all)")] = 0,
) -> None:
    """Print the trial table, best first, and the best configuration."""
    show_results(path, top)


def report_cmd(
    path: Annotated[Path, typer.Argument(help="a work dir, an experiment dir, or a results.json")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="where to write (default: beside results.json)")] = None,
) -> None:
    """Write report.png and report.html: trials over time, best so far, and each hyperparameter."""
    from fmtune import results
    from fmtune.report import html_report, plot

    files = results.find(path)
    if not files:
        fail(f"no results.json under {path}")
    for file in files:
        res = results.load(file)
        folder = out or file.parent
        png = plot(res, folder / "report.png")
        page = html_report(res, png, folder / "report.html")
        print(f"{res.experiment}: {png} and {page}")


def dashboard_cmd(
    path: Annotated[Path, typer.Argument(help="an experiment dir, or a work dir holding one")] = Path("runs"),
    port: Annotated[int, typer.Option(help="port (0: any free one)")] = 8050,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
) -> None:
    """Serve the live dashboard of a run on disk (running, finished or crashed), read-only."""
    from fmtune.dashboard.server import DashboardServer, find_experiment

    try:
        experiment_dir = find_experiment(path)
        server = DashboardServer(experiment_dir, host, port)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    print(f"dashboard of {experiment_dir}: {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
